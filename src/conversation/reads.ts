/**
 * The `reads` table: each reader's read state, folded from the receipts, written behind
 * (docs/design.md, "Storage"). Accepting a receipt folds it in memory; the alarm writes the states
 * that changed once per run (one upsert per reader, however many receipts named it), with
 * `reads_folded_to`, the highest sequence number they include. A one-to-one conversation whose two
 * readers read forty times a minute writes two rows a minute, not forty.
 *
 * Nothing is lost with memory: the receipts after `reads_folded_to` are still stored (the outbox
 * never reuses their rows), and the object folds them again when it starts. Readers of the table
 * (the API's read state, the snapshot) flush first, so they never see it behind.
 */
import { z } from "zod";
import type { Receipt } from "../receipt";
import { foldReadStates, MAX_READS_PAGE, ReadState, type ReadsPage } from "./read-state";

/** Past this many readers waiting in memory, they are written at once (a hot group's reads stay bounded in memory). */
export const MAX_UNFLUSHED_READERS = 1000;
/** Readers per read-state SELECT (and twice as few per upsert, two values each): SQLite on Cloudflare binds at most 100 values. */
const READERS_CHUNK = 100;

const ReadsRow = z.object({ reader: z.string(), state: z.string() });
const ReadStateRow = z.object({ state: z.string() });
const ReaderCount = z.object({ n: z.number() });

export class ReadStore {
  /** Folded states not yet written, by reader. */
  private readonly unflushed = new Map<string, ReadState>();
  /** When the oldest unwritten fold happened (epoch ms; 0 when none). */
  pendingSince = 0;

  constructor(private readonly sql: SqlStorage) {}

  dirty(): boolean {
    return this.unflushed.size > 0;
  }

  /** Folds receipts (in order) into their readers' states, in memory. Returns whether enough wait to be written now. */
  fold(receipts: readonly Receipt[], now: number): boolean {
    const readers = [...new Set(receipts.flatMap((receipt) => receipt.readers))].filter((reader) => !this.unflushed.has(reader));
    const stored = new Map<string, ReadState>();
    for (let from = 0; from < readers.length; from += READERS_CHUNK) {
      const chunk = readers.slice(from, from + READERS_CHUNK);
      for (const row of this.sql.exec(`SELECT reader, state FROM reads WHERE reader IN (${chunk.map(() => "?").join(", ")})`, ...chunk)) {
        const { reader, state } = ReadsRow.parse(row);
        stored.set(reader, ReadState.parse(JSON.parse(state)));
      }
    }
    const folded = foldReadStates(receipts, (reader) => this.unflushed.get(reader) ?? stored.get(reader));
    if (folded.size > 0 && this.unflushed.size === 0) this.pendingSince = now;
    for (const [reader, state] of folded) this.unflushed.set(reader, state);
    return this.unflushed.size >= MAX_UNFLUSHED_READERS;
  }

  /** Writes every state waiting (one upsert per reader). Run inside the transaction that records `reads_folded_to`. */
  flush(): number {
    const states = [...this.unflushed];
    for (let from = 0; from < states.length; from += READERS_CHUNK / 2) {
      const chunk = states.slice(from, from + READERS_CHUNK / 2);
      this.sql.exec(
        `INSERT INTO reads (reader, state) VALUES ${chunk.map(() => "(?, ?)").join(", ")} ON CONFLICT (reader) DO UPDATE SET state = excluded.state`,
        ...chunk.flatMap(([reader, next]) => [reader, JSON.stringify(next)]),
      );
    }
    return states.length;
  }

  /** After the flush's transaction committed. */
  flushed(): void {
    this.unflushed.clear();
    this.pendingSince = 0;
  }

  /** Forgets what waits (after a rolled-back flush the object folds again from storage). */
  reset(): void {
    this.flushed();
  }

  /** Read state a page at a time in reader order after `after` (flush first). */
  page(limit: number, after: string | undefined): ReadsPage {
    const size = Math.max(1, Math.min(limit, MAX_READS_PAGE));
    const reads = this.sql
      .exec("SELECT state FROM reads WHERE reader > ? ORDER BY reader LIMIT ?", after ?? "", size + 1)
      .toArray()
      .map((row) => ReadState.parse(JSON.parse(ReadStateRow.parse(row).state)));
    const page = reads.slice(0, size);
    const readers = ReaderCount.parse(this.sql.exec("SELECT COUNT(*) AS n FROM reads").one()).n;
    const last = page[page.length - 1];
    return { reads: page, readers, ...(reads.length > size && last ? { next: last.reader } : {}) };
  }
}

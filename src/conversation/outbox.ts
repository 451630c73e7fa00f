/**
 * A conversation's receipts, each row also its delivery state (docs/design.md, "Storage"): the
 * outbox state machine over SQLite, without timers or network, so every transition is tested on
 * its own. pending → (attempt) → delivered | pending (retry later) | failed (dead letter);
 * failed → pending (replay). Delivery is in order: the head is the lowest pending sequence number.
 *
 * What it keeps in memory, loaded from the table when the object starts (storage stays the
 * truth): the ids for deduplication (no index on `id`: an index costs a row written per insert
 * and delete), the highest sequence number, and where the head may be.
 */
import { z } from "zod";
import { isoFromMillis } from "../time";
import { DELIVERED, FAILED, PENDING } from "./schema";

/** Seen ids are kept this long for deduplication (providers retry within seconds; Easemob once)... */
export const DEDUP_WINDOW_MS = 48 * 3600 * 1000;
/** ...and no more than this many rows, so a busy conversation's table stays bounded. */
export const DEDUP_MAX_IDS = 20_000;
/** Pruning runs every this many receipts: it reads the rows it may delete, so not on every one. */
export const PRUNE_EVERY = 100;
/** Receipts per INSERT in `enqueueMany`: 7 values each, within SQLite's 100 bound parameters per statement on Cloudflare
 * (https://developers.cloudflare.com/durable-objects/platform/limits/). */
const ENQUEUE_CHUNK = 14;
/** The largest page of deliveries one call returns. */
export const MAX_DELIVERIES_PAGE = 1000;
/** Attempts kept in a receipt's log, newest (the default schedule makes 11 before a dead letter). */
export const ATTEMPT_LOG_MAX = 20;
/** An error kept in the log is cut to this many characters (the last error is kept whole). */
const ATTEMPT_ERROR_CHARS = 200;

export const DeliveryStatus = z.enum(["pending", "delivered", "failed"]);
export type DeliveryStatus = z.infer<typeof DeliveryStatus>;
/** What the deliveries API lists: one status, or every kept receipt. */
export const DeliveryFilter = z.union([DeliveryStatus, z.literal("all")]);
export type DeliveryFilter = z.infer<typeof DeliveryFilter>;
const STATUS_CODE: Record<DeliveryStatus, number> = { pending: PENDING, delivered: DELIVERED, failed: FAILED };
const STATUS_NAME = ["pending", "delivered", "failed"] as const;

export const ReceiptRow = z.object({
  seq: z.number(),
  id: z.string(),
  read_at: z.string(),
  body: z.string(),
  status: z.number().int().min(0).max(2),
  accepted_at: z.number(),
  attempts: z.number(),
  next_attempt_at: z.number(),
  last_attempt_at: z.number().nullable(),
  last_status: z.number().nullable(),
  last_error: z.string().nullable(),
  settled_at: z.number().nullable(),
  batch: z.number().nullable(),
  attempt_log: z.string().nullable(),
});
export type ReceiptRow = z.infer<typeof ReceiptRow>;

/** One logged attempt as stored: [startedAt, ms, HTTP status or null, error or null]. */
const LoggedAttempt = z.tuple([z.number(), z.number(), z.number().nullable(), z.string().nullable()]);
/** One attempt as the API shows it: when it started, how long it took, and what came of it. */
export interface Attempt {
  at: string;
  ms: number;
  status?: number;
  error?: string;
}

/**
 * Appends an attempt to `attempt_log` in SQL, keeping the newest ATTEMPT_LOG_MAX: part of the
 * UPDATE that records the attempt's result, so the log costs no row written. Binds one JSON value.
 */
const APPEND_ATTEMPT = `attempt_log = json_insert(
    CASE WHEN json_array_length(coalesce(attempt_log, '[]')) >= ${ATTEMPT_LOG_MAX} THEN json_remove(attempt_log, '$[0]') ELSE coalesce(attempt_log, '[]') END,
    '$[#]', json(?))`;
const loggedAttempt = (startedAt: number, at: number, status: number | null, error: string | null) =>
  JSON.stringify([startedAt, at - startedAt, status, error === null ? null : error.slice(0, ATTEMPT_ERROR_CHARS)]);

function attemptLog(text: string | null): Attempt[] {
  if (!text) return [];
  let stored: unknown;
  try {
    stored = JSON.parse(text);
  } catch {
    return [];
  }
  const parsed = z.array(LoggedAttempt).safeParse(stored);
  if (!parsed.success) return [];
  return parsed.data.map(([startedAt, ms, status, error]) => ({
    at: isoFromMillis(startedAt),
    ms,
    ...(status !== null ? { status } : {}),
    ...(error !== null ? { error } : {}),
  }));
}
const DELIVERY_COLUMNS = Object.keys(ReceiptRow.shape)
  .filter((column) => column !== "body")
  .join(", ");
const DeliveryRow = ReceiptRow.omit({ body: true });
type DeliveryRow = z.infer<typeof DeliveryRow>;

/** A receipt's delivery history, as the API shows it. */
export interface Delivery {
  receiptId: string;
  seq: number;
  status: DeliveryStatus;
  attempts: number;
  acceptedAt: string;
  nextAttemptAt?: string;
  lastAttemptAt?: string;
  lastStatus?: number;
  lastError?: string;
  deliveredAt?: string;
  failedAt?: string;
  /** From acceptance to the origin's 2xx. */
  latencyMs?: number;
  /** Every attempt, oldest first (the newest ATTEMPT_LOG_MAX), across replays. */
  attemptLog: Attempt[];
}

const LoadRow = z.object({ seq: z.number(), id: z.string(), status: z.number(), changed_at: z.number() });
const PruneRow = z.object({ seq: z.number(), id: z.string(), accepted_at: z.number() });
type PruneRow = z.infer<typeof PruneRow>;
const SeqRow = z.object({ seq: z.number() });
const CountRow = z.object({ status: z.number(), count: z.number() });
const BodyRow = z.object({ body: z.string() });

export class Outbox {
  private readonly ids = new Set<string>();
  /** The highest sequence number stored (0 when none). */
  maxSeq = 0;
  /** No pending row has a lower sequence number than this. */
  private headFrom = Number.MAX_SAFE_INTEGER;
  /**
   * No delivered row has a lower sequence number than this: where pruning starts reading. 0 after
   * a start (the first prune reads from the beginning once); each prune moves it past what it read.
   */
  private deliveredFrom = 0;
  /** The latest acceptance or settlement stored, for knowing after a restart whether anything changed. */
  lastChangeAt = 0;

  constructor(private readonly sql: SqlStorage) {}

  /** Reads what is kept in memory. Tombstones (migrated ids without a body) count for dedup only. */
  load(): void {
    this.ids.clear();
    this.maxSeq = 0;
    this.headFrom = Number.MAX_SAFE_INTEGER;
    this.deliveredFrom = 0;
    for (const row of this.sql.exec("SELECT seq, id, status, max(accepted_at, coalesce(settled_at, 0)) AS changed_at FROM receipts")) {
      const { seq, id, status, changed_at } = LoadRow.parse(row);
      this.ids.add(id);
      if (seq > this.maxSeq) this.maxSeq = seq;
      if (status === PENDING && seq < this.headFrom) this.headFrom = seq;
      if (changed_at > this.lastChangeAt) this.lastChangeAt = changed_at;
    }
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /**
   * Stores a new pending receipt and returns its sequence number. Memory changes only through
   * `committed`, called once the transaction holding this write has committed.
   */
  enqueue(id: string, readAt: string, body: string, now: number): number {
    const seq = this.maxSeq + 1;
    this.sql.exec(
      "INSERT INTO receipts (seq, id, read_at, body, status, accepted_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      seq,
      id,
      readAt,
      body,
      PENDING,
      now,
      now,
    );
    return seq;
  }

  /**
   * `enqueue` for a batch, in order: the sequence numbers after `maxSeq`, one statement per
   * ENQUEUE_CHUNK receipts (still one row written each). Memory changes through `committed`.
   */
  enqueueMany(receipts: readonly { id: string; readAt: string; body: string }[], now: number): number[] {
    const seqs = receipts.map((_, i) => this.maxSeq + 1 + i);
    for (let from = 0; from < receipts.length; from += ENQUEUE_CHUNK) {
      const chunk = receipts.slice(from, from + ENQUEUE_CHUNK);
      this.sql.exec(
        `INSERT INTO receipts (seq, id, read_at, body, status, accepted_at, next_attempt_at) VALUES ${chunk.map(() => "(?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
        ...chunk.flatMap((receipt, i) => [seqs[from + i], receipt.id, receipt.readAt, receipt.body, PENDING, now, now]),
      );
    }
    return seqs;
  }

  committed(seq: number, id: string, now: number): void {
    this.ids.add(id);
    this.maxSeq = Math.max(this.maxSeq, seq);
    this.headFrom = Math.min(this.headFrom, seq);
    this.lastChangeAt = now;
  }

  /** The first pending receipt, in order. */
  head(): ReceiptRow | undefined {
    if (this.headFrom === Number.MAX_SAFE_INTEGER) return undefined;
    const row = this.sql.exec("SELECT * FROM receipts WHERE seq >= ? AND status = ? ORDER BY seq LIMIT 1", this.headFrom, PENDING).toArray()[0];
    if (!row) {
      this.headFrom = Number.MAX_SAFE_INTEGER;
      return undefined;
    }
    const head = ReceiptRow.parse(row);
    this.headFrom = head.seq;
    return head;
  }

  /** The head and the pending receipts after it, in order, at most `count` in all. */
  pendingFrom(head: ReceiptRow, count: number): ReceiptRow[] {
    if (count <= 1) return [head];
    return this.sql
      .exec("SELECT * FROM receipts WHERE seq >= ? AND status = ? ORDER BY seq LIMIT ?", head.seq, PENDING, count)
      .toArray()
      .map((row) => ReceiptRow.parse(row));
  }

  /**
   * Counts an attempt before it is made and leases the head until `leaseUntil`: a run cut short
   * (deploy, eviction) neither repeats it at once nor forgets it. A batch's size is kept on its
   * head, so that a retry sends the same receipts under the same webhook-id.
   */
  beginAttempt(head: ReceiptRow, at: number, leaseUntil: number, batch: number): number {
    const attempts = head.attempts + 1;
    this.sql.exec(
      "UPDATE receipts SET attempts = ?, last_attempt_at = ?, next_attempt_at = ?, batch = ? WHERE seq = ?",
      attempts,
      at,
      leaseUntil,
      batch > 1 ? batch : null,
      head.seq,
    );
    return attempts;
  }

  /** The attempt succeeded: every receipt it carried is delivered. */
  delivered(rows: readonly ReceiptRow[], attempts: number, startedAt: number, at: number, status: number): void {
    this.settle(rows, DELIVERED, attempts, startedAt, at, status, null);
    const first = rows[0];
    const last = rows[rows.length - 1];
    if (first) this.deliveredFrom = Math.min(this.deliveredFrom, first.seq);
    if (last) this.headFrom = Math.max(this.headFrom, last.seq + 1);
  }

  /** The attempt (started at `startedAt`, ended at `at`) failed and may be retried at `nextAt`: only the head changes. */
  retryLater(head: ReceiptRow, startedAt: number, at: number, nextAt: number, status: number | null, error: string): void {
    this.sql.exec(
      `UPDATE receipts SET next_attempt_at = ?, last_status = ?, last_error = ?, ${APPEND_ATTEMPT} WHERE seq = ?`,
      nextAt,
      status,
      error,
      loggedAttempt(startedAt, at, status, error),
      head.seq,
    );
    this.lastChangeAt = Math.max(this.lastChangeAt, nextAt);
  }

  /** The attempt failed for good: every receipt it carried is a dead letter, and the next one is the head. */
  failed(rows: readonly ReceiptRow[], attempts: number, startedAt: number, at: number, status: number | null, error: string): void {
    this.settle(rows, FAILED, attempts, startedAt, at, status, error);
    const last = rows[rows.length - 1];
    if (last) this.headFrom = Math.max(this.headFrom, last.seq + 1);
  }

  private settle(rows: readonly ReceiptRow[], to: number, attempts: number, startedAt: number, at: number, status: number | null, error: string | null): void {
    const first = rows[0];
    const last = rows[rows.length - 1];
    if (!first || !last) return;
    // One statement for the whole batch: the rows are the pending ones in this range.
    this.sql.exec(
      `UPDATE receipts SET status = ?, attempts = ?, last_attempt_at = ?, last_status = ?, last_error = ?, settled_at = ?, batch = NULL, next_attempt_at = 0,
         ${APPEND_ATTEMPT}
       WHERE seq BETWEEN ? AND ? AND status = ?`,
      to,
      attempts,
      startedAt,
      status,
      error,
      at,
      loggedAttempt(startedAt, at, status, error),
      first.seq,
      last.seq,
      PENDING,
    );
    this.lastChangeAt = Math.max(this.lastChangeAt, at);
  }

  /** Dead letters back to pending, in their original order, with a fresh retry schedule. */
  requeueFailed(now: number): number {
    return this.requeue("status = ?", [FAILED], now);
  }

  /**
   * Delivered receipts still kept whose delivery time is in [since, until] back to pending, with a
   * fresh retry schedule (an origin that lost data gets them again, under the same webhook-ids,
   * in their original order). Tombstones have no body and stay as they are.
   */
  requeueDelivered(since: number, until: number, now: number): number {
    return this.requeue("status = ? AND body != '' AND settled_at BETWEEN ? AND ?", [DELIVERED, since, until], now);
  }

  /** Rows matching `where` back to pending, due now; the attempt log stays (the history of the receipt). */
  private requeue(where: string, params: number[], now: number): number {
    const requeued = this.sql
      .exec(
        `UPDATE receipts SET status = ?, attempts = 0, next_attempt_at = ?, settled_at = NULL, batch = NULL WHERE ${where} RETURNING seq`,
        PENDING,
        now,
        ...params,
      )
      .toArray()
      .map((row) => SeqRow.parse(row).seq);
    if (requeued.length > 0) {
      this.headFrom = Math.min(this.headFrom, ...requeued);
      this.lastChangeAt = Math.max(this.lastChangeAt, now);
    }
    return requeued.length;
  }

  counts(): { pending: number; failed: number } {
    const counts = { pending: 0, failed: 0 };
    for (const row of this.sql.exec("SELECT status, COUNT(*) AS count FROM receipts WHERE status != ? GROUP BY status", DELIVERED)) {
      const { status, count } = CountRow.parse(row);
      if (status === PENDING) counts.pending = count;
      else if (status === FAILED) counts.failed = count;
    }
    return counts;
  }

  /**
   * Delivery states in acceptance order, a page at a time (`after` is the last `seq` seen), without
   * bodies: of one status, of every kept receipt ("all"), or by default the outbox (pending and failed).
   */
  page(filter: DeliveryFilter | undefined, limit: number, after: number): Delivery[] {
    const size = Math.min(Math.max(1, limit), MAX_DELIVERIES_PAGE);
    const condition = filter === undefined ? `status != ${DELIVERED}` : filter === "all" ? "1" : `status = ${STATUS_CODE[filter]}`;
    return this.sql
      .exec(`SELECT ${DELIVERY_COLUMNS} FROM receipts WHERE seq > ? AND body != '' AND ${condition} ORDER BY seq LIMIT ?`, after, size)
      .toArray()
      .map((row) => describe(DeliveryRow.parse(row)));
  }

  /** The oldest and the latest dead letter, for the dead-letter index. */
  failedRange(): { oldestFailedAt: number; lastError: string } | undefined {
    const rows = this.sql
      .exec(`SELECT ${DELIVERY_COLUMNS} FROM receipts WHERE status = ? ORDER BY settled_at`, FAILED)
      .toArray()
      .map((row) => DeliveryRow.parse(row));
    const oldest = rows[0];
    const latest = rows[rows.length - 1];
    if (!oldest || !latest) return undefined;
    return { oldestFailedAt: oldest.settled_at ?? oldest.accepted_at, lastError: latest.last_error ?? "" };
  }

  /** The stored JSON of the newest receipts, newest first. */
  recentBodies(limit: number): string[] {
    return this.sql
      .exec("SELECT body FROM receipts WHERE body != '' ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((row) => BodyRow.parse(row).body);
  }

  /**
   * Deletes delivered receipts that are neither among the `recentLimit` newest nor younger than the
   * dedup window (and, past DEDUP_MAX_IDS rows, the oldest delivered whatever their age). Pending
   * and failed receipts are the outbox: never deleted. The object runs it every PRUNE_EVERY receipts (`pruneDue`).
   */
  pruneDue(previousMaxSeq = this.maxSeq - 1): boolean {
    // A batch may step over the multiple of PRUNE_EVERY: due when one lies in (previousMaxSeq, maxSeq].
    return Math.floor(this.maxSeq / PRUNE_EVERY) > Math.floor(previousMaxSeq / PRUNE_EVERY);
  }

  prune(recentLimit: number, now: number): number {
    const keepFrom = this.maxSeq - recentLimit + 1;
    const capFrom = this.maxSeq - DEDUP_MAX_IDS + 1;
    // Nothing delivered below the newest kept: nothing to read. Without this bound, while
    // deliveries are held (every row pending) each prune would read the whole table.
    if (this.deliveredFrom >= keepFrom) return 0;
    // Only the oldest delivered rows are looked at, from `deliveredFrom` on (twice as many as
    // arrived since the last prune, so pruning keeps pace): the scan does not grow with the table.
    const oldest = this.sql
      .exec(
        "SELECT seq, id, accepted_at FROM receipts WHERE seq >= ? AND seq < ? AND status = ? ORDER BY seq LIMIT ?",
        this.deliveredFrom,
        keepFrom,
        DELIVERED,
        2 * PRUNE_EVERY,
      )
      .toArray()
      .map((row) => PruneRow.parse(row));
    const cutoff = now - DEDUP_WINDOW_MS;
    const prunable = (row: PruneRow) => row.seq < capFrom || row.accepted_at < cutoff;
    const doomed = oldest.filter(prunable);
    const first = doomed[0];
    const last = doomed[doomed.length - 1];
    // Every delivered row in [first, last] was read above, so this range deletes exactly `doomed`.
    if (first && last) {
      this.sql.exec(
        "DELETE FROM receipts WHERE seq BETWEEN ? AND ? AND status = ? AND (seq < ? OR accepted_at < ?)",
        first.seq,
        last.seq,
        DELIVERED,
        capFrom,
        cutoff,
      );
    }
    for (const row of doomed) this.ids.delete(row.id);
    // The lowest delivered row left: the first one read and kept; past all read when every one went.
    const kept = oldest.find((row) => !prunable(row));
    const lastRead = oldest[oldest.length - 1];
    this.deliveredFrom = kept ? kept.seq : lastRead && oldest.length === 2 * PRUNE_EVERY ? lastRead.seq + 1 : keepFrom;
    return doomed.length;
  }
}

function describe(row: DeliveryRow): Delivery {
  const status = STATUS_NAME[row.status] ?? "pending";
  return {
    receiptId: row.id,
    seq: row.seq,
    status,
    attempts: row.attempts,
    acceptedAt: isoFromMillis(row.accepted_at),
    ...(status === "pending" ? { nextAttemptAt: isoFromMillis(row.next_attempt_at) } : {}),
    ...(row.last_attempt_at !== null ? { lastAttemptAt: isoFromMillis(row.last_attempt_at) } : {}),
    ...(row.last_status !== null ? { lastStatus: row.last_status } : {}),
    ...(row.last_error !== null ? { lastError: row.last_error } : {}),
    ...(status === "delivered" && row.settled_at !== null ? { deliveredAt: isoFromMillis(row.settled_at), latencyMs: row.settled_at - row.accepted_at } : {}),
    ...(status === "failed" && row.settled_at !== null ? { failedAt: isoFromMillis(row.settled_at) } : {}),
    attemptLog: attemptLog(row.attempt_log),
  };
}

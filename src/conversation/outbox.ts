/**
 * A conversation's receipts and their delivery to each destination (docs/design.md, "Storage";
 * docs/destinations.md): the receipt log and the per-destination state machines over SQLite,
 * without timers or network, so every transition is tested on its own.
 *
 * A receipt is stored once, with `routes`, the destinations it is owed to (fixed at acceptance),
 * and `deliveries`, a JSON object holding one DeliveryRecord per destination that has attempted it.
 * Per destination: pending → (attempt) → delivered | pending (retry later) | failed (dead letter);
 * failed → pending (retry); pending → skipped (its match no longer takes it, or it was purged).
 * Delivery is in order per destination: its head is its lowest pending sequence number, and a
 * destination's head never waits for another's.
 *
 * What it keeps in memory, loaded from the table when the object starts (storage stays the
 * truth): the ids for deduplication (no index on `id`: an index costs a row written per insert),
 * the highest sequence number, where each destination's head may be, and rows ready for reuse.
 *
 * Pruning reuses rows: a receipt past both the newest RECENT_LIMIT and the dedup window, settled
 * for every destination, is overwritten by a later receipt (one UPDATE, one row written) instead of
 * being deleted (a second row written per receipt). So the table keeps its high-water mark:
 * bounded by RECENT_LIMIT, the dedup window's receipts (at most DEDUP_MAX_IDS) and what is owed.
 */
import { z } from "zod";
import { DEDUP_WINDOW_MS } from "../receipt";
import { isoFromMillis } from "../time";
import { DELIVERED, FAILED, PENDING, SKIPPED } from "./schema";

/** Seen ids are kept for DEDUP_WINDOW_MS (receipt.ts), and no more than this many rows, so a busy conversation's table stays bounded. */
export { DEDUP_WINDOW_MS };
export const DEDUP_MAX_IDS = 20_000;
/** Rows ready for reuse are looked for every this many receipts: it reads rows, so not on every one. */
export const PRUNE_EVERY = 100;
/** Receipts per INSERT in `enqueueMany`: 6 values each, within SQLite's 100 bound parameters per statement on Cloudflare
 * (https://developers.cloudflare.com/durable-objects/platform/limits/). */
const ENQUEUE_CHUNK = 16;
/** Rows ready for reuse kept in memory, at most (the next look finds more). */
export const MAX_REUSABLE_ROWS = 1000;
/** The largest page of deliveries one call returns. */
export const MAX_DELIVERIES_PAGE = 1000;
/** Attempts kept in a receipt's log per destination, newest (the default schedule makes 11 before a dead letter). */
export const ATTEMPT_LOG_MAX = 20;
/** An error kept in the log is cut to this many characters (the last error is kept whole). */
const ATTEMPT_ERROR_CHARS = 200;

export const DeliveryStatus = z.enum(["pending", "delivered", "failed", "skipped"]);
export type DeliveryStatus = z.infer<typeof DeliveryStatus>;
/** What the deliveries API lists: one status, or every kept receipt. */
export const DeliveryFilter = z.union([DeliveryStatus, z.literal("all")]);
export type DeliveryFilter = z.infer<typeof DeliveryFilter>;
const STATUS_NAME = ["pending", "delivered", "failed", "skipped"] as const;

/** One logged attempt as stored: [startedAt, ms, HTTP status or null, error or null]. */
const LoggedAttempt = z.tuple([z.number(), z.number(), z.number().nullable(), z.string().nullable()]);
type LoggedAttempt = z.infer<typeof LoggedAttempt>;

/**
 * One destination's delivery state of one receipt, as stored in `deliveries` (short keys: it is
 * repeated per receipt and destination). s: status; n: attempts; t: next attempt (epoch ms);
 * a: last attempt's start; c: last HTTP status; e: last error; d: settled at; b: the size of the
 * batch this receipt heads (a retry sends the same receipts); l: the attempt log.
 */
export const DeliveryRecord = z.object({
  s: z.number().int().min(0).max(3),
  n: z.number(),
  t: z.number().nullish(),
  a: z.number().nullish(),
  c: z.number().nullish(),
  e: z.string().nullish(),
  d: z.number().nullish(),
  b: z.number().nullish(),
  l: z.array(LoggedAttempt).nullish(),
});
export type DeliveryRecord = z.infer<typeof DeliveryRecord>;
const Records = z.record(z.string(), DeliveryRecord);
type Records = z.infer<typeof Records>;

/** A stored receipt row. */
export const ReceiptRow = z.object({
  seq: z.number(),
  id: z.string(),
  read_at: z.string(),
  body: z.string(),
  accepted_at: z.number(),
  routes: z.string(),
  deliveries: z.string().nullable(),
});
export type ReceiptRow = z.infer<typeof ReceiptRow>;

/** A receipt as one destination sees it: the row and that destination's record (absent: never attempted). */
export interface OwedReceipt {
  seq: number;
  id: string;
  read_at: string;
  body: string;
  accepted_at: number;
  record: DeliveryRecord | undefined;
}

/** One attempt as the API shows it: when it started, how long it took, and what came of it. */
export const Attempt = z.object({
  at: z.string(),
  ms: z.number(),
  status: z.number().optional(),
  error: z.string().optional(),
});
export type Attempt = z.infer<typeof Attempt>;

/** A receipt's delivery to one destination, as the API shows it (a schema: it crosses RPC). */
export const Delivery = z.object({
  receiptId: z.string(),
  seq: z.number(),
  destination: z.string(),
  status: DeliveryStatus,
  attempts: z.number(),
  acceptedAt: z.string(),
  nextAttemptAt: z.string().optional(),
  lastAttemptAt: z.string().optional(),
  lastStatus: z.number().optional(),
  lastError: z.string().optional(),
  deliveredAt: z.string().optional(),
  failedAt: z.string().optional(),
  /** From acceptance to the destination's 2xx. */
  latencyMs: z.number().optional(),
  /** Every attempt, oldest first (the newest ATTEMPT_LOG_MAX), across retries. */
  attemptLog: z.array(Attempt),
});
export type Delivery = z.infer<typeof Delivery>;

/** Per destination: how many receipts wait for it and how many are its dead letters. */
export const DestinationCounts = z.record(z.string(), z.object({ pending: z.number(), failed: z.number() }));
export type DestinationCounts = z.infer<typeof DestinationCounts>;

/**
 * A conversation's summary as the outbox answers it (GET /v1/conversations/<conversation>, its
 * dashboard page), from counts rather than pages of rows (a schema: it crosses RPC). Times are
 * epoch ms; `newest` holds the newest receipts' stored JSON, newest first, each with its delivery
 * to each destination.
 */
export const OutboxSummary = z.object({
  /** The highest sequence number: receipts accepted, as the index row counts them. */
  accepted: z.number(),
  destinations: DestinationCounts,
  oldestFailedAt: z.number().optional(),
  /** The error of the most recent dead letter, of any destination. */
  lastError: z.string().optional(),
  lastDelivery: z.object({ at: z.number(), latencyMs: z.number() }).optional(),
  newest: z.array(z.object({ body: z.string(), deliveries: z.array(Delivery) })),
});
export type OutboxSummary = z.infer<typeof OutboxSummary>;

/** `routes` as stored: the names between commas, so that `instr(routes, ',name,')` finds one. */
export const routesText = (names: readonly string[]) => (names.length === 0 ? "" : `,${names.join(",")},`);
export const routesOf = (text: string) => text.split(",").filter((name) => name !== "");
const routeNeedle = (destination: string) => `,${destination},`;
/** The JSON path of a destination's record; names are `[a-z0-9-]` (src/destinations/config.ts), quoted anyway. */
const recordPath = (destination: string) => `$.${JSON.stringify(destination)}`;

function parseRecords(text: string | null): Records {
  if (!text) return {};
  try {
    const parsed = Records.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : {};
  } catch {
    return {};
  }
}

const SeqRow = z.object({ seq: z.number() });
const CountRow = z.object({ n: z.number() });
const BodyRow = z.object({ body: z.string() });
const ScanRow = ReceiptRow.omit({ body: true, read_at: true }).extend({ empty: z.number() });

export class Outbox {
  private readonly ids = new Set<string>();
  /** The highest sequence number stored (0 when none). */
  maxSeq = 0;
  /** Per destination: no pending row has a lower sequence number than this (absent: none pending). */
  private readonly heads = new Map<string, number>();
  /** Every destination named in a kept row's routes: whose dead letters and history exist here. */
  private readonly named = new Set<string>();
  /** Rows ready for reuse, oldest first (`prune` finds them), with the id each still holds. */
  private recyclable: { seq: number; id: string }[] = [];
  /** No row below this may become reusable without `prune` being told (settling an old row lowers it). */
  private scanFrom = 0;
  /** The latest acceptance or settlement stored, for knowing after a restart whether anything changed. */
  lastChangeAt = 0;

  constructor(private readonly sql: SqlStorage) {}

  /** Reads what is kept in memory. Tombstones (migrated ids without a body) count for dedup only. */
  load(): void {
    this.ids.clear();
    this.heads.clear();
    this.named.clear();
    this.recyclable = [];
    this.scanFrom = 0;
    this.maxSeq = 0;
    for (const row of this.sql.exec("SELECT seq, id, accepted_at, routes, deliveries FROM receipts")) {
      const { seq, id, accepted_at, routes, deliveries } = ReceiptRow.pick({ seq: true, id: true, accepted_at: true, routes: true, deliveries: true }).parse(
        row,
      );
      this.ids.add(id);
      if (seq > this.maxSeq) this.maxSeq = seq;
      let changedAt = accepted_at;
      if (routes !== "") {
        const records = parseRecords(deliveries);
        for (const destination of routesOf(routes)) {
          this.named.add(destination);
          const record = records[destination];
          if ((record?.s ?? PENDING) === PENDING && seq < (this.heads.get(destination) ?? Number.MAX_SAFE_INTEGER)) this.heads.set(destination, seq);
          changedAt = Math.max(changedAt, record?.d ?? 0);
        }
      }
      if (changedAt > this.lastChangeAt) this.lastChangeAt = changedAt;
    }
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** Destinations named by kept receipts: configured now or not (a removed one keeps its dead letters). */
  destinationsNamed(): string[] {
    return [...this.named];
  }

  /** Destinations with receipts possibly pending. */
  destinationsOwed(): string[] {
    return [...this.heads.keys()];
  }

  /**
   * Stores new receipts, pending for each destination in their routes, in order after `maxSeq`:
   * each into a reusable row when there is one (an UPDATE), else a new row (INSERT, ENQUEUE_CHUNK
   * per statement); one row written per receipt either way. Memory changes through `committed`
   * (after a failed transaction the object calls `load`).
   */
  enqueueMany(receipts: readonly { id: string; readAt: string; body: string; routes: readonly string[] }[], now: number): number[] {
    const seqs = receipts.map((_, i) => this.maxSeq + 1 + i);
    const inserts: unknown[][] = [];
    receipts.forEach((receipt, i) => {
      const values = [seqs[i], receipt.id, receipt.readAt, receipt.body, now, routesText(receipt.routes)];
      const reused = this.recyclable[0];
      if (reused) {
        const written = this.sql.exec(
          "UPDATE receipts SET seq = ?, id = ?, read_at = ?, body = ?, accepted_at = ?, routes = ?, deliveries = NULL WHERE seq = ?",
          ...values,
          reused.seq,
        ).rowsWritten;
        // Its id was forgotten when `prune` found it (it may be in use again by now: not deleted here).
        this.recyclable.shift();
        if (written > 0) return;
      }
      inserts.push(values);
    });
    for (let from = 0; from < inserts.length; from += ENQUEUE_CHUNK) {
      const chunk = inserts.slice(from, from + ENQUEUE_CHUNK);
      this.sql.exec(
        `INSERT INTO receipts (seq, id, read_at, body, accepted_at, routes) VALUES ${chunk.map(() => "(?, ?, ?, ?, ?, ?)").join(", ")}`,
        ...chunk.flat(),
      );
    }
    return seqs;
  }

  committed(seq: number, id: string, routes: readonly string[], now: number): void {
    this.ids.add(id);
    this.maxSeq = Math.max(this.maxSeq, seq);
    for (const destination of routes) {
      this.named.add(destination);
      this.heads.set(destination, Math.min(this.heads.get(destination) ?? Number.MAX_SAFE_INTEGER, seq));
    }
    this.lastChangeAt = now;
  }

  /** The first receipt pending for `destination`, in order. */
  head(destination: string): OwedReceipt | undefined {
    const from = this.heads.get(destination);
    if (from === undefined) return undefined;
    const [head] = this.pendingRows(destination, from, 1);
    if (!head) {
      this.heads.delete(destination);
      return undefined;
    }
    this.heads.set(destination, head.seq);
    return head;
  }

  /** The head and the receipts pending for `destination` after it, in order, at most `count` in all. */
  pendingFrom(destination: string, head: OwedReceipt, count: number): OwedReceipt[] {
    return count <= 1 ? [head] : this.pendingRows(destination, head.seq, count);
  }

  private pendingRows(destination: string, from: number, count: number): OwedReceipt[] {
    return this.sql
      .exec(
        `SELECT * FROM receipts WHERE seq >= ? AND instr(routes, ?) > 0 AND coalesce(json_extract(deliveries, ?), ${PENDING}) = ${PENDING} ORDER BY seq LIMIT ?`,
        from,
        routeNeedle(destination),
        `${recordPath(destination)}.s`,
        count,
      )
      .toArray()
      .map((row) => owed(ReceiptRow.parse(row), destination));
  }

  /** When the head is due: now for a receipt never attempted, else its record's next attempt. */
  static dueAt(head: OwedReceipt): number {
    return head.record?.t ?? 0;
  }

  /** Writes one receipt's record for one destination: one row written. */
  private write(destination: string, seq: number, record: DeliveryRecord): void {
    this.sql.exec(
      "UPDATE receipts SET deliveries = json_set(coalesce(deliveries, '{}'), ?, json(?)) WHERE seq = ?",
      recordPath(destination),
      JSON.stringify(record),
      seq,
    );
  }

  /** The attempt succeeded: every receipt it carried is delivered to `destination`. */
  delivered(destination: string, rows: readonly OwedReceipt[], attempts: number, startedAt: number, at: number, status: number): void {
    this.settle(destination, rows, DELIVERED, attempts, startedAt, at, status, null);
  }

  /** The attempt failed for good: every receipt it carried is a dead letter of `destination`, and the next is the head. */
  failed(destination: string, rows: readonly OwedReceipt[], attempts: number, startedAt: number, at: number, status: number | null, error: string): void {
    this.settle(destination, rows, FAILED, attempts, startedAt, at, status, error);
  }

  /** Settled without a request: the destination's match no longer takes these receipts. */
  skipped(destination: string, rows: readonly OwedReceipt[], at: number): void {
    for (const row of rows) this.write(destination, row.seq, { ...(row.record ?? { n: 0 }), s: SKIPPED, d: at, t: null, b: null });
    this.moved(destination, rows, at);
  }

  private settle(
    destination: string,
    rows: readonly OwedReceipt[],
    to: number,
    attempts: number,
    startedAt: number,
    at: number,
    status: number | null,
    error: string | null,
  ): void {
    const logged = loggedAttempt(startedAt, at, status, error);
    for (const row of rows) {
      const record = row.record;
      this.write(destination, row.seq, {
        s: to,
        n: attempts,
        a: startedAt,
        c: status,
        e: error,
        d: at,
        l: appendAttempt(record?.l, logged),
      });
    }
    this.moved(destination, rows, at);
  }

  /** After settling `rows`: the head moves past them, and they may become reusable. */
  private moved(destination: string, rows: readonly OwedReceipt[], at: number): void {
    const first = rows[0];
    const last = rows[rows.length - 1];
    if (!first || !last) return;
    const head = this.heads.get(destination);
    if (head !== undefined) this.heads.set(destination, Math.max(head, last.seq + 1));
    this.scanFrom = Math.min(this.scanFrom, first.seq);
    this.lastChangeAt = Math.max(this.lastChangeAt, at);
  }

  /**
   * The attempt (started at `startedAt`, ended at `at`) failed and may be retried at `nextAt`:
   * only the head changes; it keeps the batch's size, so a retry sends the same receipts.
   */
  retryLater(
    destination: string,
    head: OwedReceipt,
    attempts: number,
    batch: number,
    startedAt: number,
    at: number,
    nextAt: number,
    status: number | null,
    error: string,
  ): void {
    this.write(destination, head.seq, {
      s: PENDING,
      n: attempts,
      t: nextAt,
      a: startedAt,
      c: status,
      e: error,
      b: batch > 1 ? batch : null,
      l: appendAttempt(head.record?.l, loggedAttempt(startedAt, at, status, error)),
    });
    this.lastChangeAt = Math.max(this.lastChangeAt, nextAt);
  }

  /** Dead letters of `destination` (or of every destination) back to pending, in order, due now. */
  requeueFailed(now: number, destination?: string): number {
    let requeued = 0;
    for (const name of destination === undefined ? this.destinationsNamed() : [destination]) {
      requeued += this.requeue(name, `json_extract(deliveries, ?4) = ${FAILED}`, [`${recordPath(name)}.s`], now);
    }
    return requeued;
  }

  /**
   * Receipts still kept that were delivered to `destination` (or to each destination) between
   * `since` and `until` back to pending for it, due now, under the same webhook-ids, in order. The
   * attempt log stays (the receipt's history).
   */
  requeueDelivered(since: number, until: number, now: number, destination?: string): number {
    let requeued = 0;
    for (const name of destination === undefined ? this.destinationsNamed() : [destination]) {
      requeued += this.requeue(
        name,
        `json_extract(deliveries, ?4) = ${DELIVERED} AND json_extract(deliveries, ?5) BETWEEN ?6 AND ?7`,
        [`${recordPath(name)}.s`, `${recordPath(name)}.d`, since, until],
        now,
      );
    }
    return requeued;
  }

  /**
   * Routes to `destination` receipts still kept that were accepted between `since` and `until`
   * and not routed to it (a destination added later), for which `takes` (its match) answers true:
   * pending for it, due now. Each costs one row written.
   */
  routeAnew(destination: string, since: number, until: number, takes: (body: string) => boolean, now: number): number {
    const candidates = this.sql
      .exec(
        "SELECT seq, body FROM receipts WHERE body != '' AND accepted_at BETWEEN ? AND ? AND instr(routes, ?) = 0 ORDER BY seq",
        since,
        until,
        routeNeedle(destination),
      )
      .toArray()
      .map((row) => ReceiptRow.pick({ seq: true, body: true }).parse(row))
      .filter((row) => takes(row.body));
    for (const row of candidates) {
      this.sql.exec(
        "UPDATE receipts SET routes = CASE WHEN routes = '' THEN ?1 ELSE routes || ?2 END WHERE seq = ?3",
        routeNeedle(destination),
        `${destination},`,
        row.seq,
      );
    }
    const first = candidates[0];
    if (first) {
      this.named.add(destination);
      this.heads.set(destination, Math.min(this.heads.get(destination) ?? Number.MAX_SAFE_INTEGER, first.seq));
      this.recyclable = [];
      this.lastChangeAt = Math.max(this.lastChangeAt, now);
    }
    return candidates.length;
  }

  /** Rows matching `where` for `destination` back to pending, due now; the attempt log stays. */
  private requeue(destination: string, where: string, params: (number | string)[], now: number): number {
    const requeued = this.sql
      .exec(
        `UPDATE receipts SET deliveries = json_set(deliveries, ?1, json_object('s', ${PENDING}, 'n', 0, 't', ?2, 'l', json(coalesce(json_extract(deliveries, ?1 || '.l'), '[]'))))
         WHERE instr(routes, ?3) > 0 AND ${where} RETURNING seq`,
        recordPath(destination),
        now,
        routeNeedle(destination),
        ...params,
      )
      .toArray()
      .map((row) => SeqRow.parse(row).seq);
    if (requeued.length > 0) {
      this.heads.set(destination, Math.min(this.heads.get(destination) ?? Number.MAX_SAFE_INTEGER, ...requeued));
      // A row waiting for reuse may be owed again.
      this.recyclable = [];
      this.lastChangeAt = Math.max(this.lastChangeAt, now);
    }
    return requeued.length;
  }

  /** Settles every dead letter of `destination` as skipped: it will not be retried (a removed destination's, say). */
  purgeFailed(destination: string, now: number): number {
    const purged = this.sql
      .exec(
        `UPDATE receipts SET deliveries = json_set(deliveries, ?1 || '.s', ${SKIPPED}, ?1 || '.d', ?2)
         WHERE instr(routes, ?3) > 0 AND json_extract(deliveries, ?1 || '.s') = ${FAILED} RETURNING seq`,
        recordPath(destination),
        now,
        routeNeedle(destination),
      )
      .toArray().length;
    if (purged > 0) {
      this.scanFrom = 0;
      this.lastChangeAt = Math.max(this.lastChangeAt, now);
    }
    return purged;
  }

  /** Per destination named here: receipts pending and dead letters. */
  counts(): DestinationCounts {
    const counts: DestinationCounts = {};
    for (const destination of this.destinationsNamed()) {
      const head = this.heads.get(destination);
      const count = (from: number, status: number) =>
        CountRow.parse(
          this.sql
            .exec(
              `SELECT COUNT(*) AS n FROM receipts WHERE seq >= ? AND instr(routes, ?) > 0 AND coalesce(json_extract(deliveries, ?), ${PENDING}) = ?`,
              from,
              routeNeedle(destination),
              `${recordPath(destination)}.s`,
              status,
            )
            .one(),
        ).n;
      counts[destination] = { pending: head === undefined ? 0 : count(head, PENDING), failed: count(0, FAILED) };
    }
    return counts;
  }

  /** Pending and failed over every destination (the snapshot's `deliveries`, the index row's columns). */
  static totals(counts: DestinationCounts): { pending: number; failed: number } {
    let pending = 0;
    let failed = 0;
    for (const entry of Object.values(counts)) {
      pending += entry.pending;
      failed += entry.failed;
    }
    return { pending, failed };
  }

  /** Kept receipts that matched no destination when accepted. */
  unrouted(): number {
    return CountRow.parse(this.sql.exec("SELECT COUNT(*) AS n FROM receipts WHERE routes = '' AND body != ''").one()).n;
  }

  /**
   * Deliveries in acceptance order, a page of receipts at a time (`after` is the last `seq` seen),
   * without bodies: one entry per receipt and destination (or for `destination` only), of one
   * status, of every kept receipt ("all"), or by default what is owed (pending and failed).
   */
  page(filter: DeliveryFilter | undefined, limit: number, after: number, destination?: string): Delivery[] {
    const size = Math.min(Math.max(1, limit), MAX_DELIVERIES_PAGE);
    const wanted = (status: DeliveryStatus) => (filter === undefined ? status === "pending" || status === "failed" : filter === "all" || filter === status);
    const out: Delivery[] = [];
    let from = after;
    // Reads rows in pages until `size` deliveries are found: a receipt may have none that pass.
    for (;;) {
      const rows = this.sql
        .exec(
          `SELECT seq, id, accepted_at, routes, deliveries, 0 AS empty FROM receipts WHERE seq > ? AND body != '' AND ${destination === undefined ? "routes != ''" : "instr(routes, ?) > 0"} ORDER BY seq LIMIT ?`,
          from,
          ...(destination === undefined ? [] : [routeNeedle(destination)]),
          size,
        )
        .toArray()
        .map((row) => ScanRow.parse(row));
      for (const row of rows) {
        const records = parseRecords(row.deliveries);
        const names = destination === undefined ? routesOf(row.routes) : [destination];
        const entries = names.map((name) => describe(row, name, records[name])).filter((entry) => wanted(entry.status));
        if (entries.length === 0) continue;
        out.push(...entries);
        if (out.length >= size) return out;
      }
      const last = rows[rows.length - 1];
      if (!last || rows.length < size) return out;
      from = last.seq;
    }
  }

  /** The oldest and the latest dead letter of `destination`, for the index. */
  failedRange(destination: string): { oldestFailedAt: number; lastError: string } | undefined {
    const span = this.deadLetterSpan(destination);
    return span && { oldestFailedAt: span.oldestAt, lastError: span.latest.error };
  }

  /** When the oldest dead letter of `destination` failed, and when the latest did with its error. */
  private deadLetterSpan(destination: string): { oldestAt: number; latest: { at: number; error: string } } | undefined {
    let oldest: number | undefined;
    let latest: { at: number; error: string } | undefined;
    for (const row of this.sql.exec(
      `SELECT json_extract(deliveries, ?1 || '.d') AS d, json_extract(deliveries, ?1 || '.e') AS e, accepted_at FROM receipts
       WHERE instr(routes, ?2) > 0 AND json_extract(deliveries, ?1 || '.s') = ${FAILED}`,
      recordPath(destination),
      routeNeedle(destination),
    )) {
      const { d, e, accepted_at } = z.object({ d: z.number().nullable(), e: z.string().nullable(), accepted_at: z.number() }).parse(row);
      const at = d ?? accepted_at;
      if (oldest === undefined || at < oldest) oldest = at;
      if (!latest || at >= latest.at) latest = { at, error: e ?? "" };
    }
    return oldest === undefined || !latest ? undefined : { oldestAt: oldest, latest };
  }

  /**
   * The latest delivery to `destination` among the newest receipts: when, and its latency. A
   * delivery with no settled time (one migrated from schema v1, which kept none) is passed over.
   */
  lastDelivery(destination: string): { at: number; latencyMs: number } | undefined {
    const row = this.sql
      .exec(
        `SELECT json_extract(deliveries, ?1 || '.d') AS d, accepted_at FROM receipts
         WHERE instr(routes, ?2) > 0 AND json_extract(deliveries, ?1 || '.s') = ${DELIVERED}
           AND json_extract(deliveries, ?1 || '.d') IS NOT NULL ORDER BY seq DESC LIMIT 1`,
        recordPath(destination),
        routeNeedle(destination),
      )
      .toArray()[0];
    if (!row) return undefined;
    const { d, accepted_at } = z.object({ d: z.number(), accepted_at: z.number() }).parse(row);
    return { at: d, latencyMs: d - accepted_at };
  }

  /**
   * The conversation's summary: counts per destination (`counts`), the oldest dead letter and the
   * latest one's error, the latest delivery, and the newest `limit` receipts with their deliveries.
   * Per destination a few statements over the table (rows read only), whatever its size.
   */
  summary(limit: number): OutboxSummary {
    const destinations = this.counts();
    let oldestFailedAt: number | undefined;
    let latestFailure: { at: number; error: string } | undefined;
    let lastDelivery: { at: number; latencyMs: number } | undefined;
    for (const [name, { failed }] of Object.entries(destinations)) {
      const span = failed > 0 ? this.deadLetterSpan(name) : undefined;
      if (span) {
        if (oldestFailedAt === undefined || span.oldestAt < oldestFailedAt) oldestFailedAt = span.oldestAt;
        if (!latestFailure || span.latest.at >= latestFailure.at) latestFailure = span.latest;
      }
      const last = this.lastDelivery(name);
      if (last && (!lastDelivery || last.at >= lastDelivery.at)) lastDelivery = last;
    }
    return {
      accepted: this.maxSeq,
      destinations,
      ...(oldestFailedAt !== undefined ? { oldestFailedAt } : {}),
      ...(latestFailure ? { lastError: latestFailure.error } : {}),
      ...(lastDelivery ? { lastDelivery } : {}),
      newest: this.newestWithDeliveries(limit),
    };
  }

  /** The newest `limit` receipts' stored JSON, newest first, each with its delivery to each destination in its routes. */
  private newestWithDeliveries(limit: number): { body: string; deliveries: Delivery[] }[] {
    return this.sql
      .exec("SELECT seq, id, accepted_at, body, routes, deliveries FROM receipts WHERE body != '' ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((row) => ReceiptRow.omit({ read_at: true }).parse(row))
      .map((row) => {
        const records = parseRecords(row.deliveries);
        return { body: row.body, deliveries: routesOf(row.routes).map((name) => describe(row, name, records[name])) };
      });
  }

  /** The stored JSON of the newest receipts, newest first. */
  recentBodies(limit: number): string[] {
    return this.sql
      .exec("SELECT body FROM receipts WHERE body != '' ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((row) => BodyRow.parse(row).body);
  }

  /** The stored JSON of the receipts after sequence number `after`, in order. */
  bodiesAfter(after: number): string[] {
    return this.sql
      .exec("SELECT body FROM receipts WHERE seq > ? AND body != '' ORDER BY seq", after)
      .toArray()
      .map((row) => BodyRow.parse(row).body);
  }

  /** When the newest receipt was accepted (epoch ms), or undefined when none is kept. */
  lastAcceptedAt(): number | undefined {
    const row = this.sql.exec("SELECT accepted_at FROM receipts WHERE seq = ?", this.maxSeq).toArray()[0];
    return row ? z.object({ accepted_at: z.number() }).parse(row).accepted_at : undefined;
  }

  /**
   * Activity since the last count (src/ops/activity.ts): receipts accepted after sequence number
   * `acceptedAfter`, per 5-minute bucket; deliveries settled in (settledAfter, now], per bucket and
   * outcome, with the attempts before the last. Rows read only.
   */
  *acceptedSince(acceptedAfter: number): Generator<{ acceptedAt: number; unrouted: boolean }> {
    for (const row of this.sql.exec("SELECT accepted_at, routes FROM receipts WHERE seq > ? AND body != ''", acceptedAfter)) {
      const { accepted_at, routes } = z.object({ accepted_at: z.number(), routes: z.string() }).parse(row);
      yield { acceptedAt: accepted_at, unrouted: routes === "" };
    }
  }

  *settledSince(
    settledAfter: number,
    now: number,
  ): Generator<{ destination: string; status: number; delivered: boolean; at: number; attempts: number; acceptedAt: number }> {
    for (const row of this.sql.exec("SELECT accepted_at, deliveries FROM receipts WHERE deliveries IS NOT NULL")) {
      const { accepted_at, deliveries } = z.object({ accepted_at: z.number(), deliveries: z.string() }).parse(row);
      for (const [destination, record] of Object.entries(parseRecords(deliveries))) {
        const at = record.d;
        if (at === null || at === undefined || at <= settledAfter || at > now) continue;
        if (record.s !== DELIVERED && record.s !== FAILED) continue;
        yield { destination, status: record.s, delivered: record.s === DELIVERED, at, attempts: record.n, acceptedAt: accepted_at };
      }
    }
  }

  /** Whether rows should be looked for reuse now: every PRUNE_EVERY receipts. */
  pruneDue(previousMaxSeq = this.maxSeq - 1): boolean {
    // A batch may step over the multiple of PRUNE_EVERY: due when one lies in (previousMaxSeq, maxSeq].
    return Math.floor(this.maxSeq / PRUNE_EVERY) > Math.floor(previousMaxSeq / PRUNE_EVERY);
  }

  /**
   * Finds rows that later receipts may overwrite: neither among the `recentLimit` newest nor
   * younger than the dedup window (past DEDUP_MAX_IDS rows, the oldest whatever their age), and
   * settled for every destination (delivered or skipped; dead letters and pending receipts are
   * kept). Reads at most twice PRUNE_EVERY rows from where it stopped, so the scan does not grow
   * with the table. Writes nothing. Returns how many rows are ready for reuse.
   */
  prune(recentLimit: number, now: number, foldedTo = this.maxSeq): number {
    // Receipts not yet folded into the stored read state (reads.ts) are kept whatever their age.
    const keepFrom = Math.min(this.maxSeq - recentLimit + 1, foldedTo + 1);
    const capFrom = this.maxSeq - DEDUP_MAX_IDS + 1;
    const cutoff = now - DEDUP_WINDOW_MS;
    if (this.recyclable.length >= MAX_REUSABLE_ROWS) return this.recyclable.length;
    const known = new Set(this.recyclable.map((row) => row.seq));
    const rows = this.sql
      .exec(
        "SELECT seq, id, accepted_at, routes, deliveries, body = '' AS empty FROM receipts WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
        this.scanFrom,
        keepFrom,
        2 * PRUNE_EVERY,
      )
      .toArray()
      .map((row) => ScanRow.extend({ id: z.string() }).parse(row));
    let next: number | undefined;
    for (const row of rows) {
      const old = row.seq < capFrom || row.accepted_at < cutoff;
      if (!old || this.recyclable.length >= MAX_REUSABLE_ROWS) {
        // Younger rows follow in sequence order (accepted in order), or enough are known: stop here.
        next = row.seq;
        break;
      }
      const records = parseRecords(row.deliveries);
      const settled = routesOf(row.routes).every((name) => {
        const status = records[name]?.s ?? PENDING;
        return status === DELIVERED || status === SKIPPED;
      });
      if (settled && !known.has(row.seq)) {
        this.recyclable.push({ seq: row.seq, id: row.id });
        // Forgotten now: a resend this old is refused by its event time anyway (MAX_EVENT_AGE_MS).
        this.ids.delete(row.id);
      }
    }
    const last = rows[rows.length - 1];
    this.scanFrom = next ?? (last && rows.length === 2 * PRUNE_EVERY ? last.seq + 1 : Math.max(this.scanFrom, keepFrom));
    return this.recyclable.length;
  }
}

function owed(row: ReceiptRow, destination: string): OwedReceipt {
  return { seq: row.seq, id: row.id, read_at: row.read_at, body: row.body, accepted_at: row.accepted_at, record: parseRecords(row.deliveries)[destination] };
}

const loggedAttempt = (startedAt: number, at: number, status: number | null, error: string | null): LoggedAttempt => [
  startedAt,
  at - startedAt,
  status,
  error === null ? null : error.slice(0, ATTEMPT_ERROR_CHARS),
];
const appendAttempt = (log: readonly LoggedAttempt[] | null | undefined, attempt: LoggedAttempt): LoggedAttempt[] =>
  [...(log ?? []), attempt].slice(-ATTEMPT_LOG_MAX);

function describe(row: { seq: number; id: string; accepted_at: number }, destination: string, record: DeliveryRecord | undefined): Delivery {
  const status = STATUS_NAME[record?.s ?? PENDING] ?? "pending";
  const settledAt = record?.d ?? null;
  return {
    receiptId: row.id,
    seq: row.seq,
    destination,
    status,
    attempts: record?.n ?? 0,
    acceptedAt: isoFromMillis(row.accepted_at),
    ...(status === "pending" ? { nextAttemptAt: isoFromMillis(Math.max(record?.t ?? 0, row.accepted_at)) } : {}),
    ...(record?.a !== null && record?.a !== undefined ? { lastAttemptAt: isoFromMillis(record.a) } : {}),
    ...(record?.c !== null && record?.c !== undefined ? { lastStatus: record.c } : {}),
    ...(record?.e !== null && record?.e !== undefined ? { lastError: record.e } : {}),
    ...(status === "delivered" && settledAt !== null ? { deliveredAt: isoFromMillis(settledAt), latencyMs: settledAt - row.accepted_at } : {}),
    ...(status === "failed" && settledAt !== null ? { failedAt: isoFromMillis(settledAt) } : {}),
    attemptLog: (record?.l ?? []).map(([startedAt, ms, status, error]) => ({
      at: isoFromMillis(startedAt),
      ms,
      ...(status !== null ? { status } : {}),
      ...(error !== null ? { error } : {}),
    })),
  };
}

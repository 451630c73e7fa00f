/**
 * One Durable Object per conversation: the only writer of its receipts, read state and outbox.
 * SQLite-backed, called through RPC. The alarm drives delivery to the origin (in order, on our own
 * retry schedule) and publishes the KV snapshot (coalesced to one write per second per key).
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import { attemptDelivery, nextAttemptDelay, type AttemptResult } from "../delivery/attempt";
import { webhookBody } from "../delivery/webhook";
import { log } from "../log";
import { Receipt } from "../receipt";
import { settingsOf, type Forwarding, type Settings } from "../settings";
import { foldReadState, ReadState } from "./read-state";
import { deadLetterKey, snapshotKey, type DeadLetterEntry } from "./snapshot";

/** Seen ids are kept this long for deduplication (providers retry within seconds; Easemob once). */
export const DEDUP_WINDOW_MS = 48 * 3600 * 1000;
/** ...and no more than this many, so a busy conversation's table stays bounded. */
export const DEDUP_MAX_IDS = 20_000;
/** KV allows one write per second per key. */
export const SNAPSHOT_INTERVAL_MS = 1000;
/** Deliveries per alarm run, and its time budget (the platform allows 15 minutes): past either
 * the alarm re-arms itself at once, so that snapshots and other work are not held up. */
const MAX_DELIVERIES_PER_ALARM = 50;
const MAX_ALARM_RUN_MS = 60_000;
/** When a part of the alarm fails (KV down or over quota, bad settings), it is tried again after
 * 30 s, doubling with each failure in a row up to an hour: a KV quota that runs out at noon must
 * not wake every conversation twice a minute until midnight. */
const RECOVERY_FIRST_MS = 30_000;
const RECOVERY_MAX_MS = 3600_000;
/** While deliveries are held (forwarding unset or misconfigured), the settings are looked at
 * again after 30 s, doubling up to an hour (the "held" job's back-off), and at every new receipt. */
/** A snapshot holds the newest receipts that fit in this many bytes (KV allows 25 MiB; the API
 * reads the whole value on every call). */
export const MAX_SNAPSHOT_BYTES = 1024 * 1024;
/** The largest page of the outbox one RPC returns. */
export const MAX_DELIVERIES_PAGE = 1000;
/** The size cap on seen ids is enforced every this many receipts (the age window on every one). */
const CAP_PRUNE_EVERY = 100;

export const DeliveryStatus = z.enum(["pending", "failed"]);
export type DeliveryStatus = z.infer<typeof DeliveryStatus>;

const DeliveryRow = z.object({
  seq: z.number(),
  receipt_id: z.string(),
  status: DeliveryStatus,
  attempts: z.number(),
  next_attempt_at: z.number(),
  created_at: z.number(),
  last_attempt_at: z.number().nullable(),
  last_status: z.number().nullable(),
  last_error: z.string().nullable(),
  failed_at: z.number().nullable(),
});
type DeliveryRow = z.infer<typeof DeliveryRow>;
const DELIVERY_COLUMNS = Object.keys(DeliveryRow.shape).join(", ");

export const OutboxRow = DeliveryRow.extend({ body: z.string() });
type OutboxRow = z.infer<typeof OutboxRow>;

export interface Delivery {
  receiptId: string;
  seq: number;
  status: DeliveryStatus;
  attempts: number;
  createdAt: string;
  nextAttemptAt?: string;
  lastAttemptAt?: string;
  lastStatus?: number;
  lastError?: string;
  failedAt?: string;
}

export type AcceptResult = "accepted" | "duplicate";
/** The alarm's jobs, each with its own back-off after failures; "held" paces rechecks of held deliveries. */
type Job = "delivery" | "publish" | "held";

const iso = (ms: number) => new Date(ms).toISOString();
const BodyRow = z.object({ body: z.string() });
const CountRow = z.object({ count: z.number() });
const MetaRow = z.object({ value: z.string() });
const SeqRow = z.object({ seq: z.number() });
const StateRow = z.object({ state: z.string() });

const SCHEMA = `
      CREATE TABLE IF NOT EXISTS receipts (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, seen_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS seen_by_age ON seen (seen_at);
      CREATE TABLE IF NOT EXISTS reads (reader TEXT PRIMARY KEY, state TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY, receipt_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'failed')), attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL, last_attempt_at INTEGER,
        last_status INTEGER, last_error TEXT, failed_at INTEGER);
      CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, seq);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

export class Conversation extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** False until the first receipt: reading a conversation that never existed creates no storage. */
  private exists: boolean;
  /** Alarm runs one at a time, also when a test or a retry invokes `alarm()` while one is in flight. */
  private alarmRuns: Promise<void> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.exists = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").toArray().length > 0;
    if (!this.exists) return;
    // Idempotent schema, then: an outbox left without an alarm (the platform gave up retrying one,
    // or forwarding came back after a restart) resumes as soon as the object is loaded again.
    this.sql.exec(SCHEMA);
    void ctx.blockConcurrencyWhile(async () => {
      try {
        await this.armAlarm();
      } catch (error) {
        log("error", "arm_failed", { conversation: this.conversation(), error: String(error) });
      }
    });
  }

  // ---- RPC ---------------------------------------------------------------------------------

  /**
   * Stores a receipt once. Resolves only after the write is committed (the output gate holds the
   * answer until storage confirms), which is when the provider may be told "OK".
   */
  async accept(receipt: Receipt): Promise<AcceptResult> {
    // The worker built this receipt from a validated callback; it is not validated twice.
    const { settings, forwarding } = settingsOf(this.env);
    const now = Date.now();
    if (!this.exists) {
      this.sql.exec(SCHEMA);
      this.exists = true;
    }
    const result = this.ctx.storage.transactionSync((): AcceptResult => {
      this.rememberConversation(receipt.conversation);
      // Seen ids expire after the window, but a receipt still among the recent ones is known too.
      const known = this.sql.exec("SELECT 1 FROM seen WHERE id = ?1 UNION ALL SELECT 1 FROM receipts WHERE id = ?1 LIMIT 1", receipt.id);
      if (known.toArray().length > 0) return "duplicate";
      this.sql.exec("INSERT INTO seen (id, seen_at) VALUES (?, ?)", receipt.id, now);
      const receiptJson = JSON.stringify(receipt);
      this.sql.exec("INSERT INTO receipts (id, body) VALUES (?, ?)", receipt.id, receiptJson);
      const seq = SeqRow.parse(this.sql.exec("SELECT last_insert_rowid() AS seq").one()).seq;
      for (const reader of receipt.readers) this.foldReader(receipt, reader);
      // Queued whether or not forwarding is on: held receipts go out once it is set up.
      this.sql.exec(
        "INSERT INTO outbox (seq, receipt_id, body, status, next_attempt_at, created_at) VALUES (?, ?, ?, 'pending', ?, ?)",
        seq,
        receipt.id,
        webhookBody(receipt, receiptJson),
        now,
        now,
      );
      this.prune(settings.RECENT_LIMIT, now, seq);
      this.markChanged();
      // Forwarding was held and works now: the backlog need not wait for the next recheck.
      if (forwarding.state === "on") this.recovered("held");
      return "accepted";
    });
    if (result === "accepted") await this.armAlarm();
    return result;
  }

  /** Recent receipts, newest first: the truth behind the KV snapshot; null for a conversation never seen. */
  async recent(limit: number): Promise<Receipt[] | null> {
    if (!this.exists) return null;
    return this.sql
      .exec("SELECT body FROM receipts ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((row) => Receipt.parse(JSON.parse(BodyRow.parse(row).body)));
  }

  async readStates(): Promise<ReadState[] | null> {
    if (!this.exists) return null;
    return this.sql
      .exec("SELECT state FROM reads ORDER BY reader")
      .toArray()
      .map((row) => ReadState.parse(JSON.parse(StateRow.parse(row).state)));
  }

  /** The outbox in acceptance order, a page at a time (`after` is the last `seq` seen), without bodies. */
  async deliveries(status?: DeliveryStatus, limit = MAX_DELIVERIES_PAGE, after = 0): Promise<Delivery[] | null> {
    if (!this.exists) return null;
    const page = Math.min(Math.max(1, limit), MAX_DELIVERIES_PAGE);
    const rows = this.sql
      .exec(`SELECT ${DELIVERY_COLUMNS} FROM outbox WHERE seq > ?1 AND (?2 IS NULL OR status = ?2) ORDER BY seq LIMIT ?3`, after, status ?? null, page)
      .toArray();
    return rows.map((row) => describeDelivery(DeliveryRow.parse(row)));
  }

  /** Re-queues every dead letter, in their original order, with a fresh retry schedule. */
  async retryDeadLetters(): Promise<{ requeued: number } | null> {
    if (!this.exists) return null;
    const now = Date.now();
    const requeued = this.ctx.storage.transactionSync(() => {
      const requeuedRows = this.sql
        .exec("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, failed_at = NULL WHERE status = 'failed' RETURNING seq", now)
        .toArray().length;
      if (requeuedRows > 0) this.markChanged();
      return requeuedRows;
    });
    if (requeued > 0) await this.armAlarm();
    return { requeued };
  }

  // ---- alarm: delivery and the KV snapshot --------------------------------------------------

  override alarm(): Promise<void> {
    const run = this.alarmRuns.then(() => this.runAlarm());
    this.alarmRuns = run.catch(() => undefined);
    return run;
  }

  private async runAlarm(): Promise<void> {
    if (!this.exists) return;
    // Never throw: the platform retries a failing alarm only six times; our own schedule rules.
    // Each job fails on its own, so that a KV outage does not hold up deliveries or the reverse.
    const { settings, forwarding } = settingsOf(this.env);
    // Publishing first as well as last: a long delivery run does not hold up the read model.
    await this.tryPublish(settings);
    try {
      const run = await this.deliverDue(forwarding);
      // Only a run that went past its back-off may reset it.
      if (run === "ran") this.recovered("delivery");
    } catch (error) {
      log("error", "delivery_failed", { conversation: this.conversation(), error: String(error) });
      this.backOff("delivery");
    }
    await this.tryPublish(settings);
    try {
      await this.armAlarm({ replace: true });
    } catch (error) {
      log("error", "arm_failed", { conversation: this.conversation(), error: String(error) });
      await this.ctx.storage.setAlarm(Date.now() + RECOVERY_FIRST_MS);
    }
  }

  private async tryPublish(settings: Settings): Promise<void> {
    try {
      if (await this.publish(settings)) this.recovered("publish");
    } catch (error) {
      log("error", "publish_failed", { conversation: this.conversation(), error: String(error) });
      this.backOff("publish");
    }
  }

  /** Records one more failure of `job` in a row and when to try it again. */
  private backOff(job: Job): void {
    const failures = this.metaNumber(`${job}_failures`) + 1;
    const wait = Math.min(RECOVERY_FIRST_MS * 2 ** (failures - 1), RECOVERY_MAX_MS);
    this.setMeta(`${job}_failures`, String(failures));
    this.setMeta(`${job}_retry_at`, String(Date.now() + wait));
  }

  private recovered(job: Job): void {
    if (this.metaNumber(`${job}_failures`) === 0) return;
    this.setMeta(`${job}_failures`, "0");
    this.setMeta(`${job}_retry_at`, "0");
  }

  /**
   * Delivers due receipts in order: "ran" when it went past its back-off (whatever the origin
   * answered), "waiting" when its back-off has not expired, "held" when forwarding is off.
   */
  private async deliverDue(forwarding: Forwarding): Promise<"ran" | "waiting" | "held"> {
    if (forwarding.state === "held") {
      // Pending rows wait for forwarding to be set up; look again later, less often each time.
      if (this.outboxHead() && Date.now() >= this.metaNumber("held_retry_at")) {
        log("warn", "deliveries_held", { conversation: this.conversation(), reason: forwarding.reason });
        this.backOff("held");
      }
      return "held";
    }
    this.recovered("held");
    if (Date.now() < this.metaNumber("delivery_retry_at")) return "waiting";
    const { origin, keys, schedule, timeoutMs } = forwarding;
    const runStartedAt = Date.now();
    for (let sent = 0; sent < MAX_DELIVERIES_PER_ALARM && Date.now() - runStartedAt < MAX_ALARM_RUN_MS; sent++) {
      const head = this.outboxHead();
      const startedAt = Date.now();
      if (!head || head.next_attempt_at > startedAt) return "ran";
      // Count the attempt before making it: if this run is cut short (deploy, eviction), the next
      // one neither repeats it at once nor forgets it, and the schedule still moves on.
      const attempt = { ...head, attempts: head.attempts + 1 };
      const lease = timeoutMs + (nextAttemptDelay(schedule, attempt.attempts) ?? 0);
      this.sql.exec(
        "UPDATE outbox SET attempts = ?, last_attempt_at = ?, next_attempt_at = ? WHERE seq = ?",
        attempt.attempts,
        startedAt,
        startedAt + lease,
        head.seq,
      );
      const result = await attemptDelivery({ url: origin, keys, id: head.receipt_id, body: head.body, timeoutMs }, startedAt);
      // The wait before a retry counts from when this attempt ended, not when it began.
      const next = this.record(attempt, result, schedule, Date.now());
      // A waiting head blocks the rest of the conversation: order is kept.
      if (next === "wait") return "ran";
    }
    return "ran";
  }

  /** Applies one attempt's result to the outbox; "wait" when the head must be retried later. */
  private record(attempt: OutboxRow, result: AttemptResult, schedule: readonly number[], at: number): "next" | "wait" {
    const fields = { conversation: this.conversation(), receiptId: attempt.receipt_id, attempt: attempt.attempts };
    if (result.kind === "delivered") {
      this.sql.exec("DELETE FROM outbox WHERE seq = ?", attempt.seq);
      this.markChanged();
      log("info", "delivered", { ...fields, status: result.status });
      return "next";
    }
    const delay = result.kind === "retry" ? nextAttemptDelay(schedule, attempt.attempts, result.retryAfterMs, Math.random()) : undefined;
    if (delay !== undefined) {
      this.sql.exec(
        "UPDATE outbox SET next_attempt_at = ?, last_status = ?, last_error = ? WHERE seq = ?",
        at + delay,
        result.status ?? null,
        result.error,
        attempt.seq,
      );
      log("warn", "delivery_retry", { ...fields, error: result.error, retryInMs: delay });
      return "wait";
    }
    this.sql.exec(
      "UPDATE outbox SET status = 'failed', last_status = ?, last_error = ?, failed_at = ? WHERE seq = ?",
      result.status ?? null,
      result.error,
      at,
      attempt.seq,
    );
    this.markChanged();
    log("error", "dead_letter", { ...fields, error: result.error, reason: result.kind === "give_up" ? "rejected" : "retries exhausted" });
    return "next";
  }

  /**
   * Writes the snapshot and the dead-letter index entry when they changed and a second has
   * passed; true when it wrote. Everything is read before the first await, so RPCs that run
   * meanwhile (an accept, a replay) cannot make it inconsistent; their changes go out next time.
   */
  private async publish(settings: Settings): Promise<boolean> {
    const conversation = this.conversation();
    const version = this.metaNumber("version");
    if (!conversation || version <= this.metaNumber("published_version")) return false;
    if (Date.now() < this.snapshotDueAt()) return false;
    const counts = this.deliveryCounts();
    const snapshot = this.snapshotJson(conversation, settings.RECENT_LIMIT, counts);
    const indexed = this.metaText("indexed_entry");
    const entry = counts.failed > 0 ? this.deadLetterEntry(conversation, counts.failed) : undefined;
    const entryText = entry ? JSON.stringify(entry) : "";

    await this.env.RECEIPTS_KV.put(await snapshotKey(conversation), snapshot);
    // The index entry is written only when it changes (count, oldest, last error).
    if (entry && entryText !== indexed) {
      await this.env.RECEIPTS_KV.put(await deadLetterKey(conversation), entryText, {
        metadata: { failed: entry.failed, oldestFailedAt: entry.oldestFailedAt },
      });
    } else if (!entry && indexed) {
      await this.env.RECEIPTS_KV.delete(await deadLetterKey(conversation));
    }
    this.setMeta("indexed_entry", entryText);
    this.setMeta("published_version", String(version));
    this.setMeta("published_at", String(Date.now()));
    return true;
  }

  /** KV takes one write per second per key; after a failed write, wait longer. */
  private snapshotDueAt(): number {
    return Math.max(this.metaNumber("published_at") + SNAPSHOT_INTERVAL_MS, this.metaNumber("publish_retry_at"));
  }

  /**
   * The snapshot (see `Snapshot`), assembled from the stored JSON text: the rows were validated
   * when written, so they are not parsed again for every publication.
   */
  private snapshotJson(conversation: string, limit: number, deliveries: { pending: number; failed: number }): string {
    const receipts: string[] = [];
    let bytes = 0;
    for (const row of this.sql.exec("SELECT body FROM receipts ORDER BY seq DESC LIMIT ?", limit)) {
      const body = BodyRow.parse(row).body;
      bytes += body.length;
      // Newest first, as many as fit (receipts carry their raw bodies, up to 64 KiB each).
      if (bytes > MAX_SNAPSHOT_BYTES && receipts.length > 0) break;
      receipts.push(body);
    }
    const reads = this.sql
      .exec("SELECT state FROM reads ORDER BY reader")
      .toArray()
      .map((row) => StateRow.parse(row).state);
    const head = JSON.stringify({ conversation, updatedAt: iso(Date.now()) }).slice(0, -1);
    return `${head},"receipts":[${receipts.join(",")}],"reads":[${reads.join(",")}],"deliveries":${JSON.stringify(deliveries)}}`;
  }

  /**
   * One alarm serves every job: it is set for the earliest of the outbox head's next attempt, the
   * next snapshot, and any job's retry after failures. RPCs keep an earlier alarm; the alarm
   * itself, at its end, sets exactly what is due (or nothing), since it has just done the rest.
   */
  private async armAlarm({ replace = false } = {}): Promise<void> {
    const { forwarding } = settingsOf(this.env);
    const times: number[] = [];
    const head = this.outboxHead();
    if (head) {
      if (forwarding.state === "on") times.push(Math.max(head.next_attempt_at, this.metaNumber("delivery_retry_at")));
      else times.push(this.metaNumber("held_retry_at"));
    }
    if (this.metaNumber("version") > this.metaNumber("published_version")) times.push(this.snapshotDueAt());
    if (times.length === 0) {
      if (replace) await this.ctx.storage.deleteAlarm();
      return;
    }
    const wanted = Math.max(Math.min(...times), Date.now());
    const current = replace ? null : await this.ctx.storage.getAlarm();
    if (current === null || current > wanted) await this.ctx.storage.setAlarm(wanted);
  }

  // ---- storage helpers -----------------------------------------------------------------------

  private foldReader(receipt: Receipt, reader: string): void {
    const row = this.sql.exec("SELECT state FROM reads WHERE reader = ?", reader).toArray()[0];
    const current = row ? ReadState.parse(JSON.parse(StateRow.parse(row).state)) : undefined;
    const next = foldReadState(current, receipt, reader);
    this.sql.exec("INSERT OR REPLACE INTO reads (reader, state) VALUES (?, ?)", reader, JSON.stringify(next));
  }

  private prune(recentLimit: number, now: number, seq: number): void {
    this.sql.exec("DELETE FROM receipts WHERE seq <= (SELECT seq FROM receipts ORDER BY seq DESC LIMIT 1 OFFSET ?)", recentLimit);
    // Ids still in the outbox stay seen whatever their age: they may yet be delivered.
    this.sql.exec("DELETE FROM seen WHERE seen_at < ? AND id NOT IN (SELECT receipt_id FROM outbox)", now - DEDUP_WINDOW_MS);
    if (seq % CAP_PRUNE_EVERY !== 0) return;
    this.sql.exec(
      "DELETE FROM seen WHERE id IN (SELECT id FROM seen WHERE id NOT IN (SELECT receipt_id FROM outbox) ORDER BY seen_at DESC LIMIT -1 OFFSET ?)",
      DEDUP_MAX_IDS,
    );
  }

  private outboxHead(): OutboxRow | undefined {
    const row = this.sql.exec("SELECT * FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT 1").toArray()[0];
    return row ? OutboxRow.parse(row) : undefined;
  }

  private deliveryCounts(): { pending: number; failed: number } {
    const count = (status: DeliveryStatus) => CountRow.parse(this.sql.exec("SELECT COUNT(*) AS count FROM outbox WHERE status = ?", status).one()).count;
    return { pending: count("pending"), failed: count("failed") };
  }

  private deadLetterEntry(conversation: string, failed: number): DeadLetterEntry {
    const oldest = DeliveryRow.parse(this.sql.exec(`SELECT ${DELIVERY_COLUMNS} FROM outbox WHERE status = 'failed' ORDER BY failed_at LIMIT 1`).one());
    const latest = DeliveryRow.parse(this.sql.exec(`SELECT ${DELIVERY_COLUMNS} FROM outbox WHERE status = 'failed' ORDER BY failed_at DESC LIMIT 1`).one());
    return { conversation, failed, oldestFailedAt: iso(oldest.failed_at ?? oldest.created_at), lastError: latest.last_error ?? "" };
  }

  private rememberConversation(conversation: string): void {
    this.sql.exec("INSERT OR IGNORE INTO meta (key, value) VALUES ('conversation', ?)", conversation);
  }

  private conversation(): string | undefined {
    const row = this.sql.exec("SELECT value FROM meta WHERE key = 'conversation'").toArray()[0];
    return row ? MetaRow.parse(row).value : undefined;
  }

  private markChanged(): void {
    this.setMeta("version", String(this.metaNumber("version") + 1));
  }

  private metaNumber(key: string): number {
    return Number(this.metaText(key) || 0);
  }

  private metaText(key: string): string {
    const row = this.sql.exec("SELECT value FROM meta WHERE key = ?", key).toArray()[0];
    return row ? MetaRow.parse(row).value : "";
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", key, value);
  }
}

function describeDelivery(row: DeliveryRow): Delivery {
  return {
    receiptId: row.receipt_id,
    seq: row.seq,
    status: row.status,
    attempts: row.attempts,
    createdAt: iso(row.created_at),
    ...(row.status === "pending" ? { nextAttemptAt: iso(row.next_attempt_at) } : {}),
    ...(row.last_attempt_at !== null ? { lastAttemptAt: iso(row.last_attempt_at) } : {}),
    ...(row.last_status !== null ? { lastStatus: row.last_status } : {}),
    ...(row.last_error !== null ? { lastError: row.last_error } : {}),
    ...(row.failed_at !== null ? { failedAt: iso(row.failed_at) } : {}),
  };
}

/**
 * One Durable Object per conversation: the only writer of its receipts, read state and outbox.
 * SQLite-backed, called through RPC. A thin shell over plain modules: `schema.ts` (tables and
 * migrations), `outbox.ts` (the delivery state machine), `publisher.ts` (the KV read model). The
 * alarm delivers due receipts in order (on our own retry schedule), then publishes the snapshot.
 * Storage is written for what it costs (docs/design.md, "Storage"): one row per receipt, small
 * state written only when it changes.
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import { attemptDelivery, nextAttemptDelay, type AttemptResult } from "../delivery/attempt";
import { batchWebhookBody, batchWebhookId, webhookBody } from "../delivery/webhook";
import { log } from "../log";
import { bucketOf, nextActivity } from "../ops/activity";
import { activityOf, INDEX_MIN_INTERVAL_MS, type IndexContent, indexContent, indexDb, parseIndexedRow, writeIndexRow } from "../ops/conversation-index";
import { recordDelivery, type DeliveryOutcome } from "../ops/metrics";
import { Receipt } from "../receipt";
import { settingsOf, type Forwarding } from "../settings";
import { Outbox, type Delivery, type DeliveryFilter, type ReceiptRow } from "./outbox";
import { deadLetterEntry, publishToKv, snapshotJson } from "./publisher";
import { acceptViewer, broadcast, PING, PONG } from "./live-tail";
import { foldReadState, ReadState } from "./read-state";
import { createLatest, migrate, schemaVersion } from "./schema";

export { DEDUP_MAX_IDS, DEDUP_WINDOW_MS, DeliveryFilter, DeliveryStatus, MAX_DELIVERIES_PAGE, type Delivery } from "./outbox";
export { MAX_SNAPSHOT_BYTES } from "./publisher";

/** Requests per alarm run, and its time budget (the platform allows 15 minutes): past either the
 * alarm re-arms itself at once, so that publication and other work are not held up. */
const MAX_DELIVERIES_PER_ALARM = 50;
const MAX_ALARM_RUN_MS = 60_000;
/** When a job of the alarm fails (KV down or over quota, a storage error), it is tried again after
 * 30 s, doubling with each failure in a row up to an hour. While deliveries are held (forwarding
 * unset or misconfigured), the settings are looked at again on the same schedule ("held"), and at
 * every new receipt. */
const RECOVERY_FIRST_MS = 30_000;
const RECOVERY_MAX_MS = 3600_000;

export type AcceptResult = "accepted" | "duplicate";
/** The alarm's jobs, each with its own back-off after failures; "held" paces rechecks of held deliveries. */
type Job = "delivery" | "publish" | "held";

const StateRow = z.object({ state: z.string() });
const ValueRow = z.object({ value: z.string() });

export class Conversation extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly outbox: Outbox;
  /** False until the first receipt: reading a conversation that never existed creates no storage. */
  private exists: boolean;
  /** Alarm runs one at a time, also when a test or a retry invokes `alarm()` while one is in flight. */
  private alarmRuns: Promise<void> = Promise.resolve();
  /** Changes since the last publication, in memory; after a restart, whether storage changed since. */
  private version = 0;
  private publishedVersion = 0;
  /** Duplicates per activity bucket since the last publication (src/ops/activity.ts): they leave no row. */
  private readonly duplicates = new Map<number, number>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.outbox = new Outbox(this.sql);
    this.exists = schemaVersion(this.sql) > 0;
    // Live-tail viewers' keep-alives are answered without waking the object (live-tail.ts).
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
    if (!this.exists) return;
    // Migrations, then memory, then an outbox left without an alarm (the platform gave up
    // retrying one, or forwarding came back after a restart) resumes: all before any request.
    void ctx.blockConcurrencyWhile(async () => {
      try {
        this.ctx.storage.transactionSync(() => migrate(this.sql, Date.now()));
        this.outbox.load();
        if (this.outbox.lastChangeAt >= this.stateNumber("published_at")) this.version = 1;
        await this.armAlarm();
      } catch (error) {
        log("error", "arm_failed", { conversation: this.conversation(), error: String(error) });
      }
    });
  }

  // ---- RPC ---------------------------------------------------------------------------------

  /**
   * Stores a receipt once and queues it for delivery. Resolves only after the write is committed
   * (the output gate holds the answer until storage confirms), which is when the provider may be told "OK".
   */
  async accept(receipt: Receipt): Promise<AcceptResult> {
    // The worker built this receipt from a validated callback; it is not validated twice.
    const { settings, forwarding } = settingsOf(this.env);
    const now = Date.now();
    if (!this.exists) {
      this.ctx.storage.transactionSync(() => {
        createLatest(this.sql);
        this.setState("conversation", receipt.conversation);
      });
      this.exists = true;
    }
    if (this.outbox.has(receipt.id)) {
      const bucket = bucketOf(now);
      this.duplicates.set(bucket, (this.duplicates.get(bucket) ?? 0) + 1);
      return "duplicate";
    }
    const seq = this.ctx.storage.transactionSync(() => {
      // Queued whether or not forwarding is on: held receipts go out once it is set up.
      const stored = this.outbox.enqueue(receipt.id, receipt.readAt, JSON.stringify(receipt), now);
      for (const reader of receipt.readers) this.foldReader(receipt, reader);
      // Forwarding was held and works now: the backlog need not wait for the next recheck.
      if (forwarding.state === "on") this.recovered("held");
      return stored;
    });
    this.outbox.committed(seq, receipt.id, now);
    this.version++;
    broadcast(this.ctx, { type: "receipt", seq, acceptedAt: new Date(now).toISOString(), receipt });
    if (this.outbox.pruneDue()) this.ctx.storage.transactionSync(() => this.outbox.prune(settings.RECENT_LIMIT, now));
    await this.armAlarm();
    return "accepted";
  }

  /** Recent receipts, newest first: the truth behind the KV snapshot; null for a conversation never seen. */
  async recent(limit: number): Promise<Receipt[] | null> {
    if (!this.exists) return null;
    // Older receipts are kept for deduplication and delivery history; "recent" means RECENT_LIMIT.
    return this.outbox.recentBodies(Math.min(limit, settingsOf(this.env).settings.RECENT_LIMIT)).map((body) => Receipt.parse(JSON.parse(body)));
  }

  async readStates(): Promise<ReadState[] | null> {
    if (!this.exists) return null;
    return this.sql
      .exec("SELECT state FROM reads ORDER BY reader")
      .toArray()
      .map((row) => ReadState.parse(JSON.parse(StateRow.parse(row).state)));
  }

  /** Each receipt's delivery state in acceptance order, a page at a time (`after` is the last `seq` seen), without bodies. */
  async deliveries(status?: DeliveryFilter, limit = 1000, after = 0): Promise<Delivery[] | null> {
    if (!this.exists) return null;
    return this.outbox.page(status, limit, after);
  }

  /** Re-queues every dead letter, in their original order, with a fresh retry schedule. */
  async retryDeadLetters(): Promise<{ requeued: number } | null> {
    if (!this.exists) return null;
    const requeued = this.ctx.storage.transactionSync(() => this.outbox.requeueFailed(Date.now()));
    if (requeued > 0) {
      this.version++;
      broadcast(this.ctx, { type: "requeued", count: requeued, at: new Date().toISOString() });
      await this.armAlarm();
    }
    return { requeued };
  }

  /** The live tail (live-tail.ts): the only HTTP this object answers is a viewer's WebSocket upgrade. */
  override async fetch(request: Request): Promise<Response> {
    return acceptViewer(this.ctx, request, this.conversation());
  }

  /** Viewers only ever send keep-alives, answered by the platform; anything else is ignored. */
  override webSocketMessage(): void {}

  override webSocketClose(viewer: WebSocket, code: number): void {
    try {
      viewer.close(code === 1005 || code === 1006 ? 1000 : code, "closed");
    } catch {
      // Already closed.
    }
  }

  /**
   * Re-queues the delivered receipts still kept (RECENT_LIMIT newest, and those within the dedup
   * window) that were delivered between `since` and `until` (epoch ms), for an origin that lost them.
   */
  async redeliver(since: number, until: number): Promise<{ requeued: number } | null> {
    if (!this.exists) return null;
    const now = Date.now();
    const requeued = this.ctx.storage.transactionSync(() => this.outbox.requeueDelivered(since, until, now));
    if (requeued > 0) {
      this.version++;
      broadcast(this.ctx, { type: "requeued", count: requeued, at: new Date(now).toISOString() });
      await this.armAlarm();
    }
    return { requeued };
  }

  // ---- alarm: delivery, then the read model -------------------------------------------------

  override alarm(): Promise<void> {
    const run = this.alarmRuns.then(() => this.runAlarm());
    this.alarmRuns = run.catch(() => undefined);
    return run;
  }

  private async runAlarm(): Promise<void> {
    if (!this.exists) return;
    // Never throw: the platform retries a failing alarm only six times; our own schedule rules.
    // Each job fails on its own, so that a KV outage does not hold up deliveries or the reverse.
    const { forwarding } = settingsOf(this.env);
    try {
      const run = await this.deliverDue(forwarding);
      // Only a run that went past its back-off may reset it.
      if (run === "ran") this.recovered("delivery");
    } catch (error) {
      log("error", "delivery_failed", { conversation: this.conversation(), error: String(error) });
      this.backOff("delivery");
    }
    // After delivery: what was just delivered is in this publication, not a second one.
    await this.tryPublish();
    try {
      await this.armAlarm({ replace: true });
    } catch (error) {
      log("error", "arm_failed", { conversation: this.conversation(), error: String(error) });
      await this.ctx.storage.setAlarm(Date.now() + RECOVERY_FIRST_MS);
    }
  }

  /**
   * Delivers due receipts in order: "ran" when it went past its back-off (whatever the origin
   * answered), "waiting" when its back-off has not expired, "held" when forwarding is off.
   */
  private async deliverDue(forwarding: Forwarding): Promise<"ran" | "waiting" | "held"> {
    if (forwarding.state === "held") {
      // Pending rows wait for forwarding to be set up; look again later, less often each time.
      if (this.outbox.head() && Date.now() >= this.stateNumber("held_retry_at")) {
        log("warn", "deliveries_held", { conversation: this.conversation(), reason: forwarding.reason });
        this.backOff("held");
      }
      return "held";
    }
    this.recovered("held");
    if (Date.now() < this.stateNumber("delivery_retry_at")) return "waiting";
    const { origin, keys, schedule, timeoutMs, batchMax } = forwarding;
    const runStartedAt = Date.now();
    for (let sent = 0; sent < MAX_DELIVERIES_PER_ALARM && Date.now() - runStartedAt < MAX_ALARM_RUN_MS; sent++) {
      const head = this.outbox.head();
      const startedAt = Date.now();
      if (!head || head.next_attempt_at > startedAt) return "ran";
      // A batch keeps its size across retries (same receipts, same webhook-id); a new one takes
      // what is due now, up to FORWARD_BATCH_MAX.
      const rows = this.outbox.pendingFrom(head, head.batch ?? batchMax);
      const lease = timeoutMs + (nextAttemptDelay(schedule, head.attempts + 1) ?? 0);
      const attempts = this.outbox.beginAttempt(head, startedAt, startedAt + lease, rows.length);
      const [id, body] =
        rows.length > 1
          ? [batchWebhookId(head.id, rows.length), batchWebhookBody(rows.map((row) => ({ readAt: row.read_at, json: row.body })))]
          : [head.id, webhookBody({ readAt: head.read_at }, head.body)];
      const result = await attemptDelivery({ url: origin, keys, id, body, timeoutMs }, startedAt);
      // The wait before a retry counts from when this attempt ended, not when it began.
      const next = this.record(rows, attempts, startedAt, result, schedule, Date.now());
      // A waiting head blocks the rest of the conversation: order is kept.
      if (next === "wait") return "ran";
    }
    return "ran";
  }

  /** Applies one attempt's result; "wait" when the head must be retried later. */
  private record(rows: ReceiptRow[], attempts: number, startedAt: number, result: AttemptResult, schedule: readonly number[], at: number): "next" | "wait" {
    const head = rows[0];
    if (!head) return "next";
    const conversation = this.conversation() ?? "";
    const fields = { conversation, receiptId: head.id, ...(rows.length > 1 ? { batch: rows.length } : {}), attempt: attempts };
    const measure = (outcome: DeliveryOutcome) => {
      const status = result.status !== undefined ? { status: result.status } : {};
      recordDelivery(this.env.METRICS, { conversation, outcome, ...status, ms: at - startedAt, attempt: attempts });
      broadcast(this.ctx, {
        type: "delivery",
        receiptIds: rows.map((row) => row.id),
        outcome,
        ...status,
        ...(result.kind !== "delivered" ? { error: result.error } : {}),
        ms: at - startedAt,
        attempt: attempts,
        at: new Date(at).toISOString(),
      });
    };
    if (result.kind === "delivered") {
      this.version++;
      this.outbox.delivered(rows, attempts, startedAt, at, result.status);
      measure("delivered");
      log("info", "delivered", { ...fields, status: result.status, ms: at - startedAt });
      return "next";
    }
    const delay = result.kind === "retry" ? nextAttemptDelay(schedule, attempts, result.retryAfterMs, Math.random()) : undefined;
    if (delay !== undefined) {
      this.outbox.retryLater(head, startedAt, at, at + delay, result.status ?? null, result.error);
      measure("retry");
      log("warn", "delivery_retry", { ...fields, error: result.error, retryInMs: delay });
      return "wait";
    }
    this.version++;
    this.outbox.failed(rows, attempts, startedAt, at, result.status ?? null, result.error);
    measure(result.kind === "give_up" ? "give_up" : "dead_letter");
    log("error", "dead_letter", { ...fields, error: result.error, reason: result.kind === "give_up" ? "rejected" : "retries exhausted" });
    return "next";
  }

  private async tryPublish(): Promise<void> {
    try {
      if (await this.publish()) this.recovered("publish");
    } catch (error) {
      log("error", "publish_failed", { conversation: this.conversation(), error: String(error) });
      this.backOff("publish");
    }
  }

  /**
   * Writes the snapshot (unless SNAPSHOT_INTERVAL_SECONDS is 0) and the conversation's row of the
   * D1 index (when `DB` is bound) when something changed and the interval has passed; true when it
   * wrote. Everything is read before the first await, so RPCs that run meanwhile cannot make it
   * inconsistent; their changes go out next time.
   *
   * The D1 row, with its activity buckets (src/ops/activity.ts), is written only when its content
   * changed (its text is kept as `indexed_row`), after KV: a D1 failure fails the publication, which
   * is retried with its back-off. With `DB` bound and SNAPSHOT_INTERVAL_SECONDS=0, a publication is
   * still at most once a minute (INDEX_MIN_INTERVAL_MS; `published_at` is then recorded too).
   */
  private async publish(): Promise<boolean> {
    const conversation = this.conversation();
    if (!conversation || this.version <= this.publishedVersion) return false;
    const now = Date.now();
    if (now < this.publishDueAt()) return false;
    const version = this.version;
    const { settings } = settingsOf(this.env);
    const snapshot = settings.SNAPSHOT_INTERVAL_SECONDS > 0 ? snapshotJson(this.sql, this.outbox, conversation, settings.RECENT_LIMIT, now) : undefined;
    // Before the D1 index, each conversation kept a KV dead-letter entry: removed once, never written again.
    const legacyEntry = this.stateText("indexed_entry") !== "";
    const db = indexDb(this.env);
    const indexedRow = this.stateText("indexed_row");
    const duplicates = new Map(this.duplicates);
    let content: IndexContent | undefined;
    if (db) {
      const previous = parseIndexedRow(indexedRow);
      const activity = nextActivity(this.sql, activityOf(previous), previous?.accepted ?? 0, duplicates, now);
      content = indexContent(this.sql, this.outbox, conversation, this.outbox.counts(), deadLetterEntry(this.outbox, conversation), activity);
    }
    const row = content ? JSON.stringify(content) : indexedRow;
    await publishToKv(this.env.RECEIPTS_KV, conversation, snapshot, legacyEntry);
    if (db && content && row !== indexedRow) await writeIndexRow(db, content, now);
    this.ctx.storage.transactionSync(() => {
      if (legacyEntry) this.sql.exec("DELETE FROM state WHERE key = 'indexed_entry'");
      if (db && row !== indexedRow) this.setState("indexed_row", row);
      if (snapshot !== undefined || db) this.setState("published_at", String(now));
    });
    // Counted in this row now; those that came in meanwhile stay for the next one.
    for (const [bucket, n] of duplicates) {
      const left = (this.duplicates.get(bucket) ?? 0) - n;
      if (left > 0) this.duplicates.set(bucket, left);
      else this.duplicates.delete(bucket);
    }
    this.publishedVersion = version;
    return true;
  }

  /**
   * KV takes one write per second per key, and a snapshot is worth one per interval (the D1 row
   * one per interval too, and one a minute at most when there is no snapshot); after a failed
   * write, wait longer.
   */
  private publishDueAt(): number {
    const { settings } = settingsOf(this.env);
    const interval =
      settings.SNAPSHOT_INTERVAL_SECONDS === 0 && indexDb(this.env) ? INDEX_MIN_INTERVAL_MS : Math.max(settings.SNAPSHOT_INTERVAL_SECONDS * 1000, 1000);
    return Math.max(this.stateNumber("published_at") + interval, this.stateNumber("publish_retry_at"));
  }

  /**
   * One alarm serves every job: it is set for the earliest of the head's next attempt (or the
   * held recheck), the next publication, and any job's retry after failures. RPCs keep an earlier
   * alarm; the alarm itself, at its end, sets exactly what is due (or nothing).
   */
  private async armAlarm({ replace = false } = {}): Promise<void> {
    const { forwarding } = settingsOf(this.env);
    const times: number[] = [];
    const head = this.outbox.head();
    if (head) {
      if (forwarding.state === "on") times.push(Math.max(head.next_attempt_at, this.stateNumber("delivery_retry_at")));
      else times.push(this.stateNumber("held_retry_at"));
    }
    if (this.version > this.publishedVersion) times.push(this.publishDueAt());
    const current = await this.ctx.storage.getAlarm();
    if (times.length === 0) {
      if (replace && current !== null) await this.ctx.storage.deleteAlarm();
      return;
    }
    const now = Date.now();
    const wanted = Math.max(Math.min(...times), now);
    // Setting an alarm is a write: not when the one set is already right (or, from an RPC, earlier).
    if (replace ? current === wanted : current !== null && current <= wanted) return;
    await this.ctx.storage.setAlarm(wanted);
  }

  // ---- storage helpers -----------------------------------------------------------------------

  /** Records one more failure of `job` in a row and when to try it again. */
  private backOff(job: Job): void {
    const failures = this.stateNumber(`${job}_failures`) + 1;
    const wait = Math.min(RECOVERY_FIRST_MS * 2 ** (failures - 1), RECOVERY_MAX_MS);
    this.setState(`${job}_failures`, String(failures));
    this.setState(`${job}_retry_at`, String(Date.now() + wait));
  }

  /** Clears `job`'s back-off; writes only when there was one. */
  private recovered(job: Job): void {
    if (this.stateNumber(`${job}_failures`) === 0) return;
    this.sql.exec("DELETE FROM state WHERE key IN (?, ?)", `${job}_failures`, `${job}_retry_at`);
  }

  private foldReader(receipt: Receipt, reader: string): void {
    const row = this.sql.exec("SELECT state FROM reads WHERE reader = ?", reader).toArray()[0];
    const current = row ? ReadState.parse(JSON.parse(StateRow.parse(row).state)) : undefined;
    const next = foldReadState(current, receipt, reader);
    this.sql.exec("INSERT INTO reads (reader, state) VALUES (?1, ?2) ON CONFLICT (reader) DO UPDATE SET state = ?2", reader, JSON.stringify(next));
  }

  private conversation(): string | undefined {
    return this.exists ? this.stateText("conversation") || undefined : undefined;
  }

  private stateNumber(key: string): number {
    return Number(this.stateText(key) || 0);
  }

  private stateText(key: string): string {
    const row = this.sql.exec("SELECT value FROM state WHERE key = ?", key).toArray()[0];
    return row ? ValueRow.parse(row).value : "";
  }

  private setState(key: string, value: string): void {
    this.sql.exec("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2", key, value);
  }
}

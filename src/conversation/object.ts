/**
 * One Durable Object per conversation: the only writer of its receipts, read state and outbox.
 * SQLite-backed, called through RPC. It accepts and deduplicates receipts, folds read state, serves
 * pages of them, requeues dead letters and replays, and holds the live tail's sockets. One alarm
 * runs its jobs, each with its own back-off: deliver due receipts in order (on our own retry
 * schedule), then publish the KV snapshot and the D1 index row apart. What can be plain code lives
 * in modules: `schema.ts` (tables and migrations), `outbox.ts` (the delivery state machine),
 * `publisher.ts` (the snapshot's content), `read-state.ts`, `live-tail.ts` and
 * `ops/conversation-index.ts` (the index row). Storage is written for what it costs
 * (docs/design.md, "Storage"): one row per receipt, small state written only when it changes.
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import { attemptDelivery, nextAttemptDelay, type AttemptResult } from "../delivery/attempt";
import { batchWebhookBody, batchWebhookId, webhookBody } from "../delivery/webhook";
import { log } from "../log";
import { bucketOf, nextActivity } from "../ops/activity";
import {
  activityOf,
  INDEX_MIN_INTERVAL_MS,
  type IndexContent,
  indexContent,
  indexDb,
  indexProblemOf,
  parseIndexedRow,
  writeIndexRow,
} from "../ops/conversation-index";
import { recordDelivery, type DeliveryOutcome } from "../ops/metrics";
import { Receipt } from "../receipt";
import { settingsOf, useLogLevel, type Forwarding } from "../settings";
import { isoFromMillis } from "../time";
import { Outbox, type Delivery, type DeliveryFilter, type ReceiptRow } from "./outbox";
import { deadLetters, publishToKv, snapshotJson } from "./publisher";
import { acceptViewer, broadcast, PING, PONG } from "./live-tail";
import { foldReadStates, MAX_READS_PAGE, ReadState, type ReadsPage } from "./read-state";
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
/**
 * The alarm's jobs, each with its own back-off after failures; "held" paces rechecks of held
 * deliveries. The two outputs of a publication, the KV snapshot ("kv") and the D1 index row
 * ("index"), fail and retry apart: a missing or failing index never holds up the snapshot.
 */
type Job = "delivery" | "kv" | "index" | "held";
type Output = "kv" | "index";
/** Before the outputs were split, one "publish" job kept these; still honoured once, then deleted. */
const LEGACY_PUBLISH_KEYS = ["publish_failures", "publish_retry_at"] as const;

/** `SELECT state FROM reads`: one reader's ReadState as JSON (the `state` table's rows are KeyValueRow). */
const ReadStateRow = z.object({ state: z.string() });
const KeyValueRow = z.object({ key: z.string(), value: z.string() });
const ReaderCount = z.object({ n: z.number() });
/** A whole `reads` row. */
const ReadsRow = z.object({ reader: z.string(), state: z.string() });
/** Readers per read-state SELECT (and twice as few per upsert, two values each). */
const READERS_CHUNK = 100;

export class Conversation extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly outbox: Outbox;
  /** False until the first receipt: reading a conversation that never existed creates no storage. */
  private exists: boolean;
  /** Alarm runs one at a time, also when a test or a retry invokes `alarm()` while one is in flight. */
  private alarmRuns: Promise<void> = Promise.resolve();
  /** Changes since the last publication, in memory; after a restart, whether storage changed since. */
  private version = 0;
  private readonly published: Record<Output, number> = { kv: 0, index: 0 };
  /** When the index row was last written by this instance: its interval, while KV (whose time is `published_at`) fails. */
  private indexPublishedAt = 0;
  /** Duplicates per activity bucket since the last publication (src/ops/activity.ts): they leave no row. */
  private readonly duplicates = new Map<number, number>();
  /**
   * The `state` table in memory, so that reading it costs no SQL (the alarm check after every
   * batch reads a dozen keys). Loaded on first use and again at each alarm run; every write goes
   * through `setState`/`deleteState`; a transaction that throws drops it (`transaction`), so a
   * rolled-back value is never kept.
   */
  private state: Map<string, string> | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    useLogLevel(env);
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
    const [result] = await this.acceptMany([receipt]);
    if (!result) throw new Error("acceptMany answered no result");
    return result;
  }

  /**
   * `accept` for several receipts of this conversation, stored in the order given, in one
   * transaction: one object request, one commit and one alarm check for the batch (docs/design.md,
   * "A burst into one conversation"). The worker's concurrent stores into one conversation come
   * here together (accept-batch.ts), and so do the accept queue's batches (accept-queue.ts, which
   * validates the queued bodies). One result per receipt, in order: a repeated id, in storage or
   * earlier in the batch, is a duplicate.
   */
  async acceptMany(receipts: Receipt[]): Promise<AcceptResult[]> {
    const first = receipts[0];
    if (!first) return [];
    const { settings, forwarding } = settingsOf(this.env);
    const now = Date.now();
    if (!this.exists) {
      this.transaction(() => {
        createLatest(this.sql);
        this.setState("conversation", first.conversation);
      });
      this.exists = true;
      // createLatest wrote `state` too (its schema version).
      this.state = undefined;
    }
    const results: AcceptResult[] = [];
    const fresh: Receipt[] = [];
    const ids = new Set<string>();
    for (const receipt of receipts) {
      if (this.outbox.has(receipt.id) || ids.has(receipt.id)) {
        const bucket = bucketOf(now);
        this.duplicates.set(bucket, (this.duplicates.get(bucket) ?? 0) + 1);
        results.push("duplicate");
        continue;
      }
      ids.add(receipt.id);
      fresh.push(receipt);
      results.push("accepted");
    }
    if (fresh.length === 0) return results;
    const previousMaxSeq = this.outbox.maxSeq;
    const seqs = this.transaction(() => {
      // Queued whether or not forwarding is on: held receipts go out once it is set up.
      const stored = this.outbox.enqueueMany(
        fresh.map((receipt) => ({ id: receipt.id, readAt: receipt.readAt, body: JSON.stringify(receipt) })),
        now,
      );
      this.foldReaders(fresh);
      // Forwarding was held and works now: the backlog need not wait for the next recheck.
      if (forwarding.state === "on") this.recovered("held");
      return stored;
    });
    const acceptedAt = isoFromMillis(now);
    fresh.forEach((receipt, i) => {
      const seq = seqs[i] ?? previousMaxSeq + 1 + i;
      this.outbox.committed(seq, receipt.id, now);
      broadcast(this.ctx, { type: "receipt", seq, acceptedAt, receipt });
    });
    this.version++;
    if (this.outbox.pruneDue(previousMaxSeq)) this.transaction(() => this.outbox.prune(settings.RECENT_LIMIT, now));
    await this.armAlarm();
    return results;
  }

  /** Recent receipts, newest first: the truth behind the KV snapshot; null for a conversation never seen. */
  async recent(limit: number): Promise<Receipt[] | null> {
    if (!this.exists) return null;
    // Older receipts are kept for deduplication and delivery history; "recent" means RECENT_LIMIT.
    return this.outbox.recentBodies(Math.min(limit, settingsOf(this.env).settings.RECENT_LIMIT)).map((body) => Receipt.parse(JSON.parse(body)));
  }

  /**
   * Read state a page at a time, in reader order after the reader `after` (a primary-key range:
   * no sort), with the number of readers; `next` when more may follow. Null for a conversation never seen.
   */
  async readStates(limit = MAX_READS_PAGE, after?: string): Promise<ReadsPage | null> {
    if (!this.exists) return null;
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

  /** Each receipt's delivery state in acceptance order, a page at a time (`after` is the last `seq` seen), without bodies. */
  async deliveries(status?: DeliveryFilter, limit = 1000, after = 0): Promise<Delivery[] | null> {
    if (!this.exists) return null;
    return this.outbox.page(status, limit, after);
  }

  /** Re-queues every dead letter, in their original order, with a fresh retry schedule. */
  async retryDeadLetters(): Promise<{ requeued: number } | null> {
    if (!this.exists) return null;
    const requeued = this.transaction(() => this.outbox.requeueFailed(Date.now()));
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
    const requeued = this.transaction(() => this.outbox.requeueDelivered(since, until, now));
    if (requeued > 0) {
      this.version++;
      broadcast(this.ctx, { type: "requeued", count: requeued, at: isoFromMillis(now) });
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
    // Read afresh once per run (one statement): memory never drifts from storage for longer than
    // a run, whoever wrote the table.
    this.state = undefined;
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
        at: isoFromMillis(at),
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
      await this.publish();
    } catch (error) {
      // Reading the object's own rows failed (a storage error): both outputs wait their back-off.
      log("error", "publish_failed", { conversation: this.conversation(), error: String(error) });
      this.backOff("kv");
      this.backOff("index");
    }
  }

  /**
   * Publishes what changed to each output that is due: the snapshot to KV (unless
   * SNAPSHOT_INTERVAL_SECONDS is 0) and the conversation's row of the D1 index (when `DB` is
   * bound). Everything is read before the first await, so RPCs that run meanwhile cannot make it
   * inconsistent; their changes go out next time.
   *
   * The two outputs are written side by side and settle apart: each failure backs off its own
   * output only (docs/design.md, "The KV read model"), and is logged once when it starts
   * (`kv_publish_failed`, `index_unavailable`) and once when it ends (`publish_recovered`). The D1
   * row, with its activity buckets (src/ops/activity.ts), is written only when its content changed
   * (its text is kept as `indexed_row`). `published_at` paces both: the snapshot's time, or with
   * SNAPSHOT_INTERVAL_SECONDS=0 the row's (then at most once a minute, INDEX_MIN_INTERVAL_MS).
   * Nothing more is written in the common case: back-off state only on failure.
   */
  private async publish(): Promise<void> {
    const conversation = this.conversation();
    if (!conversation) return;
    const version = this.version;
    const now = Date.now();
    const { settings } = settingsOf(this.env);
    const db = indexDb(this.env);
    // Before the D1 index, each conversation kept a KV dead-letter entry: removed once, never written again.
    const legacyEntry = this.stateText("indexed_entry") !== "";
    const snapshotOn = settings.SNAPSHOT_INTERVAL_SECONDS > 0;
    // An output that is off has nothing to catch up on.
    for (const [output, on] of [
      ["kv", snapshotOn || legacyEntry],
      ["index", db !== undefined],
    ] as const) {
      if (on) continue;
      this.published[output] = version;
      this.recovered(output);
    }
    const kvDue = this.unpublished("kv") && now >= this.publishDueAt("kv");
    const indexDue = db !== undefined && this.unpublished("index") && now >= this.publishDueAt("index");
    if (!kvDue && !indexDue) return;

    const snapshot = kvDue && snapshotOn ? snapshotJson(this.sql, this.outbox, conversation, settings.RECENT_LIMIT, now) : undefined;
    const indexedRow = this.stateText("indexed_row");
    const duplicates = new Map(this.duplicates);
    let content: IndexContent | undefined;
    if (indexDue) {
      const previous = parseIndexedRow(indexedRow);
      const activity = nextActivity(this.sql, activityOf(previous), previous?.accepted ?? 0, duplicates, now);
      content = indexContent(this.sql, this.outbox, conversation, this.outbox.counts(), deadLetters(this.outbox), activity);
    }
    const row = content ? JSON.stringify(content) : indexedRow;
    const [kv, index] = await Promise.allSettled([
      kvDue ? publishToKv(this.env.RECEIPTS_KV, conversation, snapshot, legacyEntry) : undefined,
      db && content && row !== indexedRow ? writeIndexRow(db, content, now) : undefined,
    ]);
    const kvOk = kvDue && kv.status === "fulfilled";
    const indexOk = indexDue && index.status === "fulfilled";
    this.transaction(() => {
      if (kvDue) this.settle("kv", kv, conversation);
      if (indexDue) this.settle("index", index, conversation);
      if (kvOk && legacyEntry) this.deleteState("indexed_entry");
      if (indexOk && row !== indexedRow) this.setState("indexed_row", row);
      if ((kvOk && snapshot !== undefined) || (indexOk && !snapshotOn)) this.setState("published_at", String(now));
      if ((kvOk || indexOk) && this.stateText(LEGACY_PUBLISH_KEYS[1]) !== "") {
        this.deleteState(...LEGACY_PUBLISH_KEYS);
      }
    });
    if (kvOk) this.published.kv = version;
    if (indexOk) {
      this.published.index = version;
      this.indexPublishedAt = now;
      // Counted in this row now; those that came in meanwhile stay for the next one.
      for (const [bucket, n] of duplicates) {
        const left = (this.duplicates.get(bucket) ?? 0) - n;
        if (left > 0) this.duplicates.set(bucket, left);
        else this.duplicates.delete(bucket);
      }
    }
  }

  /**
   * Whether `output` has changes to write: since its last write in memory, or, after a restart
   * (memory lost), while it is failing (the other output may have caught up with `published_at`).
   */
  private unpublished(output: Output): boolean {
    return this.version > this.published[output] || this.stateNumber(`${output}_failures`) > 0;
  }

  /** Records one output's result: its back-off, and a log line when a kind of failure starts or ends. */
  private settle(output: Output, result: PromiseSettledResult<unknown>, conversation: string): void {
    const failures = this.stateNumber(`${output}_failures`);
    if (result.status === "fulfilled") {
      if (failures > 0) log("info", "publish_recovered", { conversation, output, failures });
      this.recovered(output);
      return;
    }
    const problem = output === "index" ? indexProblemOf(result.reason) : undefined;
    const kind = problem?.kind ?? "failing";
    this.backOff(output);
    // One line per kind of failure, not per attempt: a missing table fails every publication.
    if (failures > 0 && this.stateText(`${output}_error`) === kind) return;
    this.setState(`${output}_error`, kind);
    const retryInMs = this.stateNumber(`${output}_retry_at`) - Date.now();
    if (problem) {
      const missing = problem.kind === "unmigrated" ? { missing: problem.missing } : {};
      log("warn", "index_unavailable", { conversation, kind, ...missing, error: problem.message, retryInMs });
    } else log("error", "kv_publish_failed", { conversation, error: String(result.reason).slice(0, 300), retryInMs });
  }

  /**
   * When `output` may next be written. KV takes one write per second per key, and a snapshot is
   * worth one per interval (the D1 row one per interval too, and one a minute at most when there
   * is no snapshot); after failures, the output's own back-off decides.
   */
  private publishDueAt(output: Output): number {
    const { settings } = settingsOf(this.env);
    const interval =
      settings.SNAPSHOT_INTERVAL_SECONDS === 0 && indexDb(this.env) ? INDEX_MIN_INTERVAL_MS : Math.max(settings.SNAPSHOT_INTERVAL_SECONDS * 1000, 1000);
    const legacyRetryAt = this.stateNumber(LEGACY_PUBLISH_KEYS[1]);
    if (this.stateNumber(`${output}_failures`) > 0) return Math.max(this.stateNumber(`${output}_retry_at`), legacyRetryAt);
    // While KV fails, `published_at` stands still: the row keeps its own pace from memory.
    const kvFailing = this.stateNumber("kv_failures") > 0;
    const last = output === "index" && kvFailing ? Math.max(this.stateNumber("published_at"), this.indexPublishedAt) : this.stateNumber("published_at");
    return Math.max(last + interval, legacyRetryAt);
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
    for (const output of ["kv", "index"] as const) if (this.unpublished(output)) times.push(this.publishDueAt(output));
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

  /** Clears `job`'s back-off (and the kind of failure last logged); writes only when there was one. */
  private recovered(job: Job): void {
    if (this.stateNumber(`${job}_failures`) === 0) return;
    this.deleteState(`${job}_failures`, `${job}_retry_at`, `${job}_error`);
  }

  /** Folds the receipts into their readers' states: one read and one upsert per reader of the batch. */
  private foldReaders(receipts: readonly Receipt[]): void {
    // A statement per READERS_CHUNK readers, not per reader (SQLite on Cloudflare binds at most 100 values).
    const readers = [...new Set(receipts.flatMap((receipt) => receipt.readers))];
    const stored = new Map<string, ReadState>();
    for (let from = 0; from < readers.length; from += READERS_CHUNK) {
      const chunk = readers.slice(from, from + READERS_CHUNK);
      for (const row of this.sql.exec(`SELECT reader, state FROM reads WHERE reader IN (${chunk.map(() => "?").join(", ")})`, ...chunk)) {
        const { reader, state } = ReadsRow.parse(row);
        stored.set(reader, ReadState.parse(JSON.parse(state)));
      }
    }
    const states = [...foldReadStates(receipts, (reader) => stored.get(reader))];
    for (let from = 0; from < states.length; from += READERS_CHUNK / 2) {
      const chunk = states.slice(from, from + READERS_CHUNK / 2);
      this.sql.exec(
        `INSERT INTO reads (reader, state) VALUES ${chunk.map(() => "(?, ?)").join(", ")} ON CONFLICT (reader) DO UPDATE SET state = excluded.state`,
        ...chunk.flatMap(([reader, next]) => [reader, JSON.stringify(next)]),
      );
    }
  }

  private conversation(): string | undefined {
    return this.exists ? this.stateText("conversation") || undefined : undefined;
  }

  private stateNumber(key: string): number {
    return Number(this.stateText(key) || 0);
  }

  private stateText(key: string): string {
    if (!this.state) {
      // Assigned only once whole: a read that fails leaves nothing half-loaded behind.
      const loaded = new Map<string, string>();
      for (const row of this.sql.exec("SELECT key, value FROM state")) {
        const { key, value } = KeyValueRow.parse(row);
        loaded.set(key, value);
      }
      this.state = loaded;
    }
    return this.state.get(key) ?? "";
  }

  private setState(key: string, value: string): void {
    this.sql.exec("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2", key, value);
    this.state?.set(key, value);
  }

  private deleteState(...keys: string[]): void {
    this.sql.exec(`DELETE FROM state WHERE key IN (${keys.map(() => "?").join(", ")})`, ...keys);
    for (const key of keys) this.state?.delete(key);
  }

  /** `transactionSync`, forgetting `state` in memory when it throws: storage rolled back, memory reloads. */
  private transaction<T>(body: () => T): T {
    try {
      return this.ctx.storage.transactionSync(body);
    } catch (error) {
      this.state = undefined;
      throw error;
    }
  }
}

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
import { settingsOf, useLogLevel } from "../settings";
import { isoFromMillis } from "../time";
import { matches, routesOf, type Destination, type DestinationConfig, type Match } from "../destinations/config";
import { pausedKnown, pausedOf } from "../destinations/control";
import { Outbox, type Delivery, type DeliveryFilter, type DestinationCounts, type OwedReceipt } from "./outbox";
import { destinationSummaries, publishToKv, snapshotJson } from "./publisher";
import { acceptViewer, broadcast, PING, PONG } from "./live-tail";
import { MAX_READS_PAGE, type ReadsPage } from "./read-state";
import { ReadStore } from "./reads";
import { createLatest, migrate, schemaVersion } from "./schema";

export { DEDUP_MAX_IDS, DEDUP_WINDOW_MS, DeliveryFilter, DeliveryStatus, MAX_DELIVERIES_PAGE, type Delivery, type DestinationCounts } from "./outbox";
export { MAX_SNAPSHOT_BYTES } from "./publisher";

/** Requests per delivery run of one destination, and its time budget: past either the run ends and
 * the alarm, armed for now, starts the next, so that publication and other work are not held up. */
const MAX_DELIVERIES_PER_RUN = 50;
const MAX_RUN_MS = 60_000;
/** While a destination's run is in flight, the alarm is armed no later than this: if the object is
 * evicted mid-run (a deploy), the alarm resumes the delivery. In a quiet conversation the next
 * publication's alarm is usually earlier already, so this costs no `setAlarm`. */
const RUN_SAFETY_MS = 60_000;
/** Read state folded in memory is written within this (and by every alarm run before it). */
const READS_FLUSH_MS = 60_000;
/** A paused destination's backlog is looked at again this often, so that it goes out within a minute of a resume. */
const PAUSED_RECHECK_MS = 30_000;
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
type Job = `delivery:${string}` | "kv" | "index" | `held:${string}`;
type Output = "kv" | "index";
/** Before the outputs were split, one "publish" job kept these; still honoured once, then deleted. */
const LEGACY_PUBLISH_KEYS = ["publish_failures", "publish_retry_at"] as const;

const KeyValueRow = z.object({ key: z.string(), value: z.string() });

/** Whether `match` takes the stored receipt `body` (a match of `{}` takes all, without parsing). */
function takes(body: string, match: Match): boolean {
  if (Object.keys(match).length === 0) return true;
  const parsed = Receipt.safeParse(JSON.parse(body));
  return parsed.success && matches(parsed.data, match);
}

export class Conversation extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly outbox: Outbox;
  private readonly reads: ReadStore;
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
  /** Delivery runs in flight, by destination: at most one each, so each destination keeps its order. */
  private readonly runs = new Map<string, Promise<void>>();
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
    this.reads = new ReadStore(this.sql);
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
        this.refoldReads();
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
    const { settings, destinations } = settingsOf(this.env);
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
    const fresh: { receipt: Receipt; routes: string[] }[] = [];
    const ids = new Set<string>();
    for (const receipt of receipts) {
      if (this.outbox.has(receipt.id) || ids.has(receipt.id)) {
        const bucket = bucketOf(now);
        this.duplicates.set(bucket, (this.duplicates.get(bucket) ?? 0) + 1);
        results.push("duplicate");
        continue;
      }
      ids.add(receipt.id);
      // Routed once, now: every matching destination is owed the receipt, whether or not it can
      // take it yet (a misconfigured one holds it until fixed).
      fresh.push({ receipt, routes: routesOf(receipt, destinations) });
      results.push("accepted");
    }
    if (fresh.length === 0) return results;
    const previousMaxSeq = this.outbox.maxSeq;
    let seqs: number[];
    try {
      seqs = this.transaction(() => {
        const stored = this.outbox.enqueueMany(
          fresh.map(({ receipt, routes }) => ({ id: receipt.id, readAt: receipt.readAt, body: JSON.stringify(receipt), routes })),
          now,
        );
        // A held destination that works now: its backlog need not wait for the next recheck.
        for (const entry of destinations) if (entry.state === "active") this.recovered(`held:${entry.name}`);
        return stored;
      });
    } catch (error) {
      // Rolled back: memory (ids, reusable rows) is read again from storage.
      this.outbox.load();
      throw error;
    }
    const acceptedAt = isoFromMillis(now);
    fresh.forEach(({ receipt, routes }, i) => {
      const seq = seqs[i] ?? previousMaxSeq + 1 + i;
      this.outbox.committed(seq, receipt.id, routes, now);
      broadcast(this.ctx, { type: "receipt", seq, acceptedAt, receipt });
    });
    this.version++;
    // Read state is folded in memory and written behind (reads.ts); a crash before then folds again from the receipts.
    if (
      this.reads.fold(
        fresh.map(({ receipt }) => receipt),
        now,
      )
    )
      this.flushReads();
    if (this.outbox.pruneDue(previousMaxSeq)) this.outbox.prune(settings.RECENT_LIMIT, now, this.foldedTo());
    this.startDeliveries();
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
    this.flushReads();
    return this.reads.page(limit, after);
  }

  /**
   * Each receipt's delivery to each destination (or to `destination` only) in acceptance order,
   * a page of receipts at a time (`after` is the last `seq` seen), without bodies.
   */
  async deliveries(status?: DeliveryFilter, limit = 1000, after = 0, destination?: string): Promise<Delivery[] | null> {
    if (!this.exists) return null;
    return this.outbox.page(status, limit, after, destination);
  }

  /** Re-queues the dead letters (of `destination`, or of every destination), in their original order, with a fresh retry schedule. */
  async retryDeadLetters(destination?: string): Promise<{ requeued: number } | null> {
    if (!this.exists) return null;
    const requeued = this.transaction(() => this.outbox.requeueFailed(Date.now(), destination));
    if (requeued > 0) await this.requeued(requeued);
    return { requeued };
  }

  /** Drops the dead letters of `destination` (a removed one, say): they are settled as skipped, never sent. */
  async purgeDeadLetters(destination: string): Promise<{ purged: number } | null> {
    if (!this.exists) return null;
    const purged = this.transaction(() => this.outbox.purgeFailed(destination, Date.now()));
    if (purged > 0) {
      this.version++;
      await this.armAlarm();
    }
    return { purged };
  }

  /** Per destination named here: pending and dead letters; and receipts that matched no destination. */
  async deliveryCounts(): Promise<{ destinations: DestinationCounts; unrouted: number } | null> {
    if (!this.exists) return null;
    return { destinations: this.outbox.counts(), unrouted: this.outbox.unrouted() };
  }

  private async requeued(count: number): Promise<void> {
    this.version++;
    broadcast(this.ctx, { type: "requeued", count, at: new Date().toISOString() });
    this.startDeliveries();
    await this.armAlarm();
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
   * window) that were delivered between `since` and `until` (epoch ms), to `destination` or to
   * each destination, for a destination that lost them. Given a destination, receipts accepted in
   * that window that were never routed to it but that its match takes now are routed to it too:
   * a destination added later gets the past this way.
   */
  async redeliver(since: number, until: number, destination?: string): Promise<{ requeued: number } | null> {
    if (!this.exists) return null;
    const now = Date.now();
    const entry = destination === undefined ? undefined : settingsOf(this.env).destinations.find((candidate) => candidate.name === destination);
    const match = entry?.state === "active" ? entry.destination.match : entry?.match;
    const requeued = this.transaction(() => {
      let count = this.outbox.requeueDelivered(since, until, now, destination);
      if (destination !== undefined && entry !== undefined && match !== undefined) {
        count += this.outbox.routeAnew(destination, since, until, (body) => takes(body, match), now);
      }
      return count;
    });
    if (requeued > 0) await this.requeued(requeued);
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
    try {
      this.settleRemoved();
      this.recheckHeld();
    } catch (error) {
      log("error", "delivery_failed", { conversation: this.conversation(), error: String(error) });
    }
    this.startDeliveries();
    // Deliveries in flight end first: what they deliver is in this publication, not a second one.
    await Promise.allSettled([...this.runs.values()]);
    this.flushReads();
    await this.tryPublish();
    try {
      await this.armAlarm({ replace: true });
    } catch (error) {
      log("error", "arm_failed", { conversation: this.conversation(), error: String(error) });
      await this.ctx.storage.setAlarm(Date.now() + RECOVERY_FIRST_MS);
    }
  }

  // ---- delivery: one ordered run per destination ---------------------------------------------

  /** Configured destinations by name (`origin` first). */
  private destinations(): Map<string, DestinationConfig> {
    return new Map(settingsOf(this.env).destinations.map((entry) => [entry.name, entry]));
  }

  /**
   * Starts a delivery run for each active destination with a receipt due and no run in flight. Not
   * awaited: each destination goes at its own pace, so a slow, failing or paused one never holds
   * up another (or the answer to the provider). Called after an acceptance, a requeue and by the alarm.
   */
  private startDeliveries(): void {
    if (!this.exists) return;
    const configured = this.destinations();
    const now = Date.now();
    for (const name of this.outbox.destinationsOwed()) {
      const entry = configured.get(name);
      if (this.runs.has(name) || entry?.state !== "active") continue;
      if (now < this.stateNumber(`delivery:${name}_retry_at`)) continue;
      // Begun on the next tick, so that the run is in `runs` before anything of it executes.
      this.runs.set(
        name,
        Promise.resolve().then(() => this.deliver(entry.destination)),
      );
    }
  }

  /**
   * Delivers `destination`'s due receipts in order: up to MAX_DELIVERIES_PER_RUN requests or
   * MAX_RUN_MS, stopping at the first head that must wait (a waiting head blocks the rest of the
   * conversation for that destination only) or when the destination is paused. Never throws.
   */
  private async deliver(destination: Destination): Promise<void> {
    const { name, url, keys, schedule, timeoutMs, batchMax, match, maxPerSecond } = destination;
    const runStartedAt = Date.now();
    let lastStart = 0;
    try {
      for (let sent = 0; sent < MAX_DELIVERIES_PER_RUN && Date.now() - runStartedAt < MAX_RUN_MS; sent++) {
        if (!this.dueHead(name)) break;
        if ((await pausedOf(this.env)).has(name)) break;
        const head = this.dueHead(name);
        if (!head) break;
        // A batch keeps its size across retries (same receipts, same webhook-id); a new one takes
        // what is due now, up to the destination's batchMax.
        const owed = this.outbox.pendingFrom(name, head, head.record?.b ?? batchMax);
        // Routed when accepted; a match changed since (or one that could not be read then) may no longer take them.
        const rows = owed.filter((row) => takes(row.body, match));
        if (rows.length < owed.length) {
          this.outbox.skipped(
            name,
            owed.filter((row) => !rows.includes(row)),
            Date.now(),
          );
          this.version++;
          if (rows[0] !== head) continue;
        }
        if (maxPerSecond !== undefined) {
          // Requests to this destination from this object at most maxPerSecond (docs/destinations.md).
          const wait = lastStart + 1000 / maxPerSecond - Date.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        }
        const startedAt = Date.now();
        lastStart = startedAt;
        const [id, body] =
          rows.length > 1
            ? [batchWebhookId(head.id, rows.length), batchWebhookBody(rows.map((row) => ({ readAt: row.read_at, json: row.body })))]
            : [head.id, webhookBody({ readAt: head.read_at }, head.body)];
        const result = await attemptDelivery({ url, keys, id, body, timeoutMs }, startedAt);
        // The wait before a retry counts from when this attempt ended, not when it began.
        if (this.record(name, rows, (head.record?.n ?? 0) + 1, startedAt, result, schedule, Date.now()) === "wait") break;
      }
      this.recovered(`delivery:${name}`);
    } catch (error) {
      log("error", "delivery_failed", { conversation: this.conversation(), destination: name, error: String(error) });
      this.backOff(`delivery:${name}`);
    }
    this.runs.delete(name);
    try {
      await this.armAlarm();
    } catch (error) {
      log("error", "arm_failed", { conversation: this.conversation(), error: String(error) });
    }
  }

  /** `destination`'s head when it is due now. */
  private dueHead(destination: string): OwedReceipt | undefined {
    const head = this.outbox.head(destination);
    return head && Outbox.dueAt(head) <= Date.now() ? head : undefined;
  }

  /** Applies one attempt's result; "wait" when the head must be retried later. */
  private record(
    destination: string,
    rows: OwedReceipt[],
    attempts: number,
    startedAt: number,
    result: AttemptResult,
    schedule: readonly number[],
    at: number,
  ): "next" | "wait" {
    const head = rows[0];
    if (!head) return "next";
    const conversation = this.conversation() ?? "";
    const fields = { conversation, destination, receiptId: head.id, ...(rows.length > 1 ? { batch: rows.length } : {}), attempt: attempts };
    const measure = (outcome: DeliveryOutcome) => {
      const status = result.status !== undefined ? { status: result.status } : {};
      recordDelivery(this.env.METRICS, { conversation, destination, outcome, ...status, ms: at - startedAt, attempt: attempts });
      broadcast(this.ctx, {
        type: "delivery",
        destination,
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
      this.outbox.delivered(destination, rows, attempts, startedAt, at, result.status);
      measure("delivered");
      log("info", "delivered", { ...fields, status: result.status, ms: at - startedAt });
      return "next";
    }
    const delay = result.kind === "retry" ? nextAttemptDelay(schedule, attempts, result.retryAfterMs, Math.random()) : undefined;
    if (delay !== undefined) {
      this.outbox.retryLater(destination, head, attempts, rows.length, startedAt, at, at + delay, result.status ?? null, result.error);
      measure("retry");
      log("warn", "delivery_retry", { ...fields, error: result.error, retryInMs: delay });
      return "wait";
    }
    this.version++;
    this.outbox.failed(destination, rows, attempts, startedAt, at, result.status ?? null, result.error);
    measure(result.kind === "give_up" ? "give_up" : "dead_letter");
    log("error", "dead_letter", { ...fields, error: result.error, reason: result.kind === "give_up" ? "rejected" : "retries exhausted" });
    return "next";
  }

  /**
   * Receipts owed to a destination no longer configured become its dead letters (visible, and
   * retried or purged from the API), so that nothing waits for it forever.
   */
  private settleRemoved(): void {
    // A DESTINATIONS with any problem (invalid JSON, an unnamed element) may have lost a destination
    // that is still meant: nothing counts as removed until it parses whole; its receipts wait.
    if (settingsOf(this.env).problems.some((problem) => problem.setting === "DESTINATIONS")) return;
    const configured = this.destinations();
    for (const name of this.outbox.destinationsOwed()) {
      if (configured.has(name)) continue;
      const now = Date.now();
      const error = `destination ${name} is no longer configured (DESTINATIONS, ORIGIN_URL)`;
      const moved = this.transaction(() => {
        let count = 0;
        for (let head = this.outbox.head(name); head; head = this.outbox.head(name)) {
          const rows = this.outbox.pendingFrom(name, head, 1000);
          this.outbox.failed(name, rows, head.record?.n ?? 0, now, now, null, error);
          count += rows.length;
        }
        return count;
      });
      if (moved > 0) {
        this.version++;
        log("warn", "destination_removed", { conversation: this.conversation(), destination: name, deadLetters: moved });
      }
    }
  }

  /** Misconfigured destinations with receipts waiting: logged, and looked at again later, less often each time. */
  private recheckHeld(): void {
    const now = Date.now();
    const configured = this.destinations();
    for (const name of this.outbox.destinationsOwed()) {
      const entry = configured.get(name);
      // Missing here only while DESTINATIONS has problems (settleRemoved): held like a misconfigured one.
      if (entry?.state === "active") continue;
      if (!this.outbox.head(name) || now < this.stateNumber(`held:${name}_retry_at`)) continue;
      const reason = entry?.reason ?? "not in DESTINATIONS, which has problems (see /healthz)";
      log("warn", "deliveries_held", { conversation: this.conversation(), destination: name, reason });
      this.backOff(`held:${name}`);
    }
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
      const source = { accepted: this.outbox.acceptedSince(previous?.accepted ?? 0), settled: (through: number) => this.outbox.settledSince(through, now) };
      const activity = nextActivity(source, activityOf(previous), duplicates, now);
      content = indexContent(conversation, {
        accepted: this.outbox.maxSeq,
        lastAcceptedAt: this.outbox.lastAcceptedAt(),
        unrouted: this.outbox.unrouted(),
        destinations: destinationSummaries(this.outbox, now),
        activity,
      });
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
    const configured = this.destinations();
    const paused = pausedKnown();
    const now = Date.now();
    const times: number[] = [];
    for (const name of this.outbox.destinationsOwed()) {
      const entry = configured.get(name);
      if (this.runs.has(name)) times.push(now + RUN_SAFETY_MS);
      else if (entry === undefined || entry.state === "misconfigured") {
        if (this.outbox.head(name)) times.push(this.stateNumber(`held:${name}_retry_at`));
      } else {
        const head = this.outbox.head(name);
        if (!head) continue;
        if (paused.has(name)) times.push(now + PAUSED_RECHECK_MS);
        else times.push(Math.max(Outbox.dueAt(head), this.stateNumber(`delivery:${name}_retry_at`)));
      }
    }
    for (const output of ["kv", "index"] as const) if (this.unpublished(output)) times.push(this.publishDueAt(output));
    if (this.reads.dirty()) times.push(this.reads.pendingSince + READS_FLUSH_MS);
    const current = await this.ctx.storage.getAlarm();
    if (times.length === 0) {
      if (replace && current !== null) await this.ctx.storage.deleteAlarm();
      return;
    }
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

  /**
   * Writes the read states folded since the last flush, with `reads_folded_to` (one transaction):
   * one row per reader that changed, and one for the mark. Nothing when nothing waits.
   */
  private flushReads(): void {
    if (!this.reads.dirty()) return;
    const through = this.outbox.maxSeq;
    try {
      this.transaction(() => {
        this.reads.flush();
        this.setState("reads_folded_to", String(through));
      });
      this.reads.flushed();
    } catch (error) {
      // Rolled back: what waited is folded again from the receipts, which stay until it is written.
      log("error", "publish_failed", { conversation: this.conversation(), output: "reads", error: String(error) });
      this.reads.reset();
      this.refoldReads();
    }
  }

  /** The highest sequence number whose receipts the stored read states include. */
  private foldedTo(): number {
    return this.stateNumber("reads_folded_to");
  }

  /** Folds into memory again the receipts after `reads_folded_to` (after a start, or a failed flush). */
  private refoldReads(): void {
    const receipts = this.outbox.bodiesAfter(this.foldedTo()).map((body) => Receipt.parse(JSON.parse(body)));
    if (receipts.length > 0) this.reads.fold(receipts, Date.now());
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

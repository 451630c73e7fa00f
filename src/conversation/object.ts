/**
 * One Durable Object per conversation: the only writer of its receipts, their delivery to each
 * destination, and its read state. SQLite-backed, called through RPC. This class is the shell: the
 * RPC methods, the alarm, and the order in which the modules that own the work run. Each module
 * owns one table or one job (docs/design.md, "The conversation object"):
 * - `schema.ts`: the tables and their migrations;
 * - `outbox.ts`: the receipt log (`receipts`) and each destination's delivery state in it;
 * - `reads.ts`: the `reads` table, written behind (`read-state.ts` folds);
 * - `small-state.ts`: the `state` table and each job's back-off;
 * - `delivery-runs.ts`: sending to each destination, in order, each on its own;
 * - `publication.ts`: the KV snapshot and the D1 index row (`publisher.ts` says what they hold);
 * - `live-tail.ts`: the dashboard's viewers.
 * Nothing outside `src/conversation/` runs SQL on these tables. Storage is written for what it costs
 * (docs/design.md, "Storage"): one row per receipt, one per delivery, small state only when it changes.
 */
import { DurableObject } from "cloudflare:workers";
import { log } from "../log";
import { bucketOf } from "../ops/activity";
import { Receipt } from "../receipt";
import { settingsOf, useLogLevel } from "../settings";
import { isoFromMillis } from "../time";
import { routesOf } from "../destinations/config";
import { DeliveryRuns, takes } from "./delivery-runs";
import { Publication } from "./publication";
import { Outbox, type Delivery, type DeliveryFilter, type DestinationCounts, type OutboxSummary } from "./outbox";
import { RECOVERY_FIRST_MS, SmallState } from "./small-state";
import { acceptViewer, broadcast, PING, PONG } from "./live-tail";
import { MAX_READS_PAGE, type ReadsPage } from "./read-state";
import { ReadStore } from "./reads";
import { createLatest, migrate, schemaVersion } from "./schema";

export { DEDUP_MAX_IDS, DEDUP_WINDOW_MS, DeliveryFilter, DeliveryStatus, MAX_DELIVERIES_PAGE, type Delivery, type DestinationCounts } from "./outbox";
export { MAX_SNAPSHOT_BYTES } from "./publisher";

/** Read state folded in memory is written within this (and by every alarm run before it). */
const READS_FLUSH_MS = 60_000;

export type AcceptResult = "accepted" | "duplicate";

export class Conversation extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly outbox: Outbox;
  private readonly reads: ReadStore;
  /** False until the first receipt: reading a conversation that never existed creates no storage. */
  private exists: boolean;
  /** Alarm runs one at a time, also when a test or a retry invokes `alarm()` while one is in flight. */
  private alarmRuns: Promise<void> = Promise.resolve();
  /** The KV snapshot and the D1 index row (publication.ts). */
  private readonly publication: Publication;
  /** Each destination's deliveries (delivery-runs.ts). */
  private readonly runs: DeliveryRuns;
  /** The `state` table, in memory (small-state.ts). */
  private readonly small: SmallState;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    useLogLevel(env);
    this.sql = ctx.storage.sql;
    this.outbox = new Outbox(this.sql);
    this.reads = new ReadStore(this.sql);
    this.small = new SmallState(this.sql, ctx.storage);
    this.publication = new Publication({ env: () => this.env, sql: this.sql, outbox: this.outbox, small: this.small, conversation: () => this.conversation() });
    this.runs = new DeliveryRuns({
      env: () => this.env,
      ctx,
      outbox: this.outbox,
      small: this.small,
      conversation: () => this.conversation(),
      changed: () => this.publication.changed(),
      armAlarm: () => this.armAlarm(),
    });
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
        if (this.outbox.lastChangeAt >= this.small.number("published_at")) this.publication.changed();
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
      this.small.transaction(() => {
        createLatest(this.sql);
        this.small.set("conversation", first.conversation);
      });
      this.exists = true;
      // createLatest wrote `state` too (its schema version).
      this.small.forget();
    }
    const results: AcceptResult[] = [];
    const fresh: { receipt: Receipt; routes: string[] }[] = [];
    const ids = new Set<string>();
    for (const receipt of receipts) {
      if (this.outbox.has(receipt.id) || ids.has(receipt.id)) {
        const bucket = bucketOf(now);
        this.publication.duplicate(bucket);
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
      seqs = this.small.transaction(() => {
        const stored = this.outbox.enqueueMany(
          fresh.map(({ receipt, routes }) => ({ id: receipt.id, readAt: receipt.readAt, body: JSON.stringify(receipt), routes })),
          now,
        );
        // A held destination that works now: its backlog need not wait for the next recheck.
        for (const entry of destinations) if (entry.state === "active") this.small.recovered(`held:${entry.name}`);
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
    this.publication.changed();
    // Read state is folded in memory and written behind (reads.ts); a crash before then folds again from the receipts.
    if (
      this.reads.fold(
        fresh.map(({ receipt }) => receipt),
        now,
      )
    )
      this.flushReads();
    if (this.outbox.pruneDue(previousMaxSeq)) this.outbox.prune(settings.RECENT_LIMIT, now, this.foldedTo());
    this.runs.start();
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
   * The conversation's summary (outbox.ts, `summary`): counts per destination, the oldest dead
   * letter and the latest one's error, the latest delivery, and the newest `limit` receipts (at
   * most RECENT_LIMIT) with their deliveries. Rows read only. Null for a conversation never seen.
   */
  async summary(limit: number): Promise<OutboxSummary | null> {
    if (!this.exists) return null;
    return this.outbox.summary(Math.min(limit, settingsOf(this.env).settings.RECENT_LIMIT));
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
    const requeued = this.small.transaction(() => this.outbox.requeueFailed(Date.now(), destination));
    if (requeued > 0) await this.requeued(requeued);
    return { requeued };
  }

  /** Drops the dead letters of `destination` (a removed one, say): they are settled as skipped, never sent. */
  async purgeDeadLetters(destination: string): Promise<{ purged: number } | null> {
    if (!this.exists) return null;
    const purged = this.small.transaction(() => this.outbox.purgeFailed(destination, Date.now()));
    if (purged > 0) {
      this.publication.changed();
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
    this.publication.changed();
    broadcast(this.ctx, { type: "requeued", count, at: new Date().toISOString() });
    this.runs.start();
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
    const requeued = this.small.transaction(() => {
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
    this.small.forget();
    // Never throw: the platform retries a failing alarm only six times; our own schedule rules.
    // Each job fails on its own, so that a KV outage does not hold up deliveries or the reverse.
    try {
      this.runs.settleRemoved();
      this.runs.recheckHeld();
    } catch (error) {
      log("error", "delivery_failed", { conversation: this.conversation(), error: String(error) });
    }
    this.runs.start();
    // Deliveries in flight end first: what they deliver is in this publication, not a second one.
    await this.runs.settled();
    this.flushReads();
    await this.publication.run();
    try {
      await this.armAlarm({ replace: true });
    } catch (error) {
      log("error", "arm_failed", { conversation: this.conversation(), error: String(error) });
      await this.ctx.storage.setAlarm(Date.now() + RECOVERY_FIRST_MS);
    }
  }

  /**
   * One alarm serves every job: it is set for the earliest of the head's next attempt (or the
   * held recheck), the next publication, and any job's retry after failures. RPCs keep an earlier
   * alarm; the alarm itself, at its end, sets exactly what is due (or nothing).
   */
  private async armAlarm({ replace = false } = {}): Promise<void> {
    const now = Date.now();
    const times = this.runs.alarmTimes(now);
    times.push(...this.publication.alarmTimes());
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

  /**
   * Writes the read states folded since the last flush, with `reads_folded_to` (one transaction):
   * one row per reader that changed, and one for the mark. Nothing when nothing waits.
   */
  private flushReads(): void {
    if (!this.reads.dirty()) return;
    const through = this.outbox.maxSeq;
    try {
      this.small.transaction(() => {
        this.reads.flush();
        this.small.set("reads_folded_to", String(through));
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
    return this.small.number("reads_folded_to");
  }

  /** Folds into memory again the receipts after `reads_folded_to` (after a start, or a failed flush). */
  private refoldReads(): void {
    const receipts = this.outbox.bodiesAfter(this.foldedTo()).map((body) => Receipt.parse(JSON.parse(body)));
    if (receipts.length > 0) this.reads.fold(receipts, Date.now());
  }

  private conversation(): string | undefined {
    return this.exists ? this.small.text("conversation") || undefined : undefined;
  }
}

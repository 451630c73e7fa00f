/**
 * Delivery to each destination (docs/destinations.md, docs/design.md "Ordering, retries and the
 * alarm"): at most one run per destination at a time, each sending that destination's due
 * receipts in order, so that a slow, failing or paused destination never holds up another. Runs
 * start when a receipt is stored, after a retry of dead letters, and from the alarm, which also
 * resumes what a restart cut short. The object owns storage and the alarm; this module decides
 * what to send, sends it and records what came of it (through the outbox).
 */
import { attemptDelivery, nextAttemptDelay, type AttemptResult } from "../delivery/attempt";
import { batchWebhookBody, batchWebhookId, webhookBody } from "../delivery/webhook";
import { matches, type Destination, type DestinationConfig, type Match } from "../destinations/config";
import { pausedKnown, pausedOf } from "../destinations/control";
import { log } from "../log";
import { recordDelivery, type DeliveryOutcome } from "../ops/metrics";
import { Receipt } from "../receipt";
import { settingsOf } from "../settings";
import { isoFromMillis } from "../time";
import { broadcast } from "./live-tail";
import { Outbox, type OwedReceipt } from "./outbox";
import type { SmallState } from "./small-state";

/** Requests per delivery run of one destination, and its time budget: past either the run ends and
 * the alarm, armed for now, starts the next, so that publication and other work are not held up. */
const MAX_DELIVERIES_PER_RUN = 50;
const MAX_RUN_MS = 60_000;
/** While a destination's run is in flight, the alarm is armed no later than this: if the object is
 * evicted mid-run (a deploy), the alarm resumes the delivery. In a quiet conversation the next
 * publication's alarm is usually earlier already, so this costs no `setAlarm`. */
const RUN_SAFETY_MS = 60_000;
/** A paused destination's backlog is looked at again this often, so that it goes out within a minute of a resume. */
const PAUSED_RECHECK_MS = 30_000;

/** What a run needs of its object. `env` is read on each use (a test may swap it). */
export interface RunsHost {
  env(): Env;
  ctx: DurableObjectState;
  outbox: Outbox;
  small: SmallState;
  conversation(): string | undefined;
  /** Something changed that the next publication shows. */
  changed(): void;
  armAlarm(): Promise<void>;
}

/** Whether `match` takes the stored receipt `body` (a match of `{}` takes all, without parsing). */
export function takes(body: string, match: Match): boolean {
  if (Object.keys(match).length === 0) return true;
  const parsed = Receipt.safeParse(JSON.parse(body));
  return parsed.success && matches(parsed.data, match);
}

/**
 * How long to wait before the next request to a destination limited to `maxPerSecond`, whose last
 * request from this object started at `lastStartedAt` (never, when undefined): requests start at
 * least 1000 / maxPerSecond ms apart.
 */
export function pacingWait(lastStartedAt: number | undefined, maxPerSecond: number, now: number): number {
  if (lastStartedAt === undefined) return 0;
  return Math.max(0, lastStartedAt + 1000 / maxPerSecond - now);
}

export class DeliveryRuns {
  /** Runs in flight, by destination: at most one each, so each destination keeps its order. */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** When each destination's last request started, across runs (`maxPerSecond`). */
  private readonly lastStart = new Map<string, number>();

  constructor(private readonly host: RunsHost) {}

  /** Settles when every run in flight has ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
  }

  /**
   * When the alarm is next needed for deliveries: each destination's next attempt, or while a run
   * is in flight a minute ahead, the held and paused rechecks, and now for a removed destination.
   */
  alarmTimes(now: number): number[] {
    const configured = this.configured();
    const paused = pausedKnown();
    const times: number[] = [];
    for (const name of this.host.outbox.destinationsOwed()) {
      const entry = configured.get(name);
      if (this.inFlight.has(name)) times.push(now + RUN_SAFETY_MS);
      else if (entry === undefined || entry.state === "misconfigured") {
        if (this.host.outbox.head(name)) times.push(this.host.small.number(`held:${name}_retry_at`));
      } else {
        const head = this.host.outbox.head(name);
        if (!head) continue;
        if (paused.has(name)) times.push(now + PAUSED_RECHECK_MS);
        else times.push(Math.max(Outbox.dueAt(head), this.host.small.number(`delivery:${name}_retry_at`)));
      }
    }
    return times;
  }

  /** Configured destinations by name (`origin` first). */
  private configured(): Map<string, DestinationConfig> {
    return new Map(settingsOf(this.host.env()).destinations.map((entry) => [entry.name, entry]));
  }

  /**
   * Starts a delivery run for each active destination with a receipt due and no run in flight. Not
   * awaited: each destination goes at its own pace, so a slow, failing or paused one never holds
   * up another (or the answer to the provider). Called after an acceptance, a requeue and by the alarm.
   */
  start(): void {
    const configured = this.configured();
    const now = Date.now();
    for (const name of this.host.outbox.destinationsOwed()) {
      const entry = configured.get(name);
      if (this.inFlight.has(name) || entry?.state !== "active") continue;
      if (now < this.host.small.number(`delivery:${name}_retry_at`)) continue;
      // Begun on the next tick, so that the run is in `runs` before anything of it executes.
      this.inFlight.set(
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
    try {
      for (let sent = 0; sent < MAX_DELIVERIES_PER_RUN && Date.now() - runStartedAt < MAX_RUN_MS; sent++) {
        if (!this.dueHead(name)) break;
        if ((await pausedOf(this.host.env())).has(name)) break;
        const head = this.dueHead(name);
        if (!head) break;
        // A batch keeps its size across retries (same receipts, same webhook-id); a new one takes
        // what is due now, up to the destination's batchMax.
        const owed = this.host.outbox.pendingFrom(name, head, head.record?.b ?? batchMax);
        // Routed when accepted; a match changed since (or one that could not be read then) may no longer take them.
        const rows = owed.filter((row) => takes(row.body, match));
        if (rows.length < owed.length) {
          this.host.outbox.skipped(
            name,
            owed.filter((row) => !rows.includes(row)),
            Date.now(),
          );
          this.host.changed();
          if (rows[0] !== head) continue;
        }
        if (maxPerSecond !== undefined) {
          // Requests to this destination from this object at most maxPerSecond (docs/destinations.md).
          const wait = pacingWait(this.lastStart.get(name), maxPerSecond, Date.now());
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        }
        const startedAt = Date.now();
        this.lastStart.set(name, startedAt);
        const [id, body] =
          rows.length > 1
            ? [batchWebhookId(head.id, rows.length), batchWebhookBody(rows.map((row) => ({ readAt: row.read_at, json: row.body })))]
            : [head.id, webhookBody({ readAt: head.read_at }, head.body)];
        const result = await attemptDelivery({ url, keys, id, body, timeoutMs }, startedAt);
        // The wait before a retry counts from when this attempt ended, not when it began.
        if (this.record(name, rows, (head.record?.n ?? 0) + 1, startedAt, result, schedule, Date.now()) === "wait") break;
      }
      this.host.small.recovered(`delivery:${name}`);
    } catch (error) {
      log("error", "delivery_failed", { conversation: this.host.conversation(), destination: name, error: String(error) });
      this.host.small.backOff(`delivery:${name}`);
    }
    this.inFlight.delete(name);
    try {
      await this.host.armAlarm();
    } catch (error) {
      log("error", "arm_failed", { conversation: this.host.conversation(), error: String(error) });
    }
  }

  /** `destination`'s head when it is due now. */
  private dueHead(destination: string): OwedReceipt | undefined {
    const head = this.host.outbox.head(destination);
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
    const conversation = this.host.conversation() ?? "";
    const fields = { conversation, destination, receiptId: head.id, ...(rows.length > 1 ? { batch: rows.length } : {}), attempt: attempts };
    const measure = (outcome: DeliveryOutcome) => {
      const status = result.status !== undefined ? { status: result.status } : {};
      recordDelivery(this.host.env().METRICS, { conversation, destination, outcome, ...status, ms: at - startedAt, attempt: attempts });
      broadcast(this.host.ctx, {
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
      this.host.changed();
      this.host.outbox.delivered(destination, rows, attempts, startedAt, at, result.status);
      measure("delivered");
      log("info", "delivered", { ...fields, status: result.status, ms: at - startedAt });
      return "next";
    }
    const delay = result.kind === "retry" ? nextAttemptDelay(schedule, attempts, result.retryAfterMs, Math.random()) : undefined;
    if (delay !== undefined) {
      this.host.outbox.retryLater(destination, head, attempts, rows.length, startedAt, at, at + delay, result.status ?? null, result.error);
      measure("retry");
      log("warn", "delivery_retry", { ...fields, error: result.error, retryInMs: delay });
      return "wait";
    }
    this.host.changed();
    this.host.outbox.failed(destination, rows, attempts, startedAt, at, result.status ?? null, result.error);
    measure(result.kind === "give_up" ? "give_up" : "dead_letter");
    log("error", "dead_letter", { ...fields, error: result.error, reason: result.kind === "give_up" ? "rejected" : "retries exhausted" });
    return "next";
  }

  /**
   * Receipts owed to a destination no longer configured become its dead letters (visible, and
   * retried or purged from the API), so that nothing waits for it forever.
   */
  settleRemoved(): void {
    // A DESTINATIONS with any problem (invalid JSON, an unnamed element) may have lost a destination
    // that is still meant: nothing counts as removed until it parses whole; its receipts wait.
    if (settingsOf(this.host.env()).problems.some((problem) => problem.setting === "DESTINATIONS")) return;
    const configured = this.configured();
    for (const name of this.host.outbox.destinationsOwed()) {
      if (configured.has(name)) continue;
      const now = Date.now();
      const error = `destination ${name} is no longer configured (DESTINATIONS, ORIGIN_URL)`;
      const moved = this.host.small.transaction(() => {
        let count = 0;
        for (let head = this.host.outbox.head(name); head; head = this.host.outbox.head(name)) {
          const rows = this.host.outbox.pendingFrom(name, head, 1000);
          this.host.outbox.failed(name, rows, head.record?.n ?? 0, now, now, null, error);
          count += rows.length;
        }
        return count;
      });
      if (moved > 0) {
        this.host.changed();
        log("warn", "destination_removed", { conversation: this.host.conversation(), destination: name, deadLetters: moved });
      }
    }
  }

  /** Misconfigured destinations with receipts waiting: logged, and looked at again later, less often each time. */
  recheckHeld(): void {
    const now = Date.now();
    const configured = this.configured();
    for (const name of this.host.outbox.destinationsOwed()) {
      const entry = configured.get(name);
      // Missing here only while DESTINATIONS has problems (settleRemoved): held like a misconfigured one.
      if (entry?.state === "active") continue;
      if (!this.host.outbox.head(name) || now < this.host.small.number(`held:${name}_retry_at`)) continue;
      const reason = entry?.reason ?? "not in DESTINATIONS, which has problems (see /healthz)";
      log("warn", "deliveries_held", { conversation: this.host.conversation(), destination: name, reason });
      this.host.small.backOff(`held:${name}`);
    }
  }
}

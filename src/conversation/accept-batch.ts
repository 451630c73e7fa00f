/**
 * Coalesces the concurrent stores of one isolate into one conversation (docs/design.md, "A burst
 * into one conversation"): one `acceptMany` call in flight per conversation; receipts that arrive
 * meanwhile wait and go together in the next call, in arrival order. A lone receipt goes at once,
 * so nothing waits when a conversation is quiet; in a burst, one object request, one transaction
 * and one commit carry up to MAX_ACCEPT_BATCH receipts. One call at a time: each commit then
 * carries everything that arrived while the previous one was confirmed (in the bench's burst, 4
 * calls in flight accepted less than half as many receipts a second as 1).
 *
 * Every call is made from the request context of a receipt it carries, never on behalf of another
 * request: a Worker may not do I/O for another request ("Cannot perform I/O on behalf of a
 * different request", measured here with a hand-over through a promise: its RPC ran under the
 * previous request's trace span). So the first receipt to wait (the next batch's leader) watches
 * for the call in flight to end with a timer of its own, and takes the batch then; the others only
 * wait for their result.
 */
import type { Receipt } from "../receipt";
import type { AcceptResult } from "./object";

/** Receipts per `acceptMany` call: bounds one transaction, one RPC message and one queue batch. */
export const MAX_ACCEPT_BATCH = 100;
/** How often the next batch's leader looks whether the call in flight has ended. */
export const POLL_MS = 1;
/**
 * A call in flight for longer than this is taken to be lost (its request was cancelled, its
 * client gone): the next batch goes anyway, and a waiting receipt no batch has taken goes on its
 * own. Under Tencent's 2 s answer deadline (docs/providers/tencent.md). Sending a receipt twice is
 * safe (its id deduplicates it), only wasteful.
 */
export const MAX_WAIT_MS = 1500;

export type AcceptMany = (receipts: Receipt[]) => Promise<AcceptResult[]>;

/** A waiting receipt's fate: its batch's result, or ("lead") to take the next batch itself. */
type Outcome = { kind: "done"; result: AcceptResult } | { kind: "failed"; error: unknown } | { kind: "lead" };
interface Waiter {
  receipt: Receipt;
  settle(outcome: Outcome): void;
}
interface Lane {
  waiting: Waiter[];
  /** The call in flight, by when it began; undefined when none is. */
  call: { since: number } | undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class AcceptBatcher {
  private readonly lanes = new Map<string, Lane>();

  /** Stores `receipt` through `send` (this request's own stub), alone or with others of its conversation. */
  async store(receipt: Receipt, send: AcceptMany): Promise<AcceptResult> {
    const key = receipt.conversation;
    const lane: Lane = this.lanes.get(key) ?? { waiting: [], call: undefined };
    this.lanes.set(key, lane);
    if (lane.call === undefined && lane.waiting.length === 0) return this.lead(key, lane, [receipt], [], send);
    let settle: (outcome: Outcome) => void = () => undefined;
    const outcome = new Promise<Outcome>((resolve) => (settle = resolve));
    const waiter: Waiter = { receipt, settle };
    lane.waiting.push(waiter);
    if (lane.waiting.length > 1) return this.await(key, lane, waiter, outcome, send);
    return this.leadNext(key, lane, waiter, send);
  }

  /**
   * The next batch's leader: waits, on its own timer, for the call in flight to end, then takes
   * itself and the receipts waiting behind it, up to MAX_ACCEPT_BATCH. When more wait than one
   * call carries, the first left behind is told to lead the batch after, from its own request.
   */
  private async leadNext(key: string, lane: Lane, waiter: Waiter, send: AcceptMany): Promise<AcceptResult> {
    while (lane.call !== undefined && Date.now() - lane.call.since < MAX_WAIT_MS) await sleep(POLL_MS);
    const at = lane.waiting.indexOf(waiter);
    if (at !== -1) lane.waiting.splice(at, 1);
    const others = lane.waiting.splice(0, MAX_ACCEPT_BATCH - 1);
    lane.waiting[0]?.settle({ kind: "lead" });
    return this.lead(key, lane, [waiter.receipt], others, send);
  }

  /** Receipts waiting per conversation (tests, metrics). */
  waiting(conversation: string): number {
    return this.lanes.get(conversation)?.waiting.length ?? 0;
  }

  /**
   * A receipt behind the leader: its batch's result; or, when no batch has taken it within
   * MAX_WAIT_MS, or the one that took it has not answered within twice that, a call of its own.
   */
  private async await(key: string, lane: Lane, waiter: Waiter, outcome: Promise<Outcome>, send: AcceptMany): Promise<AcceptResult> {
    for (const wait of [MAX_WAIT_MS, 2 * MAX_WAIT_MS]) {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), wait)));
      const settled = await Promise.race([outcome, late]);
      clearTimeout(timer);
      if (settled !== "late") {
        if (settled.kind === "lead") return this.leadNext(key, lane, waiter, send);
        if (settled.kind === "failed") throw settled.error;
        return settled.result;
      }
      const at = lane.waiting.indexOf(waiter);
      if (at !== -1) {
        lane.waiting.splice(at, 1);
        break;
      }
    }
    try {
      const [result] = await send([waiter.receipt]);
      if (!result) throw new Error("acceptMany answered no result");
      return result;
    } finally {
      if (lane.call === undefined && lane.waiting.length === 0 && this.lanes.get(key) === lane) this.lanes.delete(key);
    }
  }

  /** Sends this request's receipts and `others`, hands each of those its result, and frees the lane. */
  private async lead(key: string, lane: Lane, own: Receipt[], others: Waiter[], send: AcceptMany): Promise<AcceptResult> {
    const call = { since: Date.now() };
    lane.call = call;
    try {
      let results: AcceptResult[];
      try {
        results = await send([...own, ...others.map((waiter) => waiter.receipt)]);
      } catch (error) {
        for (const waiter of others) waiter.settle({ kind: "failed", error });
        throw error;
      }
      const missing = new Error("acceptMany answered fewer results than receipts");
      others.forEach((waiter, i) => {
        const result = results[own.length + i];
        waiter.settle(result ? { kind: "done", result } : { kind: "failed", error: missing });
      });
      const mine = results[0];
      if (!mine) throw missing;
      return mine;
    } finally {
      if (lane.call === call) lane.call = undefined;
      if (lane.call === undefined && lane.waiting.length === 0 && this.lanes.get(key) === lane) this.lanes.delete(key);
    }
  }
}

// The coalescer of src/conversation/accept-batch.ts under more waiting receipts than one call
// carries: every batch gets a leader, so none waits out MAX_WAIT_MS to go alone.
import { describe, expect, it } from "vitest";
import { AcceptBatcher, MAX_ACCEPT_BATCH, type AcceptMany } from "../src/conversation/accept-batch";
import type { AcceptResult } from "../src/conversation/object";
import { makeReceipt, newConversation } from "./support/receipts";

describe("more receipts waiting than one call carries", () => {
  it("go in full calls, one after another, in arrival order, each receipt once", async () => {
    const batcher = new AcceptBatcher();
    const calls: number[][] = [];
    // The object answers each call only when the test says so: a call in flight stays in flight.
    const answers: (() => void)[] = [];
    const send: AcceptMany = async (receipts) => {
      calls.push(receipts.map((receipt) => Number(receipt.id.split(":").at(-1))));
      await new Promise<void>((resolve) => answers.push(resolve));
      return receipts.map((): AcceptResult => "accepted");
    };
    const conversation = newConversation();
    const count = 1 + MAX_ACCEPT_BATCH + 50;
    const stores = Array.from({ length: count }, (_, i) => batcher.store(makeReceipt(conversation, i + 1), send));
    expect(batcher.waiting(conversation)).toBe(count - 1);
    // Answer each call once it is made, until every receipt is answered.
    let settled = false;
    const all = Promise.all(stores).finally(() => (settled = true));
    let answered = 0;
    while (!settled) {
      // One turn of the event loop, no wall-clock wait: the batch's leader looks on its own timer.
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
      for (const answer of answers.slice(answered)) {
        answered++;
        answer();
      }
    }
    expect(await all).toEqual(Array.from({ length: count }, () => "accepted"));
    expect(calls.map((call) => call.length)).toEqual([1, MAX_ACCEPT_BATCH, 50]);
    expect(calls.flat()).toEqual(Array.from({ length: count }, (_, i) => i + 1));
    expect(batcher.waiting(conversation)).toBe(0);
  });
});

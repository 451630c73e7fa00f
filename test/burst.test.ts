// A large group's read burst into one conversation (docs/design.md, "A burst into one
// conversation"): stores coalesce into `acceptMany` calls; while the object refuses, receipts go to
// the accept queue, and once it is drained every receipt answered 200 is stored once, in the
// relay's order. The refusal and the queue are the test's own (`storeReceipt` and
// `drainAcceptQueue` take them as arguments); the object and its storage are the real ones.
import { createExecutionContext, createMessageBatch, getQueueResult, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { AcceptBatcher, type AcceptMany } from "../src/conversation/accept-batch";
import { drainAcceptQueue, QueuedReceipt, storeReceipt, type SendTo, type StoreEnv } from "../src/conversation/accept-queue";
import type { AcceptResult } from "../src/conversation/object";
import type { IngestDeps } from "../src/ingest";
import { providers } from "../src/ingestors";
import type { Receipt } from "../src/receipt";
import { copy, samples, tencentPath, unique } from "./support/callbacks";
import { rawCallback } from "./support/pipeline";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";
import { rowsWrittenBy } from "./support/rows-written";

const tencent = providers.get("tencent")!;
const QUEUE = "receipt-relay-accept";

/** As a Durable Object refuses when it is overloaded (docs: durable-objects/best-practices/error-handling). */
const overloaded = () => Object.assign(new Error("Durable Object is overloaded. Too many requests queued."), { overloaded: true });

/** The accept queue as a list: what was sent, in order; `failing` makes it refuse too. */
class RecordingQueue {
  readonly bodies: unknown[] = [];
  failing = false;
  async send(body: QueuedReceipt): Promise<void> {
    if (this.failing) throw new Error("queue unavailable");
    this.bodies.push(structuredClone(body));
  }
  /** What the platform would deliver: the messages sent, in order. */
  batch() {
    return createMessageBatch(
      QUEUE,
      this.bodies.map((body, i) => ({ id: `m${i}`, timestamp: Date.now(), attempts: 1, body })),
    );
  }
}

/**
 * The real objects behind a switch: while `refusing`, every call is refused as overloaded;
 * `stored` lists what the object accepted, in the order it did (calls to one object are one at a time).
 */
function objects() {
  const state = { refusing: false, calls: [] as number[], stored: [] as string[] };
  const sendTo: SendTo =
    (conversation): AcceptMany =>
    async (receipts) => {
      state.calls.push(receipts.length);
      if (state.refusing) throw overloaded();
      const results = await stubFor(conversation).acceptMany(receipts);
      results.forEach((result, i) => result === "accepted" && state.stored.push(receipts[i]!.id));
      return results;
    };
  return { state, sendTo };
}

/** One member of `group` reading message 1, as Tencent sends it. */
async function groupRead(group: string, member: string) {
  const body = copy(samples.tencent.group, {
    GroupId: group,
    EventTime: String(Date.now()),
    GroupMsgReceiptList: [{ MsgSeq: 1, ReadNum: 1, UnreadNum: 0, ReadReceiptMembers: [{ Member_Account: member }] }],
  });
  return rawCallback(body, { url: `https://relay.test${await tencentPath("Group.CallbackAfterReadReceipt")}` });
}

function deps(store: IngestDeps["store"]): IngestDeps {
  return { env, now: Date.now(), store, claim: async () => "claimed", countAuthFailure: async () => ({ limited: false }) };
}

/** The conversation's receipt ids as stored, in sequence order, with their sequence numbers. */
async function storedIds(conversation: string): Promise<{ ids: string[]; seqs: number[] }> {
  const page = (await stubFor(conversation).deliveries("all", 1000, 0)) ?? [];
  return { ids: page.map((delivery) => delivery.receiptId), seqs: page.map((delivery) => delivery.seq) };
}

const groupKey = (group: string) => `tencent:1400000001:g:${encodeURIComponent(group)}`;

describe("a burst into one conversation", () => {
  it("while the object refuses, every receipt answered 200 is stored once, in the relay's order, after the queue drains", async () => {
    const group = unique("@TGS#burst");
    const conversation = groupKey(group);
    const queue = new RecordingQueue();
    const storeEnv: StoreEnv = { CONVERSATION: env.CONVERSATION, ACCEPT_QUEUE: queue };
    const { state, sendTo } = objects();
    const receipts = new Map<string, Receipt>();
    const store = (receipt: Receipt) => {
      receipts.set(receipt.id, receipt);
      return storeReceipt(storeEnv, receipt, sendTo);
    };

    // 30 members read at once while the object refuses every call, then 30 more once it takes them.
    const burst = (from: number) =>
      Promise.all(Array.from({ length: 30 }, async (_, i) => tencent.handle(await groupRead(group, `member-${from + i}`), deps(store))));
    state.refusing = true;
    const refused = await burst(0);
    state.refusing = false;
    const taken = await burst(30);
    expect([...refused, ...taken].map((answer) => answer.status)).toEqual(Array.from({ length: 60 }, () => 200));
    expect(receipts.size).toBe(60);
    const queued = queue.bodies.map((body) => QueuedReceipt.parse(body).receipt.id);
    expect(queued).toHaveLength(30);
    expect(state.stored).toHaveLength(30);
    expect(new Set([...queued, ...state.stored]).size).toBe(60);
    // Coalesced: fewer calls than receipts once the object takes them.
    expect(state.calls.length).toBeLessThanOrEqual(60);

    // Tencent does not retry, but a provider that does may send a queued receipt again: stored now, once.
    const resent = queued.slice(0, 2);
    for (const id of resent) expect(await store(receipts.get(id)!)).toBe("accepted");

    // The queue is drained: every message acknowledged, the re-sent ones found as duplicates.
    const batch = queue.batch();
    await drainAcceptQueue(batch, storeEnv);
    const result = await getQueueResult(batch, createExecutionContext());
    expect(result.explicitAcks.sort()).toEqual(queue.bodies.map((_, i) => `m${i}`).sort());
    expect(result.retryMessages).toEqual([]);

    // The relay's order: as each receipt reached the object; queued ones in queue order when drained.
    const expected = [...state.stored, ...queued.filter((id) => !resent.includes(id))];
    const { ids, seqs } = await storedIds(conversation);
    expect(ids).toEqual(expected);
    expect(new Set(ids).size).toBe(60);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
    // Each member's read state is there too.
    expect((await stubFor(conversation).readStates())?.readers).toBe(60);
  });

  it("answers 503 when the queue fails as well, and when there is no queue", async () => {
    const conversation = newConversation();
    const queue = new RecordingQueue();
    queue.failing = true;
    const { state, sendTo } = objects();
    state.refusing = true;
    await expect(storeReceipt({ CONVERSATION: env.CONVERSATION, ACCEPT_QUEUE: queue }, makeReceipt(conversation, 1), sendTo)).rejects.toThrow(/overloaded/);
    await expect(storeReceipt({ CONVERSATION: env.CONVERSATION }, makeReceipt(conversation, 2), sendTo)).rejects.toThrow(/overloaded/);
    // Through the pipeline: the provider is answered 503, so that one that retries (not Tencent) sends it again.
    const answer = await tencent.handle(
      await groupRead(unique("@TGS#down"), "m"),
      deps((receipt) => storeReceipt({ CONVERSATION: env.CONVERSATION }, receipt, sendTo)),
    );
    expect(answer.status).toBe(503);
    expect(await storedIds(conversation)).toEqual({ ids: [], seqs: [] });
  });

  it("a drain the object refuses acknowledges nothing, retries the conversation's messages in order, and the next drain stores them", async () => {
    const conversation = newConversation();
    const other = newConversation();
    const bodies = [makeReceipt(conversation, 1), makeReceipt(other, 1), makeReceipt(conversation, 2), { not: "a receipt" }].map((receipt) =>
      "id" in receipt ? { receipt } : receipt,
    );
    const messages = (attempts: number) =>
      createMessageBatch(
        QUEUE,
        bodies.map((body, i) => ({ id: `m${i}`, timestamp: Date.now(), attempts, body })),
      );
    const refusing: SendTo = (key) => (key === conversation ? async () => Promise.reject(overloaded()) : (receipts) => stubFor(key).acceptMany(receipts));
    const first = messages(1);
    await drainAcceptQueue(first, { CONVERSATION: env.CONVERSATION }, refusing);
    const refused = await getQueueResult(first, createExecutionContext());
    // The other conversation is stored and acknowledged; the malformed body goes towards the dead-letter queue.
    expect(refused.explicitAcks).toEqual(["m1"]);
    expect(refused.retryMessages.map((message: { msgId: string }) => message.msgId).sort()).toEqual(["m0", "m2", "m3"]);

    const second = messages(2);
    await drainAcceptQueue(second, { CONVERSATION: env.CONVERSATION });
    const drained = await getQueueResult(second, createExecutionContext());
    expect(drained.explicitAcks.sort()).toEqual(["m0", "m1", "m2"]);
    expect((await storedIds(conversation)).ids).toEqual([makeReceipt(conversation, 1).id, makeReceipt(conversation, 2).id]);
    // m1 again: a duplicate, stored once.
    expect((await storedIds(other)).ids).toEqual([makeReceipt(other, 1).id]);
  });

  it("the Worker's queue handler drains the accept queue", async () => {
    const conversation = newConversation();
    const batch = createMessageBatch(QUEUE, [{ id: "q0", timestamp: Date.now(), attempts: 1, body: { receipt: makeReceipt(conversation, 7) } }]);
    const { default: worker } = await import("../src/index");
    await worker.queue(batch, env);
    expect((await getQueueResult(batch, createExecutionContext())).explicitAcks).toEqual(["q0"]);
    expect((await storedIds(conversation)).ids).toEqual([makeReceipt(conversation, 7).id]);
  });
});

describe("coalescing and acceptMany", () => {
  it("receipts that arrive while a call is in flight go together in the next call, in arrival order", async () => {
    const batcher = new AcceptBatcher();
    const calls: string[][] = [];
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const send: AcceptMany = async (receipts) => {
      calls.push(receipts.map((receipt) => receipt.id));
      if (calls.length === 1) await held;
      return receipts.map((): AcceptResult => "accepted");
    };
    const conversation = newConversation();
    const stores = [1, 2, 3, 4].map((n) => batcher.store(makeReceipt(conversation, n), send));
    expect(batcher.waiting(conversation)).toBe(3);
    release();
    expect(await Promise.all(stores)).toEqual(["accepted", "accepted", "accepted", "accepted"]);
    expect(calls).toEqual([[`test:${conversation}:1`], [2, 3, 4].map((n) => `test:${conversation}:${n}`)]);
    expect(batcher.waiting(conversation)).toBe(0);
  });

  it("a refused call fails every receipt it carried", async () => {
    const batcher = new AcceptBatcher();
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const send: AcceptMany = async () => {
      if (++calls === 1) await held;
      throw overloaded();
    };
    const conversation = newConversation();
    const stores = [1, 2, 3].map((n) => batcher.store(makeReceipt(conversation, n), send).catch((error: unknown) => String(error)));
    release();
    expect(await Promise.all(stores)).toEqual([1, 2, 3].map(() => "Error: Durable Object is overloaded. Too many requests queued."));
    expect(calls).toBe(2);
  });

  it("acceptMany stores a batch in order, finds repeats within it and in storage, and writes no more rows than one receipt at a time", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    expect(await stub.accept(makeReceipt(conversation, 1))).toBe("accepted");
    const batch = [2, 3, 1, 4, 3].map((n) => makeReceipt(conversation, n));
    const { results, rows } = await runInDurableObject(stub, async (instance, ctx) => {
      let results: AcceptResult[] = [];
      const rows = await rowsWrittenBy(ctx.storage.sql, async () => {
        results = await instance.acceptMany(batch);
      });
      return { results, rows };
    });
    expect(results).toEqual(["accepted", "accepted", "duplicate", "accepted", "duplicate"]);
    // One row per new receipt; read state is written behind (one row per reader, at the next flush).
    expect(rows).toBe(3);
    expect(await runInDurableObject(stub, (instance, ctx) => rowsWrittenBy(ctx.storage.sql, () => instance["flushReads"]()))).toBe(1 + 1);
    expect((await storedIds(conversation)).ids).toEqual([1, 2, 3, 4].map((n) => `test:${conversation}:${n}`));
    const reads = await runInDurableObject(stub, (_, ctx) => ctx.storage.sql.exec("SELECT reader, state FROM reads").toArray());
    expect(reads.map((row) => [row.reader, JSON.parse(String(row.state))])).toEqual([
      ["alice", expect.objectContaining({ receiptId: `test:${conversation}:4`, seq: 4 })],
    ]);
  });
});

// Delivery to a real local origin (test/support/origin.ts) that verifies every signature with the
// standardwebhooks package. Retry steps are 0.2 s and FORWARD_TIMEOUT_MS is 500 in tests.
import { describe, expect, it } from "vitest";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { api, copy, samples, send, tencentPath, unique } from "./support/callbacks";
import { attempts, delivered, originDown, originUp, script, waitFor } from "./support/origin-control";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";
import { testSettings } from "./support/settings";

const ATTEMPTS_BEFORE_DEAD_LETTER = testSettings.FORWARD_RETRY_SCHEDULE.split(",").length + 1;

async function acceptAll(conversation: string, count: number): Promise<string[]> {
  const stub = stubFor(conversation);
  const ids: string[] = [];
  for (let n = 1; n <= count; n++) {
    const receipt = makeReceipt(conversation, n);
    expect(await stub.accept(receipt)).toBe("accepted");
    ids.push(receipt.id);
  }
  return ids;
}

const allDelivered = (conversation: string, ids: string[]) =>
  waitFor(
    `${ids.length} deliveries`,
    async () => {
      const arrived = await delivered(conversation);
      return arrived.length >= ids.length ? arrived : undefined;
    },
    30_000,
  );

describe("forwarding to the origin", () => {
  it("delivers a provider's callback signed, normalized and once", async () => {
    const reader = unique("fw-");
    const body = copy(samples.tencent.report, { Report_Account: reader });
    expect((await send(await tencentPath("C2C.CallbackAfterMsgReport"), { json: body })).status).toBe(200);
    const conversation = `tencent:1400000001:u:${[reader, "Jonh"].sort().join(":")}`;
    const [id] = await allDelivered(conversation, ["one"]);
    expect(id).toMatch(/^tencent:[0-9a-f]{32}$/);
    // A repeat of the callback is not forwarded again.
    await send(await tencentPath("C2C.CallbackAfterMsgReport"), { json: body });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const seen = await attempts(conversation);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ verified: true, status: 200, method: "POST", path: "/receipts" });
    expect((await stubFor(conversation).deliveries()).length).toBe(0);
    // What arrived is the normalized receipt the relay stored.
    const [stored] = await stubFor(conversation).recent(1);
    expect(seen[0]!.data).toEqual(JSON.parse(JSON.stringify(stored)));
    expect(seen[0]!.data).toMatchObject({ provider: "tencent", event: "C2C.CallbackAfterMsgReport", readers: [reader], peer: "Jonh", unreadTotal: 7 });
  });

  it("delivers 50 receipts of one conversation in the order accepted, each once, through 503s", async () => {
    const conversation = newConversation();
    await script(conversation, [{ status: 503 }, { status: 503 }, { status: 500 }]);
    const ids = await acceptAll(conversation, 50);
    const arrived = await allDelivered(conversation, ids);
    expect(arrived).toEqual(ids);
    expect((await attempts(conversation)).every((attempt) => attempt.verified)).toBe(true);
  });

  it("rides out an origin that answers 503, times out, then refuses connections, losing nothing", async () => {
    const conversation = newConversation();
    // 503, an answer slower than FORWARD_TIMEOUT_MS, 502, then 503s that outlast the test's wait.
    await script(conversation, [{ status: 503 }, { status: 200, delayMs: 1500 }, { status: 502 }, { status: 503 }, { status: 503 }]);
    const firstBatch = await acceptAll(conversation, 3);
    await waitFor("three failed attempts", async () => ((await attempts(conversation)).length >= 3 ? true : undefined));

    await originDown();
    try {
      const stub = stubFor(conversation);
      const more = [makeReceipt(conversation, 4), makeReceipt(conversation, 5)];
      for (const receipt of more) await stub.accept(receipt);
      const refused = await waitFor("a refused connection", async () => {
        const [head] = await stub.deliveries("pending");
        return head?.lastError?.startsWith("network error") ? head : undefined;
      });
      expect(refused.receiptId).toBe(firstBatch[0]);
      firstBatch.push(...more.map((receipt) => receipt.id));
    } finally {
      await originUp();
    }
    const arrived = await allDelivered(conversation, firstBatch);
    expect(arrived).toEqual(firstBatch);
    expect(new Set(arrived).size).toBe(arrived.length);
  });

  it("honours Retry-After", async () => {
    const conversation = newConversation();
    await script(conversation, [{ status: 429, retryAfter: "2" }]);
    const ids = await acceptAll(conversation, 1);
    await allDelivered(conversation, ids);
    const [first, second] = await attempts(conversation);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1900);
  });

  it("gives up at once on a 400, keeps it as a dead letter, and moves on to the next", async () => {
    const conversation = newConversation();
    await script(conversation, [{ status: 400 }]);
    const ids = await acceptAll(conversation, 2);
    await allDelivered(conversation, [ids[1]!]);
    const stub = stubFor(conversation);
    const [dead] = await stub.deliveries("failed");
    expect(dead).toMatchObject({ receiptId: ids[0], status: "failed", attempts: 1, lastStatus: 400 });
    expect(dead!.lastError).toContain("origin answered 400");
    expect((await attempts(conversation)).filter((attempt) => attempt.id === ids[0])).toHaveLength(1);
  });

  it("dead-letters after the last retry, lists it, and delivers it on replay", async () => {
    const conversation = newConversation();
    await script(
      conversation,
      Array.from({ length: ATTEMPTS_BEFORE_DEAD_LETTER }, () => ({ status: 503 })),
    );
    const [id] = await acceptAll(conversation, 1);
    const path = `/v1/conversations/${encodeURIComponent(conversation)}`;
    const failed = await waitFor(
      "a dead letter",
      async () => {
        const body: { deliveries: { attempts: number; lastError: string }[] } = await (await api(`${path}/deliveries?status=failed`)).json();
        return body.deliveries[0];
      },
      30_000,
    );
    expect(failed).toMatchObject({ attempts: ATTEMPTS_BEFORE_DEAD_LETTER, lastError: 'origin answered 503: {"ok":false}' });

    const listed = await waitFor("the dead-letter index", async () => {
      const body: { conversations: { conversation: string; failed: number }[] } = await (await api("/v1/dead-letters")).json();
      return body.conversations.find((entry) => entry.conversation === conversation);
    });
    expect(listed).toMatchObject({ failed: 1, oldestFailedAt: expect.any(String) });

    const replay = await api(`${path}/deliveries/retry`, { method: "POST" });
    expect(await replay.json()).toEqual({ conversation, requeued: 1 });
    expect(await allDelivered(conversation, [id!])).toEqual([id]);
    await waitFor("the index entry to go", async () => {
      const body: { conversations: { conversation: string }[] } = await (await api("/v1/dead-letters")).json();
      return body.conversations.some((entry) => entry.conversation === conversation) ? undefined : true;
    });
  });

  it("resumes pending deliveries after the object is evicted", async () => {
    const conversation = newConversation();
    await script(conversation, [{ status: 503 }, { status: 503, retryAfter: "1" }]);
    const ids = await acceptAll(conversation, 5);
    await waitFor("two failures", async () => ((await attempts(conversation)).length >= 2 ? true : undefined));
    const pending = await stubFor(conversation).deliveries("pending");
    expect(pending.map((delivery) => delivery.receiptId)).toEqual(ids);
    await evictDurableObject(stubFor(conversation));
    expect(await allDelivered(conversation, ids)).toEqual(ids);
  });

  it("re-arms a lost alarm when the object is next loaded", async () => {
    const conversation = newConversation();
    await script(conversation, [{ status: 503, retryAfter: "1" }]);
    const ids = await acceptAll(conversation, 3);
    const stub = stubFor(conversation);
    await waitFor("a first failure", async () => ((await attempts(conversation)).length >= 1 ? true : undefined));
    // As if the platform had given up on the alarm: none is set, and the object leaves memory.
    await runInDurableObject(stub, (_, state) => state.storage.deleteAlarm());
    await evictDurableObject(stub);
    expect(await stub.deliveries("pending")).toHaveLength(3);
    expect(await allDelivered(conversation, ids)).toEqual(ids);
  });

  it("never follows a redirect: the receipt is a dead letter that says why", async () => {
    const conversation = newConversation();
    await script(conversation, [
      { status: 301, location: "/moved" },
      { status: 307, location: "http://127.0.0.1:9/elsewhere" },
    ]);
    const ids = await acceptAll(conversation, 3);
    await allDelivered(conversation, [ids[2]!]);
    const dead = await stubFor(conversation).deliveries("failed");
    expect(dead.map((delivery) => [delivery.receiptId, delivery.lastStatus])).toEqual([
      [ids[0], 301],
      [ids[1], 307],
    ]);
    expect(dead[0]!.lastError).toContain("redirects to /moved");
    // Nothing was sent anywhere but ORIGIN_URL, and nothing twice.
    expect((await attempts(conversation)).map((attempt) => `${attempt.method} ${attempt.path}`)).toEqual([
      "POST /receipts",
      "POST /receipts",
      "POST /receipts",
    ]);
  });
});

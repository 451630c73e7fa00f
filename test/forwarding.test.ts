// Delivery to a real local origin (test/support/origin.ts) that verifies every signature with the
// standardwebhooks package and answers as each test scripts it, per conversation. Retry steps are
// a minute in tests, so nothing retries on its own: each test makes the head due and runs the
// alarm itself (test/support/conversation-object.ts), and judges waits from the stored times.
import { describe, expect, it } from "vitest";
import { PENDING } from "../src/conversation/schema";
import { runInDurableObject } from "cloudflare:test";
import { evictDurableObject } from "./support/evict";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { deadLetterKey } from "../src/conversation/snapshot";
import { RETRY_JITTER } from "../src/delivery/attempt";
import { singleConversationKey } from "../src/receipt";
import { api, copy, samples, send, tencentPath, unique } from "./support/callbacks";
import { stateNumber, outboxRows, publishNow, retryNow, runAlarm, scheduledAlarm, setState, useSettings } from "./support/conversation-object";
import { attempts, delivered, release, script, waitFor } from "./support/origin-control";
import { ROTATED_FORWARD_SECRET } from "./support/origin-types";
import { acceptAll, makeReceipt, newConversation, stubFor } from "./support/receipts";
import { TEST_FORWARD_SECRET, testSettings } from "./support/settings";

const RETRY_STEPS_MS = testSettings.FORWARD_RETRY_SCHEDULE.split(",").map((seconds) => Number(seconds) * 1000);
const ATTEMPTS_BEFORE_DEAD_LETTER = RETRY_STEPS_MS.length + 1;
const TIMEOUT_MS = Number(testSettings.FORWARD_TIMEOUT_MS);

async function pending(conversation: string) {
  return z
    .array(z.object({ receiptId: z.string(), attempts: z.number(), lastError: z.string().optional() }).loose())
    .parse(await stubFor(conversation).deliveries("pending"));
}

const DeadLetterPage = z.object({
  conversations: z.array(z.object({ conversation: z.string(), failed: z.number().optional() })),
  cursor: z.string().optional(),
});

/** Every entry of the dead-letter index, read `limit` at a time. */
async function listDeadLetters(limit: number): Promise<z.infer<typeof DeadLetterPage>["conversations"]> {
  const entries: z.infer<typeof DeadLetterPage>["conversations"] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const query = new URLSearchParams({ limit: String(limit), ...(cursor ? { cursor } : {}) });
    const response = await api(`/v1/dead-letters?${query}`);
    expect(response.status).toBe(200);
    const body = DeadLetterPage.parse(await response.json());
    entries.push(...body.conversations);
    cursor = body.cursor;
    if (!cursor) return entries;
  }
  throw new Error("the dead-letter index did not end");
}

describe("forwarding to the origin", () => {
  it("delivers a provider's callback signed, normalized and once", async () => {
    const reader = unique("fw-");
    const body = copy(samples.tencent.report, { Report_Account: reader });
    expect((await send(await tencentPath("C2C.CallbackAfterMsgReport"), { json: body })).status).toBe(200);
    const conversation = singleConversationKey("tencent", "1400000001", reader, "Jonh");
    // The alarm set at acceptance makes the first attempt at once.
    const [id] = await waitFor("the delivery", async () => {
      const arrived = await delivered(conversation);
      return arrived.length > 0 ? arrived : undefined;
    });
    expect(id).toMatch(/^tencent:[0-9a-f]{32}$/);
    // A repeat of the callback is a duplicate: nothing is queued, so nothing can go out again.
    await send(await tencentPath("C2C.CallbackAfterMsgReport"), { json: body });
    const stub = stubFor(conversation);
    expect(await stub.deliveries()).toEqual([]);
    await runAlarm(stub);
    const seen = await attempts(conversation);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ verified: true, status: 200, method: "POST", path: "/receipts", signatures: 1 });
    // What arrived is the normalized receipt the relay stored.
    const [stored] = (await stub.recent(1)) ?? [];
    expect(seen[0]!.data).toEqual(JSON.parse(JSON.stringify(stored)));
    expect(seen[0]!.data).toMatchObject({ provider: "tencent", event: "C2C.CallbackAfterMsgReport", readers: [reader], peer: "Jonh", unreadTotal: 7 });
  });

  it("delivers receipts in the order accepted, each once, through 503s and 500s", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(conversation, [{ status: 503 }, { status: 503 }, { status: 500 }]);
    const ids = await acceptAll(conversation, 1, 5);
    await runAlarm(stub);
    await retryNow(stub);
    await retryNow(stub);
    expect(await pending(conversation)).toMatchObject([
      { receiptId: ids[0], attempts: 3, lastError: 'destination answered 500: {"ok":false}' },
      ...ids.slice(1).map(() => ({ attempts: 0 })),
    ]);
    await retryNow(stub);
    const seen = await attempts(conversation);
    expect(seen.map((attempt) => [attempt.id, attempt.status])).toEqual([[ids[0], 503], [ids[0], 503], [ids[0], 500], ...ids.map((id) => [id, 200])]);
    expect(seen.every((attempt) => attempt.verified)).toBe(true);
    expect(await stub.deliveries()).toEqual([]);
  });

  it("makes at most 50 deliveries per run and re-arms at once for the rest", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    // Held while the 60 are accepted, so that no alarm delivers any of them before the run below.
    await useSettings(stub, { ORIGIN_URL: "" });
    const ids = await acceptAll(conversation, 1, 60);
    const firstRun = await runInDurableObject(stub, async (instance, state) => {
      // No alarm of the platform's may deliver between the change of settings and this run.
      await state.storage.deleteAlarm();
      await instance.alarm();
      Object.assign(instance, { env });
      await instance.alarm();
      return {
        left: state.storage.sql
          .exec("SELECT id FROM receipts WHERE coalesce(json_extract(deliveries, '$.origin.s'), 0) = 0 ORDER BY seq")
          .toArray()
          .map((row) => String(row.id)),
        alarm: await state.storage.getAlarm(),
        ranAt: Date.now(),
      };
    });
    expect(firstRun.left).toEqual(ids.slice(50));
    expect(firstRun.alarm).not.toBeNull();
    expect(firstRun.alarm).toBeLessThanOrEqual(firstRun.ranAt);
    await runAlarm(stub);
    expect(await delivered(conversation)).toEqual(ids);
    expect(await stub.deliveries()).toEqual([]);
  });

  it("rides out an origin that answers 503, times out, then refuses connections, losing nothing", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const shortTimeout = 200;
    await script(conversation, [{ status: 503 }, { status: 200, delayMs: 1000 }, { status: 502 }, { refuse: true }, { refuse: true }]);
    const ids = await acceptAll(conversation, 1, 3);
    await runAlarm(stub);
    await retryNow(stub, { FORWARD_TIMEOUT_MS: String(shortTimeout) });
    expect((await pending(conversation))[0]).toMatchObject({ receiptId: ids[0], attempts: 2, lastError: `no answer within ${shortTimeout} ms` });
    await retryNow(stub);
    ids.push(...(await acceptAll(conversation, 4, 2)));
    await retryNow(stub);
    const [refused] = await pending(conversation);
    expect(refused).toMatchObject({ receiptId: ids[0], attempts: 4 });
    expect(refused!.lastError).toMatch(/^network error/);
    await retryNow(stub);
    expect((await pending(conversation)).map((delivery) => delivery.receiptId)).toEqual(ids);
    await retryNow(stub);
    expect(await delivered(conversation)).toEqual(ids);
    expect((await attempts(conversation)).filter((attempt) => attempt.refused)).toHaveLength(2);
    expect(await stub.deliveries()).toEqual([]);
  });

  it("waits as long as Retry-After asks when that is longer than the step, and never less than the step", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    // Longer than any step with jitter; the step itself (jitter cannot cut it); shorter than the step.
    await script(conversation, [
      { status: 429, retryAfter: "150" },
      { status: 503, retryAfter: String(RETRY_STEPS_MS[1]! / 1000) },
      { status: 503, retryAfter: "1" },
    ]);
    const ids = await acceptAll(conversation, 1, 1);
    const waits: number[] = [];
    const recordWait = async () => {
      const [head] = await outboxRows(stub);
      waits.push(head!.next_attempt_at - head!.last_attempt_at!);
    };
    await runAlarm(stub);
    await recordWait();
    // An alarm before the wait is over does not retry.
    await runAlarm(stub);
    expect(await attempts(conversation)).toHaveLength(1);
    await retryNow(stub);
    await recordWait();
    await retryNow(stub);
    await recordWait();
    await retryNow(stub);
    expect(await delivered(conversation)).toEqual(ids);
    // Each wait counts from the end of the attempt, which took at most the timeout.
    expect(waits[0]).toBeGreaterThanOrEqual(150_000);
    expect(waits[0]).toBeLessThan(150_000 + TIMEOUT_MS);
    expect(waits[1]).toBeGreaterThanOrEqual(RETRY_STEPS_MS[1]!);
    expect(waits[1]).toBeLessThan(RETRY_STEPS_MS[1]! * (1 + RETRY_JITTER) + TIMEOUT_MS);
    expect(waits[2]).toBeGreaterThanOrEqual(RETRY_STEPS_MS[2]! * (1 - RETRY_JITTER));
    expect(waits[2]).toBeLessThan(RETRY_STEPS_MS[2]! * (1 + RETRY_JITTER) + TIMEOUT_MS);
  });

  it("gives up at once on a 400, keeps it as a dead letter, and moves on to the next", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(conversation, [{ status: 400 }]);
    const ids = await acceptAll(conversation, 1, 2);
    await runAlarm(stub);
    expect(await delivered(conversation)).toEqual([ids[1]]);
    const dead = await stub.deliveries("failed");
    expect(dead).toMatchObject([{ receiptId: ids[0], status: "failed", attempts: 1, lastStatus: 400 }]);
    expect(dead?.[0]?.lastError).toContain("destination answered 400");
    expect((await attempts(conversation)).filter((attempt) => attempt.id === ids[0])).toHaveLength(1);
  });

  it("dead-letters after the last retry, lists it, and delivers it on replay", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(
      conversation,
      Array.from({ length: ATTEMPTS_BEFORE_DEAD_LETTER }, () => ({ status: 503 })),
    );
    const [id] = await acceptAll(conversation, 1, 1);
    await runAlarm(stub);
    for (let retry = 1; retry < ATTEMPTS_BEFORE_DEAD_LETTER; retry++) await retryNow(stub);
    const path = `/v1/conversations/${encodeURIComponent(conversation)}`;
    const failed = z
      .object({ deliveries: z.array(z.object({ attempts: z.number(), lastError: z.string() }).loose()) })
      .parse(await (await api(`${path}/deliveries?status=failed`)).json());
    expect(failed.deliveries).toMatchObject([{ attempts: ATTEMPTS_BEFORE_DEAD_LETTER, lastError: 'destination answered 503: {"ok":false}' }]);

    await publishNow(stub);
    expect((await listDeadLetters(1000)).filter((entry) => entry.conversation === conversation)).toMatchObject([{ failed: 1 }]);

    const replay = await api(`${path}/deliveries/retry`, { method: "POST" });
    expect(await replay.json()).toEqual({ conversation, requeued: 1 });
    await runAlarm(stub);
    expect(await delivered(conversation)).toEqual([id]);
    await publishNow(stub);
    expect((await listDeadLetters(1000)).some((entry) => entry.conversation === conversation)).toBe(false);
  });

  it("replays several dead letters in their original order, ahead of later receipts", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(conversation, [{ status: 400 }, { status: 410 }, { status: 503 }]);
    const ids = await acceptAll(conversation, 1, 4);
    await runAlarm(stub);
    expect((await stub.deliveries("failed"))?.map((delivery) => delivery.receiptId)).toEqual(ids.slice(0, 2));
    expect(await stub.retryDeadLetters()).toEqual({ requeued: 2 });
    // The replayed two are due at once; the third still waits for its retry, and the fourth behind it.
    await runAlarm(stub);
    expect(await delivered(conversation)).toEqual(ids.slice(0, 2));
    await retryNow(stub);
    expect(await delivered(conversation)).toEqual(ids);
  });

  it("lists conversations with dead letters from the D1 index, long keys too, each once across pages", async () => {
    // Tencent allows 32-byte user ids; percent-encoded, non-ASCII ones grow long.
    const hashed = singleConversationKey("tencent", "1400000001", `${unique("读")}${"读".repeat(30)}`, "者".repeat(30));
    const conversations = [newConversation(), hashed, newConversation()];
    for (const conversation of conversations) {
      const stub = stubFor(conversation);
      await script(conversation, [{ status: 400 }]);
      await acceptAll(conversation, 1, 1);
      await runAlarm(stub);
      await publishNow(stub);
    }
    const listed = await listDeadLetters(1);
    expect(new Set(listed.map((entry) => entry.conversation)).size).toBe(listed.length);
    for (const conversation of conversations) {
      expect(listed.filter((entry) => entry.conversation === conversation)).toMatchObject([{ conversation, failed: 1 }]);
    }
  });

  it("keeps no dead-letter entry in KV: one left from before the D1 index is deleted once", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(conversation, [{ status: 400 }]);
    await acceptAll(conversation, 1, 1);
    await runAlarm(stub);
    await publishNow(stub);
    const legacyKey = await deadLetterKey(conversation);
    expect(await env.RECEIPTS_KV.get(legacyKey)).toBeNull();
    // As an object published before the upgrade left it: a KV entry, remembered in state.
    await env.RECEIPTS_KV.put(legacyKey, JSON.stringify({ conversation, failed: 1, oldestFailedAt: new Date().toISOString(), lastError: "x" }));
    await runInDurableObject(stub, (_, state) => state.storage.sql.exec("INSERT INTO state (key, value) VALUES ('indexed_entry', 'legacy')"));
    await stub.accept(makeReceipt(conversation, 2));
    await runAlarm(stub);
    await publishNow(stub);
    expect(await env.RECEIPTS_KV.get(legacyKey)).toBeNull();
    expect(await runInDurableObject(stub, (_, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM state WHERE key = 'indexed_entry'").one().n)).toBe(0);
  });

  it("resumes pending deliveries after the object is evicted", async () => {
    const conversation = newConversation();
    let stub = stubFor(conversation);
    await script(conversation, [{ status: 503 }]);
    const ids = await acceptAll(conversation, 1, 3);
    await runAlarm(stub);
    stub = await evictDurableObject(env.CONVERSATION, stub);
    expect((await pending(conversation)).map((delivery) => [delivery.receiptId, delivery.attempts])).toEqual([
      [ids[0], 1],
      [ids[1], 0],
      [ids[2], 0],
    ]);
    await retryNow(stub);
    expect(await delivered(conversation)).toEqual(ids);
  });

  it("re-arms a lost alarm when the object is next loaded", async () => {
    const conversation = newConversation();
    let stub = stubFor(conversation);
    await script(conversation, [{ status: 503 }]);
    const ids = await acceptAll(conversation, 1, 3);
    await runAlarm(stub);
    // Published, so that the head's retry is the only thing due.
    await publishNow(stub);
    // As if the platform had given up on the alarm: none is set, and the object leaves memory.
    await runInDurableObject(stub, (_, state) => state.storage.deleteAlarm());
    stub = await evictDurableObject(env.CONVERSATION, stub);
    const [head] = await outboxRows(stub);
    expect(await scheduledAlarm(stub)).toBe(head!.next_attempt_at);
    await retryNow(stub);
    expect(await delivered(conversation)).toEqual(ids);
  });

  it("writes nothing before an attempt (a restart makes it again: the next test)", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    // The origin holds its answer until the test has looked: no race with a wall-clock hold.
    await script(conversation, [{ status: 200, hold: true }]);
    const [id] = await acceptAll(conversation, 1, 1);
    await waitFor("the attempt to reach the origin", async () => ((await attempts(conversation)).length > 0 ? true : undefined));
    // What a deploy or a crash right now would leave behind: the receipt pending, never attempted
    // as far as storage knows (an attempt costs no row written until its result).
    const [owed] = await outboxRows(stub);
    expect(owed).toMatchObject({ id, status: PENDING, attempts: 0, last_attempt_at: null });
    await release(conversation);
    await waitFor("the delivery", async () => ((await delivered(conversation)).length > 0 ? true : undefined));
    expect(await stub.deliveries()).toEqual([]);
  });

  it("makes an attempt cut short by a restart again, under the same webhook-id", async () => {
    const conversation = newConversation();
    let stub = stubFor(conversation);
    await script(conversation, [{ status: 200, hold: true }, { status: 200 }]);
    const [id] = await acceptAll(conversation, 1, 1);
    await waitFor("the attempt to reach the origin", async () => ((await attempts(conversation)).length > 0 ? true : undefined));
    // A deploy while the origin still holds its answer: the attempt's result is never recorded.
    stub = await evictDurableObject(env.CONVERSATION, stub);
    await release(conversation);
    expect(await scheduledAlarm(stub)).not.toBeNull();
    await runAlarm(stub);
    const made = await attempts(conversation);
    expect(made.map((attempt) => [attempt.id, attempt.verified])).toEqual([
      [id, true],
      [id, true],
    ]);
    expect(await stub.deliveries()).toEqual([]);
  });

  it("keeps the delivery back-off through runs that return before it expires", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await useSettings(stub, { ORIGIN_URL: "" });
    const [id] = await acceptAll(conversation, 1, 1);
    const backOff = await runInDurableObject(stub, async (instance, state) => {
      await state.storage.deleteAlarm();
      await instance.alarm();
      // A row the delivery job cannot read: every run past the back-off fails.
      state.storage.sql.exec("UPDATE receipts SET accepted_at = 'unreadable'");
      Object.assign(instance, { env });
      const seen: { failures: number; waitMs: number }[] = [];
      const record = () =>
        seen.push({
          failures: stateNumber(state.storage, "delivery:origin_failures"),
          waitMs: stateNumber(state.storage, "delivery:origin_retry_at") - Date.now(),
        });
      await instance.alarm();
      record();
      // Before the back-off expires: this run returns early and must leave the back-off alone.
      await instance.alarm();
      record();
      // Expired, still failing: the wait doubles.
      setState(state.storage, "delivery:origin_retry_at", 0);
      await instance.alarm();
      record();
      // Expired, and the row readable again: the run goes through and the back-off is reset.
      state.storage.sql.exec("UPDATE receipts SET accepted_at = 0");
      setState(state.storage, "delivery:origin_retry_at", 0);
      await instance.alarm();
      record();
      return seen;
    });
    expect(backOff.map((entry) => entry.failures)).toEqual([1, 1, 2, 0]);
    expect(backOff[0]!.waitMs).toBeGreaterThan(25_000);
    expect(backOff[0]!.waitMs).toBeLessThanOrEqual(30_000);
    expect(backOff[1]!.waitMs).toBeLessThanOrEqual(backOff[0]!.waitMs);
    expect(backOff[2]!.waitMs).toBeGreaterThan(55_000);
    expect(backOff[2]!.waitMs).toBeLessThanOrEqual(60_000);
    expect(await delivered(conversation)).toEqual([id]);
  });

  it("signs with every FORWARD_SECRET: the origin verifies with either", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await useSettings(stub, { FORWARD_SECRET: `${ROTATED_FORWARD_SECRET},${TEST_FORWARD_SECRET}` });
    const ids = await acceptAll(conversation, 1, 1);
    await runAlarm(stub);
    const [attempt] = await attempts(conversation);
    expect(attempt).toMatchObject({ id: ids[0], status: 200, verified: true, signatures: 2 });
    expect([...attempt!.verifiedWith].sort()).toEqual([ROTATED_FORWARD_SECRET, TEST_FORWARD_SECRET].sort());
  });

  it("never follows a redirect: the receipt is a dead letter that says why", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(conversation, [
      { status: 301, location: "/moved" },
      { status: 307, location: "http://127.0.0.1:9/elsewhere" },
    ]);
    const ids = await acceptAll(conversation, 1, 3);
    await runAlarm(stub);
    expect(await delivered(conversation)).toEqual([ids[2]]);
    const dead = (await stub.deliveries("failed")) ?? [];
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

// Bulk replay of dead letters as a durable job: the snapshot from the D1 index, batches per alarm, progress.
import { describe, expect, it } from "vitest";
import { createExecutionContext, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { evictDurableObject } from "./support/evict";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { app } from "../src/app";
import { FAILED, PENDING } from "../src/conversation/schema";
import { REPLAY_BATCH, type ReplayJob } from "../src/ops/replay-job";
import { ADMIN_TOKEN, api, unique } from "./support/callbacks";
import { outboxRows, publishNow, retryNow, runAlarm } from "./support/conversation-object";
import { deliveredReceipts, script, waitFor } from "./support/origin-control";
import { makeReceipt, stubFor, withDeadLetters as withDeadLettersOf } from "./support/receipts";
import { deadLettersAtBoth, destinationRow } from "./support/destination-rows";

const Progress = z.object({
  id: z.string(),
  status: z.enum(["running", "done"]),
  conversations: z.object({ done: z.number(), total: z.number() }),
  requeued: z.number(),
  skipped: z.number(),
});

/** Dead letters of a conversation (test/support/receipts.ts), 2 by default here. */
const withDeadLetters = (conversation: string, receipts = 2) => withDeadLettersOf(conversation, receipts);

async function healthy(conversation: string): Promise<void> {
  const stub = stubFor(conversation);
  await stub.accept(makeReceipt(conversation, 1));
  await runAlarm(stub);
  await publishNow(stub);
}

async function startReplay(filter: unknown): Promise<z.infer<typeof Progress>> {
  const response = await api("/v1/replays", { method: "POST", body: JSON.stringify(filter) });
  expect(response.status).toBe(202);
  const body = Progress.parse(await response.json());
  expect(response.headers.get("location")).toBe(`/v1/replays/${body.id}`);
  return body;
}

const jobStub = (id: string) => env.REPLAYS.get(env.REPLAYS.idFromName(id));

async function progress(id: string): Promise<z.infer<typeof Progress>> {
  const response = await api(`/v1/replays/${id}`);
  expect(response.status).toBe(200);
  return Progress.parse(await response.json());
}

/**
 * Runs the job's alarm until the job is done. The platform runs an alarm set for now on its own
 * too, so this only hurries it along.
 */
async function drive(id: string): Promise<z.infer<typeof Progress>> {
  return waitFor("the replay to finish", async () => {
    if (!(await runDurableObjectAlarm(jobStub(id)))) await new Promise((resolve) => setTimeout(resolve, 20));
    const now = await progress(id);
    return now.status === "done" ? now : undefined;
  });
}

describe("POST /v1/replays", () => {
  it("requeues every dead letter of the matching conversations, in order, keeping their webhook-ids", async () => {
    const prefix = unique("tencent:1400000001:g:replay-") + "-";
    const failing = [1, 2, 3].map((n) => `${prefix}${n}`);
    for (const conversation of failing) await withDeadLetters(conversation);
    await healthy(`${prefix}ok`);
    const outside = unique("tencent:1400000001:g:elsewhere-");
    await withDeadLetters(outside);

    const started = await startReplay({ prefix });
    expect(started).toMatchObject({ status: "running", conversations: { done: 0, total: 3 }, requeued: 0 });
    await drive(started.id);
    expect(await progress(started.id)).toMatchObject({ id: started.id, status: "done", conversations: { done: 3, total: 3 }, requeued: 6, skipped: 0 });

    for (const conversation of failing) {
      // Pending again (the conversation's own alarm may already have delivered them): none is a dead letter.
      expect((await outboxRows(stubFor(conversation))).filter((row) => row.status !== PENDING)).toEqual([]);
      await retryNow(stubFor(conversation));
      const ids = [1, 2].map((n) => `test:${conversation}:${n}`);
      // Refused once each, then delivered again in order, under the same webhook-id.
      expect(await deliveredReceipts(conversation)).toEqual(ids);
      expect(await outboxRows(stubFor(conversation))).toEqual([]);
    }
    // Not matched by the filter: still dead letters.
    expect((await outboxRows(stubFor(outside))).map((row) => row.status)).toEqual([FAILED, FAILED]);
  });

  it("filters by provider", async () => {
    const tag = unique("replay-provider-");
    const openim = `openim:openim:r:${tag}`;
    const tencent = `tencent:1400000001:g:${tag}`;
    await withDeadLetters(openim, 1);
    await withDeadLetters(tencent, 1);
    // The prefix keeps this test to its own rows; the provider picks one of them.
    const started = await startReplay({ provider: "openim", prefix: "openim:openim:r:" + tag });
    expect(started.conversations.total).toBe(1);
    await drive(started.id);
    expect(await progress(started.id)).toMatchObject({ status: "done", requeued: 1 });
    expect((await outboxRows(stubFor(openim))).filter((row) => row.status !== PENDING)).toEqual([]);
    await retryNow(stubFor(openim));
    expect(await deliveredReceipts(openim)).toEqual([`test:${openim}:1`]);
    expect((await outboxRows(stubFor(tencent))).map((row) => row.status)).toEqual([FAILED]);
  });

  it(`works in batches of ${REPLAY_BATCH} per alarm run, its progress stored in its own SQLite`, async () => {
    const prefix = unique("tencent:1400000001:g:batch-") + "-";
    const count = REPLAY_BATCH + 2;
    for (let n = 0; n < count; n++) await withDeadLetters(`${prefix}${String(n).padStart(2, "0")}`, 1);
    // Created and run one batch at a time inside the job (the platform would run its alarm at once).
    const id = crypto.randomUUID();
    const afterOne = await runInDurableObject(jobStub(id), async (instance: ReplayJob, state) => {
      const created = await instance.start(id, { prefix });
      expect(created.conversations).toEqual({ done: 0, total: count });
      await state.storage.deleteAlarm();
      await instance.alarm();
      // Read in the same turn: what a restarted job resumes from, in its storage.
      const stored = Object.fromEntries(
        state.storage.sql
          .exec("SELECT key, value FROM job WHERE key IN ('cursor', 'requeued')")
          .toArray()
          .map((row) => [row.key, row.value]),
      );
      return { progress: await instance.progress(), stored };
    });
    expect(afterOne.progress).toMatchObject({ status: "running", conversations: { done: REPLAY_BATCH, total: count }, requeued: REPLAY_BATCH });
    expect(afterOne.stored).toEqual({ cursor: String(REPLAY_BATCH), requeued: String(REPLAY_BATCH) });
    // Evicted (as by a deploy), it resumes from storage.
    await evictDurableObject(env.REPLAYS, jobStub(id));
    expect(await drive(id)).toMatchObject({ status: "done", conversations: { done: count, total: count }, requeued: count });
  });

  it("a filter that matches nothing is done at once", async () => {
    const started = await startReplay({ prefix: unique("tencent:nothing-") });
    expect(started).toMatchObject({ status: "done", conversations: { done: 0, total: 0 }, requeued: 0 });
    expect(await runDurableObjectAlarm(jobStub(started.id))).toBe(false);
  });

  it("replays the conversation's current dead letters, found through the index's rows with failed > 0", async () => {
    const conversation = unique("tencent:1400000001:g:delivered-since-");
    await withDeadLetters(conversation, 1);
    // Replayed and delivered by hand since: the index is republished with failed = 0.
    await stubFor(conversation).retryDeadLetters();
    await retryNow(stubFor(conversation));
    await publishNow(stubFor(conversation));
    const started = await startReplay({ prefix: conversation });
    expect(started.conversations.total).toBe(0);
    expect((await stubFor(conversation).deliveries("all"))?.map((delivery) => [delivery.destination, delivery.status])).toEqual([["origin", "delivered"]]);
  });

  it("sends a conversation's delivered receipts again, those delivered in the window, in order, under their webhook-ids", async () => {
    const conversation = unique("tencent:1400000001:u:redeliver-");
    const stub = stubFor(conversation);
    for (let n = 1; n <= 3; n++) await stub.accept(makeReceipt(conversation, n));
    await runAlarm(stub);
    const ids = [1, 2, 3].map((n) => `test:${conversation}:${n}`);
    expect(await deliveredReceipts(conversation)).toEqual(ids);
    // Receipt 1 was delivered an hour ago (outside the window), 2 and 3 just now.
    const now = Date.now();
    await runInDurableObject(stub, (_, state) =>
      state.storage.sql.exec("UPDATE receipts SET deliveries = json_set(deliveries, '$.origin.d', ?) WHERE seq = 1", now - 3_600_000),
    );
    const started = await startReplay({ delivered: { conversation, since: new Date(now - 600_000).toISOString() } });
    expect(started).toMatchObject({ conversations: { done: 0, total: 1 } });
    expect(await drive(started.id)).toMatchObject({ status: "done", conversations: { done: 1, total: 1 }, requeued: 2, skipped: 0 });
    await retryNow(stub);
    expect(await deliveredReceipts(conversation)).toEqual([...ids, ids[1], ids[2]]);
    const history = (await stub.deliveries("all"))?.map((delivery) => [delivery.receiptId, delivery.status, delivery.attemptLog.length]);
    expect(history).toEqual([
      [ids[0], "delivered", 1],
      [ids[1], "delivered", 2],
      [ids[2], "delivered", 2],
    ]);
  });

  it("a delivered replay of a conversation never seen is done, skipped, and says why", async () => {
    const conversation = unique("tencent:1400000001:u:never-");
    const started = await startReplay({ delivered: { conversation } });
    const done = await drive(started.id);
    expect(done).toMatchObject({ requeued: 0, skipped: 1 });
    const body = z.object({ lastError: z.string() }).parse(await (await api(`/v1/replays/${started.id}`)).json());
    expect(body.lastError).toContain("never stored");
  });

  it("replays the dead letters of one destination only, in the conversations whose rows say it has some", async () => {
    const conversation = unique("tencent:1400000001:u:dest-replay-");
    await deadLettersAtBoth(conversation, 2);
    // A row whose dead letters are another destination's: not part of the job.
    await destinationRow(`${conversation}-other`, { origin: { failed: 1, lastError: "x" } }, Date.now());
    const started = await startReplay({ prefix: conversation, destination: "crm" });
    expect(started.conversations.total).toBe(1);
    expect(await drive(started.id)).toMatchObject({ status: "done", requeued: 2, skipped: 0 });
    const body = z.object({ filter: z.unknown() }).parse(await (await api(`/v1/replays/${started.id}`)).json());
    expect(body.filter).toEqual({ prefix: conversation, destination: "crm" });
    const failed = (await stubFor(conversation).deliveries("failed")) ?? [];
    expect(failed.map((delivery) => delivery.destination)).toEqual(["origin", "origin"]);
  });

  it("sends a conversation's delivered receipts again to one destination only", async () => {
    const conversation = unique("tencent:1400000001:u:dest-redeliver-");
    await deadLettersAtBoth(conversation, 1);
    // crm's dead letter delivered after a retry; origin's stays a dead letter.
    await stubFor(conversation).retryDeadLetters("crm");
    await retryNow(stubFor(conversation));
    const started = await startReplay({ delivered: { conversation }, destination: "crm" });
    expect(await drive(started.id)).toMatchObject({ status: "done", conversations: { total: 1 }, requeued: 1 });
    await retryNow(stubFor(conversation));
    // Delivered to crm twice (after its retry, then again); never to origin, whose dead letter stays.
    const id = `test:${conversation}:1`;
    expect(await deliveredReceipts(conversation)).toEqual([id, id]);
    const crm = (await stubFor(conversation).deliveries("all", 10, 0, "crm")) ?? [];
    expect(crm.map((delivery) => [delivery.status, delivery.attemptLog.map((attempt) => attempt.status)])).toEqual([["delivered", [400, 200, 200]]]);
    expect(((await stubFor(conversation).deliveries("failed")) ?? []).map((delivery) => delivery.destination)).toEqual(["origin"]);
  });

  it("a delivered replay of one destination without a conversation takes every conversation of the index", async () => {
    const conversation = unique("tencent:1400000001:u:dest-every-");
    await healthy(conversation);
    const started = await startReplay({ delivered: { since: new Date(Date.now() - 60_000).toISOString() }, destination: "crm" });
    expect(started.conversations.total).toBeGreaterThanOrEqual(1);
    const done = await drive(started.id);
    expect(done.conversations.done).toBe(done.conversations.total);
    // This conversation's object has no crm: nothing of it is sent again.
    expect(await deliveredReceipts(conversation)).toEqual([`test:${conversation}:1`]);
  });

  it.each([
    [{ delivered: {} }, "conversation"],
    [{ destination: "Not_A_Name" }, "destination"],
    [{ delivered: { conversation: "x" }, destination: "CRM" }, "destination"],
    [{ delivered: { conversation: "" } }, "conversation"],
    [{ delivered: { conversation: "x", since: "yesterday" } }, "since"],
    [{ delivered: { conversation: "x", since: "2026-12-02T00:00:00Z", until: "2026-12-01T00:00:00Z" } }, "until"],
    [{ delivered: { conversation: "x" }, provider: "tencent" }, "provider"],
    [{ provider: 5 }, "provider"],
    [{ prefix: "" }, "prefix"],
    [{ conversation: "x" }, "conversation"],
  ])("400 invalid_body naming the field for %j", async (filter, field) => {
    const response = await api("/v1/replays", { method: "POST", body: JSON.stringify(filter) });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: { code: "invalid_body", message: expect.stringContaining(field) } });
  });

  it("400 invalid_body for a body that is not JSON", async () => {
    const response = await api("/v1/replays", { method: "POST", body: "{" });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_body" } });
  });

  it("401 without the token", async () => {
    expect((await api("/v1/replays", { method: "POST", body: "{}" }, null)).status).toBe(401);
    expect((await api(`/v1/replays/${crypto.randomUUID()}`, {}, null)).status).toBe(401);
  });

  it("503 index_disabled without a DB binding", async () => {
    const response = await app.fetch(
      new Request("http://relay.test/v1/replays", {
        method: "POST",
        body: "{}",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "cf-connecting-ip": "2001:db8::2" },
      }),
      { ...env, DB: undefined },
      createExecutionContext(),
    );
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { code: "index_disabled" } });
  });
});

describe("GET /v1/replays/<id>", () => {
  it("404 replay_not_found for an unknown id, creating no storage", async () => {
    const id = crypto.randomUUID();
    const response = await api(`/v1/replays/${id}`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: "replay_not_found" } });
    expect(await runInDurableObject(jobStub(id), (_, state) => state.storage.sql.exec("SELECT name FROM sqlite_master").toArray())).toEqual([]);
    expect((await api("/v1/replays/not-an-id")).status).toBe(404);
  });
});

// The relay-wide conversation index in D1: what each object writes from publish(), when, and the API over it.
import { describe, expect, it } from "vitest";
import { createExecutionContext, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { app } from "../src/app";
import { IndexRow } from "../src/ops/conversation-index";
import { ADMIN_TOKEN, api, unique } from "./support/callbacks";
import { publishNow, runAlarm, scheduledAlarm, setState, stateNumber, useSettings } from "./support/conversation-object";
import { script } from "./support/origin-control";
import { makeReceipt, newConversation, published, stubFor } from "./support/receipts";

async function indexRow(conversation: string): Promise<IndexRow | undefined> {
  const row = await env.DB.prepare("SELECT * FROM conversations WHERE key = ?").bind(conversation).first();
  return row ? IndexRow.parse(row) : undefined;
}

/** Conversations under one fresh prefix, so that listing sees only this test's rows. */
const prefixed = (prefix: string, n: number) => `${prefix}${String(n).padStart(2, "0")}`;

const indexed = (conversation: string, receipts = 1, { failing = false } = {}): Promise<void> =>
  published(conversation, receipts, { refused: failing ? receipts : 0 });

/** The app with an env that has no DB binding. */
async function withoutDb(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
  headers.set("cf-connecting-ip", "2001:db8::1");
  return app.fetch(new Request(`http://relay.test${path}`, { ...init, headers }), { ...env, DB: undefined }, createExecutionContext());
}

const ListBody = z.object({
  conversations: z.array(z.object({ conversation: z.string(), provider: z.string(), failed: z.number(), pending: z.number() }).loose()),
  cursor: z.string().optional(),
});

describe("the index row a conversation writes when it publishes", () => {
  it("holds provider, app, chat, counts and the last delivery, from the object's storage", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    for (let n = 1; n <= 3; n++) await stub.accept(makeReceipt(conversation, n));
    await runAlarm(stub);
    await publishNow(stub);
    const row = await indexRow(conversation);
    expect(row).toMatchObject({
      key: conversation,
      provider: "tencent",
      app: "1400000001",
      chat: "single",
      accepted: 3,
      pending: 0,
      failed: 0,
      oldest_failed_at: null,
      last_error: null,
    });
    expect(row?.last_receipt_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(row?.last_delivered_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(row?.last_latency_ms).toBeGreaterThanOrEqual(0);
  });

  it("records dead letters: count, oldest failure and last error", async () => {
    const conversation = newConversation();
    await indexed(conversation, 2, { failing: true });
    const row = await indexRow(conversation);
    expect(row).toMatchObject({ accepted: 2, pending: 0, failed: 2, last_error: expect.stringContaining("400") });
    expect(row?.oldest_failed_at).toMatch(/^\d{4}-/);
    expect(row?.last_delivered_at).toBeNull();
  });

  it("is written only when its content changed (the last text is kept in state as indexed_row)", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await indexed(conversation);
    await env.DB.prepare("UPDATE conversations SET updated_at = 'sentinel' WHERE key = ?").bind(conversation).run();
    // Something to publish (a changed version) with the same row content: the KV snapshot goes out, the row does not.
    await runInDurableObject(stub, (instance) => {
      const object = instance as unknown as { version: number };
      object.version += 1;
    });
    await publishNow(stub);
    expect((await indexRow(conversation))?.updated_at).toBe("sentinel");
    // A real change is written.
    await stub.accept(makeReceipt(conversation, 2));
    await runAlarm(stub);
    await publishNow(stub);
    expect(await indexRow(conversation)).toMatchObject({ accepted: 2 });
    expect((await indexRow(conversation))?.updated_at).not.toBe("sentinel");
  });

  it("with SNAPSHOT_INTERVAL_SECONDS=0, is still written at most once a minute", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await useSettings(stub, { SNAPSHOT_INTERVAL_SECONDS: "0" });
    await stub.accept(makeReceipt(conversation, 1));
    await runAlarm(stub);
    expect(await indexRow(conversation)).toMatchObject({ accepted: 1 });
    await stub.accept(makeReceipt(conversation, 2));
    await runAlarm(stub);
    // Not yet: the next publication is a minute after the last one, and the alarm is set for it.
    expect(await indexRow(conversation)).toMatchObject({ accepted: 1 });
    const publishedAt = await runInDurableObject(stub, (_, state) => stateNumber(state.storage, "published_at"));
    expect(await scheduledAlarm(stub)).toBe(publishedAt + 60_000);
  });

  it("a D1 failure backs off the row alone: the KV snapshot goes out, and the row is retried until written", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const failingDb = { prepare: () => ({ bind: () => ({ run: () => Promise.reject(new Error("D1 is down")) }) }) };
    const failures = await runInDurableObject(stub, async (instance, state) => {
      Object.assign(instance, { env: { ...env, DB: failingDb } });
      await instance.accept(makeReceipt(conversation, 1));
      await instance.alarm();
      Object.assign(instance, { env });
      return { index: stateNumber(state.storage, "index_failures"), kv: stateNumber(state.storage, "kv_failures") };
    });
    expect(failures).toEqual({ index: 1, kv: 0 });
    expect(await indexRow(conversation)).toBeUndefined();
    expect(await env.RECEIPTS_KV.get(`conversations/${conversation}`)).not.toBeNull();
    // The back-off has passed: the next run writes the row and clears it.
    await runInDurableObject(stub, async (instance, state) => {
      setState(state.storage, "index_retry_at", 0);
      await instance.alarm();
    });
    expect(await indexRow(conversation)).toMatchObject({ accepted: 1 });
    expect(await runInDurableObject(stub, (_, state) => stateNumber(state.storage, "index_failures"))).toBe(0);
  });

  it("without a DB binding, the object publishes to KV as before and writes no row", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await runInDurableObject(stub, async (instance) => {
      Object.assign(instance, { env: { ...env, DB: undefined } });
      await instance.accept(makeReceipt(conversation, 1));
      await instance.alarm();
    });
    await publishNow(stub);
    expect(await env.RECEIPTS_KV.get(`conversations/${conversation}`)).not.toBeNull();
    expect(await indexRow(conversation)).toBeUndefined();
  });
});

describe("GET /v1/conversations", () => {
  it("lists the index in key order, a page at a time with an opaque cursor", async () => {
    const prefix = unique("tencent:1400000001:u:alice:list-") + "-";
    for (let n = 1; n <= 3; n++) await indexed(prefixed(prefix, n));
    const first = ListBody.parse(await (await api(`/v1/conversations?prefix=${encodeURIComponent(prefix)}&limit=2`)).json());
    expect(first.conversations.map((row) => row.conversation)).toEqual([prefixed(prefix, 1), prefixed(prefix, 2)]);
    expect(first.conversations[0]).toMatchObject({ provider: "tencent", app: "1400000001", chat: "single", accepted: 1, failed: 0 });
    expect(first.cursor).toBeDefined();
    const second = ListBody.parse(await (await api(`/v1/conversations?prefix=${encodeURIComponent(prefix)}&limit=2&cursor=${first.cursor}`)).json());
    expect(second.conversations.map((row) => row.conversation)).toEqual([prefixed(prefix, 3)]);
    expect(second.cursor).toBeUndefined();
  });

  it("filters by status and provider", async () => {
    const tag = unique("filter-");
    const ok = `tencent:1400000001:u:alice:${tag}-ok`;
    const failing = `tencent:1400000001:u:alice:${tag}-failing`;
    const other = `openim:openim:r:${tag}-reader`;
    await indexed(ok);
    await indexed(failing, 1, { failing: true });
    await indexed(other);
    const list = async (query: string) => ListBody.parse(await (await api(`/v1/conversations?${query}`)).json()).conversations.map((row) => row.conversation);
    const tencent = encodeURIComponent(`tencent:1400000001:u:alice:${tag}`);
    expect(await list(`prefix=${tencent}&status=failing`)).toEqual([failing]);
    expect(await list(`prefix=${tencent}&status=ok`)).toEqual([ok]);
    expect(await list(`prefix=${tencent}&status=pending`)).toEqual([]);
    expect(await list(`provider=openim&prefix=${encodeURIComponent(`openim:openim:r:${tag}`)}`)).toEqual([other]);
    expect(await list(`provider=tencent&prefix=${encodeURIComponent(`openim:openim:r:${tag}`)}`)).toEqual([]);
  });

  it.each([
    ["status=broken", "status"],
    ["limit=0", "limit"],
    ["limit=1001", "limit"],
    ["cursor=%%%", "cursor"],
  ])("400 invalid_query naming the parameter for %s", async (query, name) => {
    const response = await api(`/v1/conversations?${query}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: { code: "invalid_query", message: expect.stringContaining(`query parameter ${name}`) } });
  });

  it("401 without the token", async () => {
    expect((await api("/v1/conversations", {}, null)).status).toBe(401);
    expect((await api("/v1/conversations/x", {}, null)).status).toBe(401);
  });

  it("503 index_disabled without a DB binding", async () => {
    const response = await withoutDb("/v1/conversations");
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { code: "index_disabled" } });
  });
});

describe("GET /v1/conversations/<conversation>", () => {
  const Summary = z.object({
    conversation: z.string(),
    accepted: z.number(),
    deliveries: z.object({ pending: z.number(), failed: z.number() }),
    lastDeliveredAt: z.string().optional(),
    lastLatencyMs: z.number().optional(),
    lastError: z.string().optional(),
    receipts: z.array(
      z
        .object({ id: z.string(), delivery: z.object({ status: z.string(), attempts: z.number(), lastStatus: z.number().optional() }).loose().nullable() })
        .loose(),
    ),
  });

  it("summarises the object: counts, last delivery, and recent receipts with their delivery state", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(conversation, [{ status: 200 }, { status: 400 }, { status: 200 }, { status: 503 }]);
    for (let n = 1; n <= 4; n++) await stub.accept(makeReceipt(conversation, n));
    // 1 delivered, 2 dead, 3 delivered, 4 waits for its retry.
    await runAlarm(stub);
    const response = await api(`/v1/conversations/${encodeURIComponent(conversation)}`);
    expect(response.status).toBe(200);
    const body = Summary.parse(await response.json());
    expect(body).toMatchObject({ conversation, accepted: 4, deliveries: { pending: 1, failed: 1 }, lastError: expect.stringContaining("400") });
    expect(body.lastDeliveredAt).toMatch(/^\d{4}-/);
    expect(body.lastLatencyMs).toBeGreaterThanOrEqual(0);
    expect(body.receipts.map((receipt) => [receipt.id, receipt.delivery?.status, receipt.delivery?.lastStatus])).toEqual([
      [`test:${conversation}:4`, "pending", 503],
      [`test:${conversation}:3`, "delivered", 200],
      [`test:${conversation}:2`, "failed", 400],
      [`test:${conversation}:1`, "delivered", 200],
    ]);
    expect(body.receipts[1]?.delivery).toMatchObject({ attempts: 1, deliveredAt: expect.any(String), latencyMs: expect.any(Number) });
  });

  it("404 conversation_not_found for a conversation never seen, creating no storage", async () => {
    const conversation = newConversation();
    const response = await api(`/v1/conversations/${encodeURIComponent(conversation)}`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: "conversation_not_found" } });
    const tables = await runInDurableObject(stubFor(conversation), (_, state) => state.storage.sql.exec("SELECT name FROM sqlite_master").toArray());
    expect(tables).toEqual([]);
  });

  it("answers from the object without a DB binding too", async () => {
    const conversation = newConversation();
    await stubFor(conversation).accept(makeReceipt(conversation, 1));
    const response = await withoutDb(`/v1/conversations/${encodeURIComponent(conversation)}`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ conversation, accepted: 1, deliveries: { failed: 0 }, receipts: [{ id: `test:${conversation}:1` }] });
  });
});

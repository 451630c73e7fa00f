// An index (D1) whose migrations were never applied, as under a plain `wrangler dev`: receipts are
// accepted, delivered and published to KV all the same; what needs the index answers 503
// index_unavailable naming the fix; /healthz and the dashboard say so; each failure is logged once.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createExecutionContext, createScheduledController, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { z } from "zod";
import { app } from "../src/app";
import { indexProblemOf } from "../src/ops/conversation-index";
import { Snapshot, snapshotKey } from "../src/conversation/snapshot";
import worker from "../src/index";
import { singleConversationKey } from "../src/receipt";
import { ADMIN_TOKEN, copy, samples, send, TENCENT_APP, tencentPath, unique } from "./support/callbacks";
import { runAlarm, setState, stateNumber, useSettings } from "./support/conversation-object";
import { rowsWrittenBy } from "./support/rows-written";
import { deliveredReceipts } from "./support/origin-control";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";

/** Bound by vitest.config.ts and never migrated (test/support/d1-setup.ts migrates DB only). */
const UNMIGRATED = (env as unknown as { UNMIGRATED_DB: D1Database }).UNMIGRATED_DB;
const unmigrated = { ...env, DB: UNMIGRATED };
const FIX_LOCAL = "npx wrangler d1 migrations apply DB --local";

/** The relay's JSON log lines while a test runs (the objects run in this isolate too). */
let lines: Record<string, unknown>[] = [];
const Line = z.record(z.string(), z.unknown());
beforeEach(() => {
  lines = [];
  const record = (text: unknown) => {
    try {
      const parsed = Line.safeParse(JSON.parse(String(text)));
      if (parsed.success) lines.push(parsed.data);
    } catch {
      // Not one of ours.
    }
  };
  for (const level of ["log", "warn", "error"] as const) vi.spyOn(console, level).mockImplementation(record);
});
afterEach(() => vi.restoreAllMocks());
const logged = (msg: string, fields: Record<string, unknown> = {}) =>
  lines.filter((line) => line.msg === msg && Object.entries(fields).every(([key, value]) => line[key] === value));

async function call(path: string, init: RequestInit = {}, bindings: Env = unmigrated): Promise<Response> {
  const context = createExecutionContext();
  const headers = new Headers(init.headers);
  if (path.startsWith("/v1/")) headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
  headers.set("cf-connecting-ip", `2001:db8::${crypto.randomUUID().slice(0, 4)}`);
  const response = await app.fetch(new Request(`http://relay.test${path}`, { ...init, headers, redirect: "manual" }), bindings, context);
  await waitOnExecutionContext(context);
  return response;
}

const ApiError = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

async function snapshotOf(conversation: string): Promise<Snapshot | undefined> {
  const stored = await env.RECEIPTS_KV.get(await snapshotKey(conversation), "json");
  return stored === null ? undefined : Snapshot.parse(stored);
}

describe("the conversation object, with the index's tables missing", () => {
  it("accepts, delivers and publishes the KV snapshot at its interval; the row backs off alone, logged once", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await runInDurableObject(stub, (instance) => {
      Object.assign(instance, { env: unmigrated });
    });
    expect(await stub.accept(makeReceipt(conversation, 1))).toBe("accepted");
    await runAlarm(stub);
    expect(await deliveredReceipts(conversation)).toEqual([`test:${conversation}:1`]);
    expect((await snapshotOf(conversation))?.receipts.map((receipt) => receipt.id)).toEqual([`test:${conversation}:1`]);

    // A second receipt, the snapshot interval passed, and the row's back-off too: KV follows, the row fails again.
    expect(await stub.accept(makeReceipt(conversation, 2))).toBe("accepted");
    await runAlarm(stub);
    const state = await runInDurableObject(stub, async (instance, { storage }) => {
      setState(storage, "published_at", Date.now() - 2_000);
      setState(storage, "index_retry_at", 0);
      await instance.alarm();
      const read = (key: string) => stateNumber(storage, key);
      return { kvFailures: read("kv_failures"), indexFailures: read("index_failures"), retryAt: read("index_retry_at") };
    });
    expect((await snapshotOf(conversation))?.receipts.map((receipt) => receipt.id)).toEqual([2, 1].map((n) => `test:${conversation}:${n}`));
    expect(await deliveredReceipts(conversation)).toEqual([1, 2].map((n) => `test:${conversation}:${n}`));
    expect(state.kvFailures).toBe(0);
    expect(state.indexFailures).toBeGreaterThanOrEqual(2);
    // Its own back-off: 30 s, doubling (the alarm is armed for it, the snapshot's interval aside).
    expect(state.retryAt - Date.now()).toBeGreaterThan(50_000);

    // One line for the kind of failure, not one per attempt; nothing about KV or the publication as a whole.
    const warned = logged("index_unavailable", { conversation });
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: "warn", kind: "unmigrated", missing: ["conversations"] });
    expect(String(warned[0]?.error)).toContain(FIX_LOCAL);
    expect(logged("kv_publish_failed", { conversation })).toEqual([]);
    expect(logged("publish_failed", { conversation })).toEqual([]);

    // Once migrated (here: the real DB again), the row is written and the recovery logged once, even
    // after a restart that lost the object's memory while KV had caught up (nothing newer than published_at).
    await runInDurableObject(stub, async (instance, { storage }) => {
      Object.assign(instance, { env, version: 0, published: { kv: 0, index: 0 } });
      setState(storage, "index_retry_at", 0);
      await instance.alarm();
    });
    const row = await env.DB.prepare("SELECT accepted FROM conversations WHERE key = ?").bind(conversation).first();
    expect(row).toEqual({ accepted: 2 });
    expect(logged("publish_recovered", { conversation, output: "index" })).toHaveLength(1);
    expect(await runInDurableObject(stub, (_, { storage }) => stateNumber(storage, "index_failures"))).toBe(0);
  });

  it("a signed callback through the worker is accepted, delivered and served from KV while the object's index has no tables", async () => {
    const reader = unique("reader-");
    const conversation = singleConversationKey("tencent", TENCENT_APP, reader, "peer");
    const stub = stubFor(conversation);
    await runInDurableObject(stub, (instance) => {
      Object.assign(instance, { env: unmigrated });
    });
    const now = Date.now();
    const body = copy(samples.tencent.report, { Report_Account: reader, Peer_Account: "peer", LastReadTime: Math.floor(now / 1000), EventTime: now });
    const answer = await send(await tencentPath("C2C.CallbackAfterMsgReport"), { json: body });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ ActionStatus: "OK" });
    await runAlarm(stub);
    expect(await deliveredReceipts(conversation)).toHaveLength(1);
    const response = await call(`/v1/conversations/${encodeURIComponent(conversation)}/receipts`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ consistent: false, receipts: [{ conversation, readers: [reader] }] });
    // The summary comes from the object alone: without the index, still 200.
    const summary = await call(`/v1/conversations/${encodeURIComponent(conversation)}`);
    expect(summary.status).toBe(200);
    expect(await summary.json()).toMatchObject({ conversation, accepted: 1 });
  });

  it("a KV outage delays only the snapshot: the index row is written, and KV's failure logged once", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const refusing = { ...env, RECEIPTS_KV: { put: () => Promise.reject(new Error("KV put() limit exceeded for the day.")) } };
    const failures = await runInDurableObject(stub, async (instance, { storage }) => {
      Object.assign(instance, { env: refusing });
      await instance.accept(makeReceipt(conversation, 1));
      await instance.alarm();
      setState(storage, "kv_retry_at", 0);
      await instance.alarm();
      Object.assign(instance, { env });
      return { kv: stateNumber(storage, "kv_failures"), index: stateNumber(storage, "index_failures") };
    });
    expect(failures).toEqual({ kv: 2, index: 0 });
    expect(await env.DB.prepare("SELECT accepted FROM conversations WHERE key = ?").bind(conversation).first()).toEqual({ accepted: 1 });
    expect(logged("kv_publish_failed", { conversation })).toHaveLength(1);
    expect(logged("index_unavailable", { conversation })).toEqual([]);
  });

  it("writes no more rows per publication than before: published_at and the changed row", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    // A minute's interval: no platform alarm publishes behind the test's back.
    await useSettings(stub, { SNAPSHOT_INTERVAL_SECONDS: "60" });
    await stub.accept(makeReceipt(conversation, 1));
    const written = await runInDurableObject(stub, async (instance, { storage }) => {
      await instance.alarm();
      await instance.accept(makeReceipt(conversation, 2));
      // Delivered now; its publication waits for the interval.
      await instance.alarm();
      setState(storage, "published_at", 0);
      return rowsWrittenBy(storage.sql, () => instance.alarm());
    });
    // `published_at` and `indexed_row`, as before the outputs were split: no back-off state while nothing fails.
    expect(written).toBe(2);
    expect((await snapshotOf(conversation))?.receipts).toHaveLength(2);
  });
});

describe("the API, with the index's tables missing", () => {
  it("answers 503 index_unavailable naming the migration command, never 500", async () => {
    for (const [path, init] of [
      ["/v1/conversations", {}],
      ["/v1/dead-letters", {}],
      ["/v1/stats", {}],
      ["/v1/replays", { method: "POST", body: "{}", headers: { "content-type": "application/json" } }],
    ] as const) {
      const response = await call(path, init);
      expect(response.status, path).toBe(503);
      const body = ApiError.parse(await response.json());
      expect(body.error.code, path).toBe("index_unavailable");
      expect(body.error.message, path).toContain(FIX_LOCAL);
      expect(body.error.message, path).toContain("npm run deploy");
      expect(body.error.message, path).toContain("conversations");
    }
    // Four calls, one line.
    expect(logged("index_unavailable", { where: "api" })).toHaveLength(1);
    expect(logged("unhandled")).toEqual([]);
  });

  it("a failing binding answers 503 index_unavailable naming D1, and keeps index_disabled without one", async () => {
    const failing = { prepare: () => ({ bind: () => failing.prepare(), all: () => Promise.reject(new Error("D1_ERROR: Network connection lost.")) }) };
    const response = await call("/v1/conversations", {}, { ...env, DB: failing as unknown as D1Database });
    expect(response.status).toBe(503);
    const body = ApiError.parse(await response.json());
    expect(body.error).toMatchObject({ code: "index_unavailable", message: expect.stringContaining("D1 binding DB") });
    const unbound = await call("/v1/conversations", {}, { ...env, DB: undefined as unknown as D1Database });
    expect(unbound.status).toBe(503);
    expect(ApiError.parse(await unbound.json()).error.code).toBe("index_disabled");
  });
});

describe("/healthz and the dashboard, with the index's tables missing", () => {
  it("/healthz is degraded and names the missing tables and the fix", async () => {
    const response = await call("/healthz");
    expect(response.status).toBe(200);
    const health = z.object({ status: z.string(), index: z.record(z.string(), z.unknown()) }).parse(await response.json());
    expect(health.status).toBe("degraded");
    expect(health.index).toMatchObject({ state: "unavailable", kind: "unmigrated", missing: ["conversations", "alert_state"] });
    expect(String(health.index.reason)).toContain(FIX_LOCAL);
    // The migrated database matches what the probe expects, columns included.
    const migrated = await (await exports.default.fetch("http://relay.test/healthz")).json();
    expect(migrated).toMatchObject({ status: "ok", index: { state: "on" } });
  });

  it("the overview shows the problem at the top; the index pages answer 503 with the fix, not 500", async () => {
    const login = await call("/dashboard/login", {
      method: "POST",
      headers: { origin: "http://relay.test", "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
    });
    expect(login.status).toBe(303);
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const overview = await call("/dashboard", { headers: { cookie } });
    const html = await overview.text();
    expect(overview.status).toBe(200);
    expect(html).toContain('data-testid="index-problem"');
    expect(html.indexOf('data-testid="index-problem"')).toBeLessThan(html.indexOf('data-testid="overview"'));
    expect(html).toContain(FIX_LOCAL);
    for (const path of ["/dashboard/conversations", "/dashboard/dead-letters"]) {
      const page = await call(path, { headers: { cookie } });
      expect(page.status, path).toBe(503);
      expect(await page.text(), path).toContain(FIX_LOCAL);
    }
  });
});

describe("the alert cron, with the index's tables missing", () => {
  it("logs the failure once per isolate, not every minute", async () => {
    const bindings = { ...unmigrated, ALERT_URL: `http://127.0.0.1:9/${unique("alerts-")}` };
    for (let minute = 0; minute < 3; minute++) {
      await worker.scheduled(createScheduledController({ scheduledTime: Date.now() + minute * 60_000, cron: "* * * * *" }), bindings);
    }
    expect(logged("index_unavailable", { where: "alerts" })).toHaveLength(1);
    expect(logged("alerts_failed")).toEqual([]);
  });
});

describe("classifying D1's errors", () => {
  it("a table or column a migration adds is named with the fix; anything else is D1 failing", () => {
    expect(indexProblemOf(new Error("D1_ERROR: no such table: conversations: SQLITE_ERROR"))).toMatchObject({ kind: "unmigrated", missing: ["conversations"] });
    // An index with migration 0001 applied but not 0003 (SQLite's own message for the upsert).
    const partly = indexProblemOf(new Error("D1_ERROR: table conversations has no column named activity: SQLITE_ERROR"));
    expect(partly).toMatchObject({ kind: "unmigrated", missing: ["conversations.activity"] });
    expect(partly.message).toContain("npx wrangler d1 migrations apply DB --local");
    expect(indexProblemOf(new Error("D1_ERROR: Network connection lost."))).toMatchObject({ kind: "failing" });
  });
});

// Destinations in the API: GET /v1/destinations, pause and resume, and the per-destination filters
// of dead letters, deliveries, retries and purges (docs/api-destinations.md).
import { describe, expect, it } from "vitest";
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { app } from "../src/app";
import { histogramPercentile, MAX_ROWS } from "../src/queries/destinations";
import { LATENCY_BOUNDS_MS } from "../src/ops/conversation-index";
import { ADMIN_TOKEN, api, unique } from "./support/callbacks";
import { deadLettersAtBoth, destinationRow, iso, latencies } from "./support/destination-rows";
import { newConversation } from "./support/receipts";
import { TEST_FORWARD_SECRET } from "./support/settings";

/** One API request through the app with these settings or bindings instead of the test ones. */
function call(path: string, init: RequestInit = {}, overrides: Record<string, unknown> = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
  headers.set("cf-connecting-ip", `2001:db8::${crypto.randomUUID().slice(0, 4)}`);
  return Promise.resolve(app.fetch(new Request(`http://relay.test${path}`, { ...init, headers }), { ...env, ...overrides }, createExecutionContext()));
}

/** A name no other test uses (the paused state and the index are shared by the file). */
const nameOf = (stem: string) => `${stem}-${crypto.randomUUID().slice(0, 8)}`;

/** DESTINATIONS with `crm` (its URL with a path and a query the API must not show) and a misconfigured one. */
const configured = (crm: string, broken: string) => ({
  DESTINATIONS: JSON.stringify([
    { name: crm, url: "https://crm.example:8443/hooks/receipts?token=s3cret", secret: "FORWARD_SECRET_CRM" },
    { name: broken, secret: "FORWARD_SECRET_CRM" },
  ]),
  FORWARD_SECRET_CRM: TEST_FORWARD_SECRET,
});

const Latency = z.object({ p50Ms: z.number().nullable(), p95Ms: z.number().nullable(), deliveries: z.number() });
const View = z.object({
  name: z.string(),
  state: z.enum(["active", "paused", "misconfigured", "removed"]),
  reason: z.string().optional(),
  setting: z.string().optional(),
  host: z.string().nullable(),
  pausedSince: z.string().optional(),
  backlog: z.number(),
  failingConversations: z.number(),
  deadLetters: z.number(),
  lastDeliveryAt: z.string().nullable(),
  lastError: z.string().nullable(),
  latency: Latency,
});
const Overview = z.object({
  generatedAt: z.string(),
  destinations: z.array(View),
  unrouted: z.number().nullable(),
  index: z.union([
    z.object({ state: z.literal("on"), rows: z.number(), truncated: z.literal(true).optional() }),
    z.object({ state: z.literal("unavailable"), reason: z.string() }),
  ]),
  control: z.object({ state: z.enum(["on", "unbound", "unavailable"]), reason: z.string().optional() }),
});

async function overview(overrides: Record<string, unknown> = {}) {
  const response = await call("/v1/destinations", {}, overrides);
  expect(response.status).toBe(200);
  return Overview.parse(await response.json());
}
const named = (body: z.infer<typeof Overview>, name: string) => {
  const found = body.destinations.find((destination) => destination.name === name);
  if (!found) throw new Error(`no destination ${name} in ${body.destinations.map((destination) => destination.name).join(", ")}`);
  return found;
};

describe("histogram percentiles (pure)", () => {
  it("answer the upper bound of the bucket holding the nearest rank; the last bound past it; null for none", () => {
    expect(histogramPercentile(latencies(), 0.5)).toBeNull();
    expect(histogramPercentile(latencies([100, 1]), 0.95)).toBe(100);
    expect(histogramPercentile(latencies([50, 50], [1000, 50]), 0.5)).toBe(50);
    expect(histogramPercentile(latencies([50, 50], [1000, 50]), 0.51)).toBe(1000);
    expect(histogramPercentile(latencies([50, 1], [Infinity, 99]), 0.95)).toBe(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]);
    expect(MAX_ROWS).toBe(10_000);
  });
});

describe("GET /v1/destinations", () => {
  it("lists the configured destinations in order, then those only the index names, with their figures summed over the index", async () => {
    const crm = nameOf("crm");
    const broken = nameOf("broken");
    const gone = nameOf("gone");
    const now = Date.now();
    const key = (tag: string) => unique(`tencent:1400000001:g:dest-${tag}-`);
    await destinationRow(
      key("a"),
      {
        [crm]: {
          pending: 2,
          failed: 3,
          oldestFailedAt: iso(now - 900_000),
          lastError: "crm answered 500",
          lastDeliveredAt: iso(now - 60_000),
          latency: latencies([100, 8], [500, 1], [5000, 1]),
        },
        origin: { lastDeliveredAt: iso(now - 1000) },
      },
      now,
      { unrouted: 3 },
    );
    await destinationRow(
      key("b"),
      { [crm]: { pending: 1, lastDeliveredAt: iso(now - 30_000), latency: latencies([200, 10]) }, [gone]: { failed: 1, lastError: "gone away" } },
      now,
    );
    // Written two hours ago: its dead letter counts, its error is not the latest, its histogram is out of the hour.
    await destinationRow(key("c"), { [crm]: { failed: 1, lastError: "an older error", latency: latencies([60_000, 100]) } }, now - 7_200_000);

    const body = await overview(configured(crm, broken));
    expect(body.destinations.map((destination) => destination.name).slice(0, 3)).toEqual(["origin", crm, broken]);
    expect(body.destinations.findIndex((destination) => destination.name === gone)).toBeGreaterThan(2);
    expect(named(body, "origin")).toMatchObject({ state: "active", host: new URL(env.ORIGIN_URL).host });
    expect(named(body, crm)).toEqual({
      name: crm,
      state: "active",
      host: "crm.example:8443",
      backlog: 3,
      failingConversations: 2,
      deadLetters: 4,
      lastDeliveryAt: iso(now - 30_000),
      lastError: "crm answered 500",
      // 8 at 100 ms, 10 at 200, 1 at 500, 1 at 5000: the 10th is in the 200 ms bucket, the 19th in the 500 ms one.
      latency: { p50Ms: 200, p95Ms: 500, deliveries: 20 },
    });
    expect(named(body, broken)).toMatchObject({
      state: "misconfigured",
      setting: "DESTINATIONS",
      reason: expect.stringContaining("url is missing"),
      host: null,
    });
    expect(named(body, gone)).toMatchObject({ state: "removed", host: null, deadLetters: 1, failingConversations: 1, lastError: "gone away" });
    expect(named(body, gone).latency).toEqual({ p50Ms: null, p95Ms: null, deliveries: 0 });
    expect(body.unrouted).toBeGreaterThanOrEqual(3);
    expect(body.index).toMatchObject({ state: "on" });
    expect(body.control).toEqual({ state: "on" });
    expect(JSON.stringify(body)).not.toContain("s3cret");
    expect(JSON.stringify(body)).not.toContain("/hooks/receipts");
  });

  it("answers configuration and pause state without the index, saying why", async () => {
    const unmigrated = await overview({ DB: (env as unknown as { UNMIGRATED_DB: D1Database }).UNMIGRATED_DB });
    expect(unmigrated.index).toMatchObject({ state: "unavailable", reason: expect.stringContaining("migrations") });
    expect(unmigrated.unrouted).toBeNull();
    expect(named(unmigrated, "origin")).toMatchObject({ state: "active", backlog: 0, deadLetters: 0 });
    const off = await overview({ DB: undefined });
    expect(off.index).toMatchObject({ state: "unavailable", reason: expect.stringContaining("DB") });
  });

  it("401 without the token", async () => {
    expect((await api("/v1/destinations", {}, null)).status).toBe(401);
  });
});

describe("POST /v1/destinations/<name>/pause and /resume", () => {
  it("pauses a configured destination (its since kept by a second pause), shows it paused, and resumes it", async () => {
    const crm = nameOf("crm");
    const settings = configured(crm, nameOf("broken"));
    const paused = await call(`/v1/destinations/${crm}/pause`, { method: "POST" }, settings);
    expect(paused.status).toBe(200);
    const body = z.object({ name: z.string(), state: z.string(), pausedSince: z.string() }).parse(await paused.json());
    expect(body).toMatchObject({ name: crm, state: "paused" });
    expect(named(await overview(settings), crm)).toMatchObject({ state: "paused", pausedSince: body.pausedSince });
    const again = await (await call(`/v1/destinations/${crm}/pause`, { method: "POST" }, settings)).json();
    expect(again).toEqual(body);

    const resumed = await call(`/v1/destinations/${crm}/resume`, { method: "POST" }, settings);
    expect(resumed.status).toBe(200);
    expect(await resumed.json()).toEqual({ name: crm, state: "active" });
    const view = named(await overview(settings), crm);
    expect(view.state).toBe("active");
    expect(view.pausedSince).toBeUndefined();
  });

  it("pauses a destination only the index names (removed), which stays removed", async () => {
    const gone = nameOf("gone");
    await destinationRow(unique("tencent:1400000001:g:dest-gone-"), { [gone]: { failed: 2, lastError: "x" } }, Date.now());
    const paused = await call(`/v1/destinations/${gone}/pause`, { method: "POST" });
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ name: gone, state: "removed", pausedSince: expect.any(String) });
    expect(named(await overview(), gone)).toMatchObject({ state: "removed", pausedSince: expect.any(String) });
    expect(await (await call(`/v1/destinations/${gone}/resume`, { method: "POST" })).json()).toEqual({ name: gone, state: "removed" });
  });

  it("404 destination_not_found for a name neither configured nor in the index", async () => {
    for (const name of [nameOf("nowhere"), "Not_A_Name"]) {
      const response = await call(`/v1/destinations/${name}/pause`, { method: "POST" });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "destination_not_found" } });
    }
  });

  it("503 naming the fix without the DESTINATION_CONTROL binding; GET still answers", async () => {
    const response = await call("/v1/destinations/origin/pause", { method: "POST" }, { DESTINATION_CONTROL: undefined });
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      error: { code: "destination_control_unbound", message: expect.stringMatching(/DESTINATION_CONTROL[\s\S]*migrations/) },
    });
    const body = await overview({ DESTINATION_CONTROL: undefined });
    expect(body.control).toMatchObject({ state: "unbound", reason: expect.stringContaining("DESTINATION_CONTROL") });
    expect(named(body, "origin").state).toBe("active");
  });

  it("401 without the token", async () => {
    expect((await api("/v1/destinations/origin/pause", { method: "POST" }, null)).status).toBe(401);
  });
});

const Row = z.object({
  conversation: z.string(),
  failed: z.number(),
  destination: z.object({ name: z.string(), failed: z.number(), lastError: z.string().nullable() }).optional(),
});
const Page = z.object({ conversations: z.array(Row), cursor: z.string().optional() });

describe("GET /v1/dead-letters?destination=", () => {
  it("lists the conversations with dead letters of that destination only, each with its part", async () => {
    const crm = nameOf("crm");
    const prefix = unique("tencent:1400000001:g:dl-dest-") + "-";
    const now = Date.now();
    await destinationRow(`${prefix}1`, { [crm]: { failed: 2, lastError: "crm refused" }, origin: { failed: 1, lastError: "origin refused" } }, now);
    await destinationRow(`${prefix}2`, { origin: { failed: 1, lastError: "origin refused" } }, now);
    await destinationRow(`${prefix}3`, { [crm]: { pending: 4 } }, now);
    await destinationRow(`${prefix}4`, { [crm]: { failed: 1, lastError: "crm refused" } }, now);

    const first = Page.parse(await (await api(`/v1/dead-letters?destination=${crm}&prefix=${encodeURIComponent(prefix)}&limit=1`)).json());
    expect(first.conversations).toEqual([
      {
        ...first.conversations[0],
        conversation: `${prefix}1`,
        failed: 3,
        destination: expect.objectContaining({ name: crm, failed: 2, lastError: "crm refused" }),
      },
    ]);
    expect(first.cursor).toBeDefined();
    const rest = Page.parse(await (await api(`/v1/dead-letters?destination=${crm}&prefix=${encodeURIComponent(prefix)}&cursor=${first.cursor}`)).json());
    expect(rest.conversations.map((row) => row.conversation)).toEqual([`${prefix}4`]);
    expect(rest.cursor).toBeUndefined();

    const every = Page.parse(await (await api(`/v1/dead-letters?prefix=${encodeURIComponent(prefix)}`)).json());
    expect(every.conversations.map((row) => row.conversation)).toEqual([1, 2, 4].map((n) => `${prefix}${n}`));
  });

  it("400 naming the parameter for a name no destination can have", async () => {
    const response = await api("/v1/dead-letters?destination=Not_A_Name");
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_query", message: expect.stringContaining("destination") } });
  });
});

const Deliveries = z.object({
  deliveries: z.array(z.object({ receiptId: z.string(), destination: z.string(), status: z.string(), seq: z.number() })),
  after: z.number().optional(),
});
const pathOf = (conversation: string, rest: string) => `/v1/conversations/${encodeURIComponent(conversation)}/${rest}`;

describe("one conversation's deliveries, per destination", () => {
  it("lists, retries and purges the dead letters of one destination", async () => {
    const conversation = newConversation();
    await deadLettersAtBoth(conversation, 2);
    const ids = [1, 2].map((n) => `test:${conversation}:${n}`);

    const all = Deliveries.parse(await (await api(`${pathOf(conversation, "deliveries")}?status=failed`)).json());
    // One entry per receipt and destination, a receipt's destinations together.
    expect(all.deliveries.map((delivery) => delivery.receiptId)).toEqual([ids[0], ids[0], ids[1], ids[1]]);
    const crmOnly = Deliveries.parse(await (await api(`${pathOf(conversation, "deliveries")}?status=failed&destination=crm`)).json());
    expect(crmOnly.deliveries.map((delivery) => [delivery.receiptId, delivery.destination])).toEqual(ids.map((id) => [id, "crm"]));
    // A page of 1 stops after a whole receipt: both of its destinations, then `after`.
    const page = Deliveries.parse(await (await api(`${pathOf(conversation, "deliveries")}?status=failed&limit=1`)).json());
    expect(page.deliveries.map((delivery) => delivery.receiptId)).toEqual([ids[0], ids[0]]);
    expect(page.after).toBe(page.deliveries[0]!.seq);

    const retried = await api(pathOf(conversation, "deliveries/retry"), { method: "POST", body: JSON.stringify({ destination: "crm" }) });
    expect(await retried.json()).toEqual({ conversation, destination: "crm", requeued: 2 });
    const left = Deliveries.parse(await (await api(`${pathOf(conversation, "deliveries")}?status=failed`)).json());
    expect(left.deliveries.map((delivery) => delivery.destination)).toEqual(["origin", "origin"]);

    const purged = await api(`/v1/dead-letters?destination=origin&conversation=${encodeURIComponent(conversation)}`, { method: "DELETE" });
    expect(purged.status).toBe(200);
    expect(await purged.json()).toEqual({ conversation, destination: "origin", purged: 2 });
    expect(Deliveries.parse(await (await api(`${pathOf(conversation, "deliveries")}?status=failed&destination=origin`)).json()).deliveries).toEqual([]);
    const skipped = Deliveries.parse(await (await api(`${pathOf(conversation, "deliveries")}?status=skipped&destination=origin`)).json());
    expect(skipped.deliveries.map((delivery) => delivery.receiptId)).toEqual(ids);
  });

  it("400 for a bad destination in a retry, 404 purging a conversation never seen, 400 without the purge's parameters", async () => {
    const conversation = newConversation();
    const bad = await api(`${pathOf(conversation, "deliveries/retry")}?destination=Not_A_Name`, { method: "POST" });
    expect(bad.status).toBe(400);
    const notJson = await api(pathOf(conversation, "deliveries/retry"), { method: "POST", body: "{" });
    expect(notJson.status).toBe(400);
    const never = await api(`/v1/dead-letters?destination=origin&conversation=${encodeURIComponent(conversation)}`, { method: "DELETE" });
    expect(never.status).toBe(404);
    const missing = await api("/v1/dead-letters?destination=origin", { method: "DELETE" });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: { code: "invalid_query", message: expect.stringContaining("conversation") } });
  });
});

describe("GET /v1/stats", () => {
  it("sums the rows' unrouted receipts", async () => {
    await destinationRow(unique("tencent:1400000001:g:unrouted-"), {}, Date.now(), { unrouted: 7 });
    const stats = z.object({ unrouted: z.number() }).parse(await (await api("/v1/stats")).json());
    expect(stats.unrouted).toBeGreaterThanOrEqual(7);
  });
});

// Alerts: the pure decisions (what to alert, digests, Slack) and one evaluation through `scheduled`
// with D1 rows, POSTing a signed alert to the test origin's alert recorder.
import { describe, expect, it } from "vitest";
import { summary } from "./support/destination-rows";
import { createExecutionContext, createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { inject } from "vitest";
import { z } from "zod";
import { app } from "../src/app";
import worker from "../src/index";
import { fromBase64 } from "../src/crypto/encoding";
import { signWebhook } from "../src/delivery/webhook";
import {
  ALERT_COOLDOWN_MS,
  alertBody,
  alertId,
  alertRequest,
  deadLetterWindow,
  destinationsToEvaluate,
  DIGEST_KEYS,
  FIRST_WINDOW_MS,
  indexLagMs,
  nextState,
  observe,
  planAlerts,
  readAlertState,
  runAlerts,
  slackCode,
  slackText,
  summarizeStates,
  type AlertState,
  type Digest,
  type Group,
  type Observation,
} from "../src/ops/alerts";
import { alertingOf, parseSettings } from "../src/settings";
import { singleConversationKey } from "../src/receipt";
import { unique } from "./support/callbacks";
import { TEST_FORWARD_SECRET } from "./support/settings";
import "./support/provided-context";
import { indexRow, iso } from "./support/index-rows";
import type { DestinationSummary } from "../src/ops/conversation-index";

const none: Group = { conversations: 0, total: 0, keys: [], errors: [] };
const some = (n: number, errors: string[] = []): Group => ({
  conversations: n,
  total: n * 2,
  keys: Array.from({ length: Math.min(n, DIGEST_KEYS) }, (_, i) => `tencent:1400000001:u:k${i}`),
  errors,
});
const NOW = Date.UTC(2030, 0, 1, 12, 0, 0);
const WINDOW = { since: NOW - 180_000, cutoff: NOW - 120_000 };
const AFTER = 300;
const kinds = (observation: Observation, state?: AlertState, now = NOW) => planAlerts(state, observation, now, WINDOW, AFTER).map((alert) => alert.kind);

describe("what to alert (pure)", () => {
  it("the first evaluation looks one minute back from the cutoff, which trails now by the index lag", () => {
    expect(indexLagMs(1)).toBe(120_000);
    expect(indexLagMs(300)).toBe(360_000);
    expect(deadLetterWindow(undefined, NOW, 120_000)).toEqual({ since: NOW - 120_000 - FIRST_WINDOW_MS, cutoff: NOW - 120_000 });
  });

  it("sends a dead_letter digest with at most 20 keys, the rest counted, and distinct errors", () => {
    const [alert, ...rest] = planAlerts(undefined, { deadLetters: some(25, ["a", "a", "b"]), stuck: none }, NOW, WINDOW, AFTER);
    expect(rest).toEqual([]);
    expect(alert).toMatchObject({ kind: "dead_letter", conversations: 25, total: 50, moreKeys: 5, errors: ["a", "b"] });
    expect(alert?.keys).toHaveLength(20);
    expect(alert?.since).toBe(new Date(WINDOW.since).toISOString());
  });

  it("coalesces: at most one alert per kind per 15 minutes, and keeps the dead-letter window open meanwhile", () => {
    const observation = { deadLetters: some(1), stuck: none };
    const sent = nextState(undefined, observation, NOW, WINDOW, new Set(["dead_letter"]));
    expect(sent).toMatchObject({ deadLetterSince: WINDOW.cutoff, sentAt: { dead_letter: NOW } });
    const later = NOW + 5 * 60_000;
    expect(kinds(observation, sent, later)).toEqual([]);
    const held = nextState(sent, observation, later, { since: WINDOW.cutoff, cutoff: later - 120_000 }, new Set());
    expect(held.deadLetterSince).toBe(WINDOW.cutoff);
    expect(kinds(observation, held, NOW + ALERT_COOLDOWN_MS)).toEqual(["dead_letter"]);
  });

  it("moves the window on when nothing is waiting, and keeps it after a failed POST", () => {
    expect(nextState(undefined, { deadLetters: none, stuck: none }, NOW, WINDOW, new Set()).deadLetterSince).toBe(WINDOW.cutoff);
    const failed = nextState(undefined, { deadLetters: some(2), stuck: none }, NOW, WINDOW, new Set());
    expect(failed).toMatchObject({ deadLetterSince: WINDOW.since, sentAt: { dead_letter: null } });
  });

  it("raises origin_failing while conversations are stuck, then sends recovered once none is and a delivery succeeded", () => {
    const failing = { deadLetters: none, stuck: some(3, ["destination answered 503"]) };
    expect(kinds(failing)).toEqual(["origin_failing"]);
    const raised = nextState(undefined, failing, NOW, WINDOW, new Set(["origin_failing"]));
    expect(raised.failingRaised).toBe(true);
    // Reminded every 15 minutes while it holds.
    expect(kinds(failing, raised, NOW + 60_000)).toEqual([]);
    expect(kinds(failing, raised, NOW + ALERT_COOLDOWN_MS)).toEqual(["origin_failing"]);
    // Nothing stuck because the stuck receipts became dead letters, the origin still down: not recovered.
    expect(kinds({ deadLetters: some(3), stuck: none, lastDeliveredAt: NOW - 3_600_000 }, raised, NOW + 60_000)).toEqual(["dead_letter"]);
    expect(kinds({ deadLetters: none, stuck: none, lastDeliveredAt: null }, raised, NOW + 60_000)).toEqual([]);
    const healthy = { deadLetters: none, stuck: none, lastDeliveredAt: NOW + 30_000 };
    expect(kinds(healthy, raised, NOW + 60_000)).toEqual(["recovered"]);
    const recovered = nextState(raised, healthy, NOW + 60_000, WINDOW, new Set(["recovered"]));
    expect(recovered.failingRaised).toBe(false);
    expect(kinds(healthy, recovered, NOW + 120_000)).toEqual([]);
    // Never raised: nothing to recover from.
    expect(kinds(healthy)).toEqual([]);
  });

  it("writes Standard Webhooks bodies, alert ids and Slack text", () => {
    const [alert] = planAlerts(undefined, { deadLetters: some(21, ["destination answered 400"]), stuck: none }, NOW, WINDOW, AFTER);
    const body = JSON.parse(alertBody(alert!));
    expect(body).toMatchObject({ type: "alert.dead_letter", timestamp: new Date(NOW).toISOString(), data: { conversations: 21, total: 42, moreKeys: 1 } });
    expect(alertId(alert!)).toBe(`alert:dead_letter:${NOW / 1000}`);
    const text = slackText(alert!);
    expect(text).toContain("21 conversation(s) with new dead letters (42 dead letters in all)");
    expect(text).toContain("and 1 more");
    expect(text).toContain("destination answered 400");
    const [failing] = planAlerts(undefined, { deadLetters: none, stuck: some(1) }, NOW, WINDOW, AFTER);
    expect(slackText(failing!)).toContain("more than 300 s");
  });

  it("signs standard alerts; Slack's {text} goes unsigned", async () => {
    const [alert] = planAlerts(undefined, { deadLetters: some(1), stuck: none }, NOW, WINDOW, AFTER);
    const key = fromBase64(TEST_FORWARD_SECRET.slice("whsec_".length))!;
    const base = { state: "on" as const, url: "https://alerts.example/hook", keys: [key], afterSeconds: AFTER, timeoutMs: 1000 };
    const standard = await alertRequest({ ...base, format: "standard" }, alert!);
    expect(standard.headers["webhook-id"]).toBe(`alert:dead_letter:${NOW / 1000}`);
    expect(standard.headers["webhook-signature"]).toBe(await signWebhook(key, standard.headers["webhook-id"]!, NOW / 1000, standard.body));
    const slack = await alertRequest({ ...base, format: "slack" }, alert!);
    expect(slack.headers["webhook-signature"]).toBeUndefined();
    expect(JSON.parse(slack.body)).toEqual({ text: slackText(alert!) });
  });
});

describe("alert settings", () => {
  it("are off without ALERT_URL, with defaults otherwise; the forward secret signs by default", () => {
    expect(alertingOf(parseSettings({}))).toEqual({ state: "off", reason: "ALERT_URL is not set" });
    const on = alertingOf(parseSettings({ ALERT_URL: "https://alerts.example/hook", FORWARD_SECRET: TEST_FORWARD_SECRET }));
    expect(on).toMatchObject({ state: "on", format: "standard", afterSeconds: 300 });
    expect(on.state === "on" && on.keys).toHaveLength(1);
  });

  it("a malformed alert setting turns off alerts only, and shows in the problems", () => {
    const result = parseSettings({ ALERT_URL: "https://alerts.example/hook", ALERT_FORMAT: "teams", FORWARD_SECRET: TEST_FORWARD_SECRET });
    expect(result.problems).toEqual([{ setting: "ALERT_FORMAT", feature: "alerts", problem: "must be standard or slack" }]);
    expect(alertingOf(result)).toEqual({ state: "off", reason: "setting ALERT_FORMAT must be standard or slack" });
    const unsigned = parseSettings({ ALERT_URL: "https://alerts.example/hook" });
    expect(unsigned.problems.map((problem) => problem.setting)).toEqual(["ALERT_SECRET"]);
    expect(alertingOf(parseSettings({ ALERT_URL: "https://hooks.slack.example/x", ALERT_FORMAT: "slack" }))).toMatchObject({ state: "on", keys: [] });
    expect(alertingOf(parseSettings({ ALERT_URL: "https://a.example", ALERT_AFTER_SECONDS: "5", FORWARD_SECRET: TEST_FORWARD_SECRET })).state).toBe("off");
  });
});

const Recorded = z.array(z.object({ headers: z.record(z.string(), z.string()), body: z.string() }));
const alertsUrl = (query = "") => `http://127.0.0.1:${inject("controlPort")}/alerts${query}`;
async function recorded(id: string) {
  const all = Recorded.parse(await (await fetch(alertsUrl())).json());
  return all.filter((alert) => alert.headers["webhook-id"] === id);
}

async function runScheduled(at: number, overrides: Record<string, string>): Promise<void> {
  await worker.scheduled(createScheduledController({ scheduledTime: at, cron: "* * * * *" }), { ...env, ...overrides } as Env);
}

describe("the Cron Trigger", () => {
  // Far in the future, so that rows other tests write (at today's times) fall outside the windows.
  const T = Date.UTC(2100, 0, 1, 0, 0, 0) + Math.floor(Math.random() * 1000) * 3_600_000;
  const lag = indexLagMs(Number(env.SNAPSHOT_INTERVAL_SECONDS));

  it("POSTs a signed dead_letter digest and an origin_failing one, and records the state in D1", async () => {
    await env.DB.prepare("DELETE FROM alert_state").run();
    const dead = unique("tencent:1400000001:u:alert-dead-");
    const stuck = unique("tencent:1400000001:u:alert-stuck-");
    await indexRow(dead, { failed: 2, oldest_failed_at: iso(T - lag - 30_000), last_error: "destination answered 400: nope" }, T - lag);
    await indexRow(stuck, { pending: 4, last_receipt_at: iso(T - 3_600_000) }, T - 3_600_000);
    await runScheduled(T, { ALERT_URL: alertsUrl() });

    const [alert] = await recorded(`alert:dead_letter:${T / 1000}`);
    expect(alert).toBeDefined();
    const key = fromBase64(TEST_FORWARD_SECRET.slice("whsec_".length))!;
    expect(alert!.headers["webhook-signature"]).toBe(await signWebhook(key, `alert:dead_letter:${T / 1000}`, T / 1000, alert!.body));
    expect(alert!.headers["webhook-timestamp"]).toBe(String(T / 1000));
    expect(JSON.parse(alert!.body)).toMatchObject({
      type: "alert.dead_letter",
      data: { conversations: 1, total: 2, keys: [dead], errors: ["destination answered 400: nope"] },
    });
    const [failing] = await recorded(`alert:origin_failing:${T / 1000}`);
    expect(JSON.parse(failing!.body)).toMatchObject({ type: "alert.origin_failing", data: { afterSeconds: 300 } });
    expect(JSON.parse(failing!.body).data.conversations).toBeGreaterThanOrEqual(1);

    const state = await readAlertState(env.DB);
    expect(state).toMatchObject({ checkedAt: T, deadLetterSince: T - lag, failingRaised: true, sentAt: { dead_letter: T, origin_failing: T } });
  });

  it("looks up the latest delivery only while origin_failing is raised", async () => {
    const delivered = unique("tencent:1400000001:u:alert-delivered-");
    await indexRow(delivered, { last_delivered_at: iso(T + 5_000), last_latency_ms: 12 }, T + 5_000);
    const windows = { cutoff: T, since: {}, defaultSince: T - 120_000 };
    expect((await observe(env.DB, windows, T + 10_000, 300)).origin?.lastDeliveredAt ?? null).toBeNull();
    expect((await observe(env.DB, windows, T + 10_000, 300, { origin: null })).origin?.lastDeliveredAt).toBeGreaterThanOrEqual(T + 5_000);
  });

  it("a failed alert changes nothing, and the next minute sends it", async () => {
    await env.DB.prepare("DELETE FROM alert_state").run();
    const T2 = T + 86_400_000;
    const dead = unique("tencent:1400000001:u:alert-retry-");
    await indexRow(dead, { failed: 1, oldest_failed_at: iso(T2 - lag - 10_000), last_error: "destination answered 410" }, T2 - lag);
    await runScheduled(T2, { ALERT_URL: alertsUrl("?status=500") });
    expect(await recorded(`alert:dead_letter:${T2 / 1000}`)).toHaveLength(1);
    const held = await readAlertState(env.DB);
    expect(held).toMatchObject({ deadLetterSince: T2 - lag - FIRST_WINDOW_MS, sentAt: { dead_letter: null } });

    await runScheduled(T2 + 60_000, { ALERT_URL: alertsUrl() });
    const [retried] = await recorded(`alert:dead_letter:${T2 / 1000 + 60}`);
    expect(JSON.parse(retried!.body).data.keys).toEqual([dead]);
    expect(await readAlertState(env.DB)).toMatchObject({ deadLetterSince: T2 + 60_000 - lag, sentAt: { dead_letter: T2 + 60_000 } });
  });

  it("does nothing while ALERT_URL is unset", async () => {
    await env.DB.prepare("DELETE FROM alert_state").run();
    await runScheduled(T + 2 * 86_400_000, {});
    expect(await readAlertState(env.DB)).toBeUndefined();
  });
});

describe("/healthz shows alerts", () => {
  const health = async (overrides: Record<string, string>) =>
    (await app.fetch(new Request("http://relay.test/healthz"), { ...env, ...overrides }, createExecutionContext())).json();

  it("off without ALERT_URL, on with its format, and off with the problem when a setting is malformed", async () => {
    expect(await health({})).toMatchObject({ status: "ok", alerts: { state: "off", reason: "ALERT_URL is not set" } });
    expect(await health({ ALERT_URL: "https://hooks.slack.example/x", ALERT_FORMAT: "slack" })).toMatchObject({
      status: "ok",
      alerts: { state: "on", format: "slack" },
    });
    expect(await health({ ALERT_URL: "https://alerts.example/hook", ALERT_AFTER_SECONDS: "soon" })).toMatchObject({
      status: "degraded",
      alerts: { state: "off", reason: "setting ALERT_AFTER_SECONDS must be a whole number" },
      problems: [{ setting: "ALERT_AFTER_SECONDS", feature: "alerts", problem: "must be a whole number" }],
    });
  });
});

describe("Slack text is data (issue 18, finding 5)", () => {
  // A Stream user id that, echoed by the origin into an error, made a real alert mention
  // @channel and show a link outside its code span.
  const USER = "x`<!channel> <https://evil.example|click>`";
  const T3 = Date.UTC(2100, 6, 1, 0, 0, 0) + Math.floor(Math.random() * 1000) * 3_600_000;
  const lag = indexLagMs(Number(env.SNAPSHOT_INTERVAL_SECONDS));

  /** What Slack would turn into markup: a mention, a link, or a code span closed early. */
  function expectNoMarkup(text: string): void {
    expect(text).not.toContain("<!channel>");
    expect(text).not.toMatch(/<[^>]*>/);
    expect(text).not.toContain("<https://");
    // Every code span opens and closes on its own: an even number of backticks per line.
    for (const line of text.split("\n")) expect((line.match(/`/g) ?? []).length % 2).toBe(0);
  }

  it("escapes &, < and > and keeps backticks and line breaks from closing a code span", () => {
    expect(slackCode(USER)).toBe("`x\u02cb&lt;!channel&gt; &lt;https://evil.example|click&gt;\u02cb`");
    expect(slackCode("a & b\n<@U123>")).toBe("`a &amp; b &lt;@U123&gt;`");
    const [alert] = planAlerts(undefined, { deadLetters: some(1, [`destination answered 400: unknown user ${USER}`]), stuck: none }, NOW, WINDOW, AFTER);
    expectNoMarkup(slackText({ ...alert!, keys: [USER] }));
  });

  it("the payload goes through the Cron Trigger into the Slack body as text", async () => {
    await env.DB.prepare("DELETE FROM alert_state").run();
    const key = singleConversationKey("stream", "app", USER, unique("bob-"));
    await indexRow(key, { failed: 1, oldest_failed_at: iso(T3 - lag - 30_000), last_error: `destination answered 400: unknown user ${USER}` }, T3 - lag);
    await runScheduled(T3, { ALERT_URL: alertsUrl(), ALERT_FORMAT: "slack" });
    const all = Recorded.parse(await (await fetch(alertsUrl())).json());
    const slack = all
      .map((alert) => z.object({ text: z.string() }).safeParse(JSON.parse(alert.body)))
      .find((body) => body.success && body.data.text.includes(key));
    expect(slack?.success).toBe(true);
    const text = slack?.data?.text ?? "";
    expect(text).toContain("unknown user x\u02cb&lt;!channel&gt; &lt;https://evil.example|click&gt;\u02cb");
    expectNoMarkup(text);
  });
});

describe("alerts per destination (pure)", () => {
  it("names the destination in digests, bodies, webhook ids and Slack text; origin keeps its ids", () => {
    const [dead, failing] = planAlerts(undefined, { deadLetters: some(2, ["answered 500"]), stuck: some(1) }, NOW, WINDOW, AFTER, "billing");
    expect(dead).toMatchObject({ kind: "dead_letter", destination: "billing", conversations: 2 });
    expect(failing).toMatchObject({ kind: "origin_failing", destination: "billing", afterSeconds: AFTER });
    expect(JSON.parse(alertBody(failing!))).toMatchObject({
      type: "alert.origin_failing",
      data: { title: "deliveries to billing are failing", destination: "billing", conversations: 1 },
    });
    expect(alertId(dead!)).toBe(`alert:dead_letter:billing:${NOW / 1000}`);
    expect(alertId({ ...dead!, destination: "origin" })).toBe(`alert:dead_letter:${NOW / 1000}`);
    expect(slackText(dead!)).toContain("receipt-relay: `billing`: 2 conversation(s) with new dead letters");
    expect(slackText(failing!)).toContain("deliveries to `billing` failing for more than 300 s");
    // Without a destination, a digest is the origin's, as before destinations.
    expect(planAlerts(undefined, { deadLetters: some(1), stuck: none }, NOW, WINDOW, AFTER)[0]?.destination).toBe("origin");
  });

  it("evaluates the configured destinations (origin when unknown), those with state, and any the index shows something for", () => {
    const quiet = { deadLetters: none, stuck: none };
    expect(destinationsToEvaluate(undefined, [], {})).toEqual(["origin"]);
    expect(destinationsToEvaluate(undefined, ["b"], { c: quiet, d: { deadLetters: some(1), stuck: none } })).toEqual(["b", "d", "origin"]);
    // Known configuration: a state row of a destination gone from it is dropped unless the index still shows it.
    expect(destinationsToEvaluate(["a"], ["gone", "a"], { gone: quiet, stuck: { deadLetters: none, stuck: some(1) } })).toEqual(["a", "stuck"]);
  });

  it("sums destinations' states for the dashboard: latest times, earliest window, raised when any is", () => {
    const a: AlertState = {
      checkedAt: NOW,
      deadLetterSince: NOW - 5,
      sentAt: { dead_letter: NOW - 10, origin_failing: null, recovered: null },
      failingRaised: false,
    };
    const b: AlertState = {
      checkedAt: NOW,
      deadLetterSince: NOW - 9,
      sentAt: { dead_letter: null, origin_failing: NOW - 1, recovered: null },
      failingRaised: true,
    };
    expect(summarizeStates({})).toBeUndefined();
    expect(summarizeStates({ a, b })).toEqual({
      checkedAt: NOW,
      deadLetterSince: NOW - 9,
      sentAt: { dead_letter: NOW - 10, origin_failing: NOW - 1, recovered: null },
      failingRaised: true,
      destinations: { a, b },
    });
  });
});

/** An index row with per-destination parts (`destinations` JSON) and the totals over them, as src/ops/conversation-index.ts writes them. */
async function destinationsRow(key: string, parts: Record<string, Partial<DestinationSummary>>, lastReceiptAt: number): Promise<void> {
  const full = Object.fromEntries(Object.entries(parts).map(([name, fields]) => [name, summary(fields)]));
  const all = Object.values(full);
  const earliest = (values: (string | null)[]) => values.filter((value): value is string => value !== null).sort()[0] ?? null;
  const latest = (values: (string | null)[]) =>
    values
      .filter((value): value is string => value !== null)
      .sort()
      .reverse()[0] ?? null;
  await indexRow(
    key,
    {
      last_receipt_at: iso(lastReceiptAt),
      pending: all.reduce((sum, summary) => sum + summary.pending, 0),
      failed: all.reduce((sum, summary) => sum + summary.failed, 0),
      oldest_failed_at: earliest(all.map((summary) => summary.oldestFailedAt)),
      last_error: all.find((summary) => summary.failed > 0)?.lastError ?? null,
      last_delivered_at: latest(all.map((summary) => summary.lastDeliveredAt)),
      destinations: JSON.stringify(full),
      unrouted: 0,
    },
    lastReceiptAt,
  );
}

describe("alerts per destination (the Cron Trigger)", () => {
  // Later than every other test's times, so that their rows are in none of these windows; this
  // block's destination names are its own, so that the others' rows (origin's) count for none of them.
  const T = Date.UTC(2200, 0, 1, 0, 0, 0) + Math.floor(Math.random() * 1000) * 3_600_000;
  const lag = indexLagMs(Number(env.SNAPSHOT_INTERVAL_SECONDS));
  const name = () =>
    unique("d")
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, "")
      .slice(0, 32);
  const alerting = {
    state: "on" as const,
    url: "https://alerts.example/hook",
    format: "standard" as const,
    keys: [fromBase64(TEST_FORWARD_SECRET.slice("whsec_".length))!],
    afterSeconds: AFTER,
    timeoutMs: 1000,
  };
  /** Runs one evaluation, answering `status` (per destination), and returns the POSTed alerts about `names` and what was sent. */
  async function run(at: number, names: string[], status: (destination: string) => number = () => 200) {
    const posted: { id: string; type: string; data: Record<string, unknown> }[] = [];
    const fetcher = (async (_url: string, init: RequestInit) => {
      const body = JSON.parse(String(init.body));
      posted.push({ id: new Headers(init.headers).get("webhook-id") ?? "", type: body.type, data: body.data });
      return new Response(null, { status: status(String(body.data.destination)) });
    }) as unknown as typeof fetch;
    const sent: Digest[] = await runAlerts(env.DB, alerting, Number(env.SNAPSHOT_INTERVAL_SECONDS), at, fetcher);
    return { posted: posted.filter((alert) => names.includes(String(alert.data.destination))), sent };
  }

  it("one failing destination of two: one alert each kind, for it alone; its recovery names it", async () => {
    await env.DB.prepare("DELETE FROM alert_state").run();
    const [failing, healthy] = [name(), name()];
    const stuckKey = unique("tencent:1400000001:u:dest-stuck-");
    const deadKey = unique("tencent:1400000001:u:dest-dead-");
    const at = T - 3_600_000;
    // Two conversations both for both destinations: the failing one has a stuck receipt in one and a
    // dead letter in the other; the healthy one delivers.
    await destinationsRow(stuckKey, { [failing]: { pending: 3 }, [healthy]: { lastDeliveredAt: iso(at), lastLatencyMs: 20 } }, at);
    await destinationsRow(
      deadKey,
      {
        [failing]: { failed: 2, oldestFailedAt: iso(T - lag - 30_000), lastError: "answered 503" },
        [healthy]: { lastDeliveredAt: iso(T - lag - 30_000) },
      },
      T - lag - 30_000,
    );
    const { posted } = await run(T, [failing, healthy]);
    expect(posted.map((alert) => [alert.type, alert.data.destination])).toEqual([
      ["alert.dead_letter", failing],
      ["alert.origin_failing", failing],
    ]);
    expect(posted[0]).toMatchObject({
      id: `alert:dead_letter:${failing}:${T / 1000}`,
      data: { conversations: 1, total: 2, keys: [deadKey], errors: ["answered 503"] },
    });
    expect(posted[1]).toMatchObject({ data: { title: `deliveries to ${failing} are failing`, conversations: 1, total: 3, keys: [stuckKey] } });
    const state = await readAlertState(env.DB);
    expect(state?.destinations[failing]).toMatchObject({ failingRaised: true, sentAt: { dead_letter: T, origin_failing: T } });
    expect(state?.destinations[healthy]).toBeUndefined();
    expect(state?.failingRaised).toBe(true);

    // A minute later it still fails: nothing (cooldown); then it delivers again: recovered, naming it.
    expect((await run(T + 60_000, [failing, healthy])).posted).toEqual([]);
    await destinationsRow(stuckKey, { [failing]: { lastDeliveredAt: iso(T + 90_000) }, [healthy]: { lastDeliveredAt: iso(at) } }, at);
    const recovered = (await run(T + 120_000, [failing, healthy])).posted;
    expect(recovered).toEqual([
      {
        id: `alert:recovered:${failing}:${T / 1000 + 120}`,
        type: "alert.recovered",
        data: expect.objectContaining({ destination: failing, title: `deliveries to ${failing} recovered`, conversations: 0 }),
      },
    ]);
    expect((await readAlertState(env.DB))?.destinations[failing]?.failingRaised).toBe(false);
  });

  it("two failing destinations: one alert each in the same evaluation; each has its own cooldown and state", async () => {
    await env.DB.prepare("DELETE FROM alert_state").run();
    const [a, b] = [name(), name()].sort() as [string, string];
    const key = unique("tencent:1400000001:u:dest-two-");
    const at = T + 86_400_000;
    await destinationsRow(key, { [a]: { pending: 1 }, [b]: { pending: 2 } }, at - 3_600_000);
    const first = await run(at, [a, b]);
    expect(first.posted.map((alert) => [alert.id, alert.data.destination, alert.data.total])).toEqual([
      [`alert:origin_failing:${a}:${at / 1000}`, a, 1],
      [`alert:origin_failing:${b}:${at / 1000}`, b, 2],
    ]);
    const state = await readAlertState(env.DB);
    expect(state?.destinations[a]).toMatchObject({ failingRaised: true, sentAt: { origin_failing: at } });
    expect(state?.destinations[b]).toMatchObject({ failingRaised: true, sentAt: { origin_failing: at } });

    // 15 minutes later a third one fails too: a's reminder goes out, b's and c's POSTs fail, so only a's state moves.
    const c = name();
    const later = at + ALERT_COOLDOWN_MS;
    await destinationsRow(key, { [a]: { pending: 1 }, [b]: { pending: 2 }, [c]: { pending: 1 } }, at - 3_600_000);
    const partly = await run(later, [a, b, c], (destination) => (destination === a ? 200 : 500));
    expect(partly.posted.map((alert) => alert.data.destination)).toEqual([a, b, c].sort());
    expect(partly.sent.filter((alert) => [a, b, c].includes(alert.destination)).map((alert) => alert.destination)).toEqual([a]);
    const held = await readAlertState(env.DB);
    expect(held?.destinations[a]?.sentAt.origin_failing).toBe(later);
    expect(held?.destinations[b]?.sentAt.origin_failing).toBe(at);
    expect(held?.destinations[c]).toMatchObject({ failingRaised: false, sentAt: { origin_failing: null } });
    // The next minute: b and c again (their POSTs failed), not a (cooldown).
    const retried = await run(later + 60_000, [a, b, c]);
    expect(retried.posted.map((alert) => alert.data.destination)).toEqual([b, c].sort());
  });

  it("a destination's new dead letters while another's digest waits out its cooldown still go out", async () => {
    await env.DB.prepare("DELETE FROM alert_state").run();
    const [a, b] = [name(), name()];
    const at = T + 2 * 86_400_000;
    await destinationsRow(
      unique("tencent:1400000001:u:dest-dl-a-"),
      { [a]: { failed: 1, oldestFailedAt: iso(at - lag - 10_000), lastError: "x" }, [b]: {} },
      at - lag - 10_000,
    );
    expect((await run(at, [a, b])).posted.map((alert) => alert.data.destination)).toEqual([a]);
    await destinationsRow(
      unique("tencent:1400000001:u:dest-dl-b-"),
      { [a]: { failed: 1, oldestFailedAt: iso(at + 50_000 - lag) }, [b]: { failed: 1, oldestFailedAt: iso(at + 50_000 - lag) } },
      at + 50_000 - lag,
    );
    // a's second dead letter waits (cooldown, its window held); b's goes out now.
    expect((await run(at + 60_000, [a, b])).posted.map((alert) => alert.data.destination)).toEqual([b]);
    const state = await readAlertState(env.DB);
    expect(state?.destinations[a]?.deadLetterSince).toBe(at - lag);
    expect(state?.destinations[b]?.deadLetterSince).toBe(at + 60_000 - lag);
  });

  it("through the Cron Trigger: signed with the destination's webhook id, and Slack names it", async () => {
    await env.DB.prepare("DELETE FROM alert_state").run();
    const failing = name();
    const at = T + 3 * 86_400_000;
    await destinationsRow(
      unique("tencent:1400000001:u:dest-cron-"),
      { [failing]: { failed: 1, oldestFailedAt: iso(at - lag - 5_000), lastError: "nope" }, origin: {} },
      at - lag - 5_000,
    );
    await runScheduled(at, { ALERT_URL: alertsUrl() });
    const [alert] = await recorded(`alert:dead_letter:${failing}:${at / 1000}`);
    const key = fromBase64(TEST_FORWARD_SECRET.slice("whsec_".length))!;
    expect(alert!.headers["webhook-signature"]).toBe(await signWebhook(key, `alert:dead_letter:${failing}:${at / 1000}`, at / 1000, alert!.body));
    expect(JSON.parse(alert!.body)).toMatchObject({ type: "alert.dead_letter", data: { destination: failing, title: `new dead letters for ${failing}` } });

    await env.DB.prepare("DELETE FROM alert_state").run();
    await runScheduled(at, { ALERT_URL: alertsUrl(), ALERT_FORMAT: "slack" });
    const all = Recorded.parse(await (await fetch(alertsUrl())).json());
    const texts = all.flatMap((posted) => {
      const body = z.object({ text: z.string() }).safeParse(JSON.parse(posted.body));
      return body.success && body.data.text.includes(`\`${failing}\``) ? [body.data.text] : [];
    });
    expect(texts).toHaveLength(1);
    expect(texts[0]).toContain(`:rotating_light: receipt-relay: \`${failing}\`: 1 conversation(s) with new dead letters`);
  });
});

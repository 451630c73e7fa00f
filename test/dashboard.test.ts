// The operators' dashboard (src/dashboard, docs/dashboard.md): sign-in and sessions, CSRF and CSP,
// each page over real data, replays, and the live tail's WebSocket route.
import { describe, expect, it } from "vitest";
import { createExecutionContext, runDurableObjectAlarm } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { z } from "zod";
import { app } from "../src/app";
import { SCRIPT, STYLESHEET } from "../src/dashboard/assets";
import { ActivityFigure, type DashboardStats, type SeriesPoint } from "../src/dashboard/chart";
import { PRECISION } from "../src/ops/stats";
import { livePath } from "../src/dashboard/layout";
import { sessionSetCookie, SESSION_TTL_SECONDS } from "../src/dashboard/session";
import { singleConversationKey } from "../src/receipt";
import { ADMIN_TOKEN, copy, samples, send, TENCENT_APP, tencentPath, unique } from "./support/callbacks";
import { publishNow, retryNow, runAlarm } from "./support/conversation-object";
import { indexRow } from "./support/index-rows";
import { script, waitFor } from "./support/origin-control";
import { makeReceipt, stubFor, withDeadLetters as withDeadLettersOf } from "./support/receipts";

const ORIGIN = "http://relay.test";
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

interface Call {
  method?: string;
  cookie?: string;
  /** The Origin header; null sends none. Defaults to this dashboard's own for POSTs. */
  origin?: string | null;
  form?: Record<string, string>;
  headers?: Record<string, string>;
  /** Settings or bindings to run with instead of the test ones (through app.fetch). */
  env?: Partial<Record<keyof Env, unknown>>;
}

/** One request to the dashboard, never following redirects, from a fresh client address. */
async function dashboard(path: string, { method = "GET", cookie, origin, form, headers = {}, env: overrides }: Call = {}): Promise<Response> {
  const all = new Headers({ "cf-connecting-ip": `2001:db8::${crypto.randomUUID().slice(0, 4)}`, ...headers });
  if (cookie) all.set("cookie", cookie);
  const sentOrigin = origin === undefined ? (method === "GET" ? null : ORIGIN) : origin;
  if (sentOrigin !== null) all.set("origin", sentOrigin);
  if (form) all.set("content-type", "application/x-www-form-urlencoded");
  const request = new Request(`${ORIGIN}/dashboard${path}`, {
    method,
    headers: all,
    redirect: "manual",
    ...(form ? { body: new URLSearchParams(form).toString() } : {}),
  });
  return overrides ? app.fetch(request, { ...env, ...overrides }, createExecutionContext()) : exports.default.fetch(request);
}

/** The `name=value` part of a Set-Cookie header. */
const cookiePair = (setCookie: string) => setCookie.split(";")[0] ?? "";

async function signIn(): Promise<string> {
  const response = await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN } });
  expect(response.status).toBe(303);
  return cookiePair(response.headers.get("set-cookie") ?? "");
}

async function page(path: string, cookie: string, status = 200): Promise<string> {
  const response = await dashboard(path, { cookie });
  const text = await response.text();
  expect(response.status, text.slice(0, 500)).toBe(status);
  expect(response.headers.get("content-security-policy")).toBe(CSP);
  expect(response.headers.get("cache-control")).toBe("no-store");
  return text;
}

/** The `data-testid="<id>"` element's opening tag and what follows it, up to `chars` characters. */
function after(html: string, testId: string, chars = 2000): string {
  const at = html.indexOf(`data-testid="${testId}"`);
  if (at < 0) throw new Error(`no [data-testid=${testId}] in the page`);
  return html.slice(at, at + chars);
}

/** The text of the element with this test id (its first text, tags removed). */
function textOf(html: string, testId: string): string {
  const match = new RegExp(`data-testid="${testId}"[^>]*>([^<]*)<`).exec(html);
  if (!match) throw new Error(`no text for [data-testid=${testId}]`);
  return match[1] ?? "";
}

/** The receipt rows' ids and delivery status, in page order. */
function receiptRows(html: string): { id: string; status: string }[] {
  return [...html.matchAll(/data-testid="receipt-row" data-receipt-id="([^"]*)"[\s\S]*?data-testid="delivery-status"[^>]*>([^<]*)</g)].map((match) => ({
    id: match[1] ?? "",
    status: match[2] ?? "",
  }));
}

/** The keys a "Watch these live" link (`a[data-testid=watch-page]`) names, in order; undefined without one. */
function watchedKeys(html: string): string[] | undefined {
  const href = /<a href="([^"]*)" data-testid="watch-page"/.exec(html)?.[1];
  if (href === undefined) return undefined;
  const url = new URL(unescape(href), ORIGIN);
  expect(url.pathname).toBe("/dashboard/live");
  return url.searchParams.getAll("conversation");
}

const unescape = (text: string) =>
  text.replaceAll("&amp;", "&").replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">");
const conversationUrl = (key: string) => `/conversations/${encodeURIComponent(key)}`;

/** A real, signed Tencent read receipt from `reader` to Jonh: its conversation key. */
async function tencentReceipt(reader: string, readTime: number): Promise<string> {
  const body = copy(samples.tencent.report, { Report_Account: reader, LastReadTime: readTime, EventTime: readTime * 1000 });
  const response = await send(await tencentPath("C2C.CallbackAfterMsgReport"), { json: body });
  expect(response.status).toBe(200);
  return singleConversationKey("tencent", TENCENT_APP, reader, "Jonh");
}

/** Dead letters of a conversation (test/support/receipts.ts), 1 by default here. */
const withDeadLetters = (conversation: string, receipts = 1) => withDeadLettersOf(conversation, receipts);

describe("sign-in", () => {
  it("shows the form: a password field and a button, no token in any URL", async () => {
    const response = await dashboard("/login");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-security-policy")).toBe(CSP);
    const html = await response.text();
    expect(html).toMatch(/<form method="post" action="\/dashboard\/login"/);
    expect(html).toMatch(/<input name="token" type="password"[^>]*data-testid="token"/);
    expect(html).toContain('data-testid="sign-in"');
    expect(html).toContain('<meta name="viewport"');
  });

  it("refuses a wrong token with the form again, 401, and sets no cookie", async () => {
    const response = await dashboard("/login", { method: "POST", form: { token: "not-the-admin-token" } });
    expect(response.status).toBe(401);
    expect(response.headers.get("set-cookie")).toBeNull();
    const html = await response.text();
    expect(html).toContain('data-testid="login-error"');
    expect(html).toContain('data-testid="token"');
    expect(html).not.toContain(ADMIN_TOKEN);
  });

  it("answers 429 with Retry-After after 20 failed sign-ins from one address, like the API", async () => {
    const headers = { "cf-connecting-ip": `203.0.113.${Math.floor(Math.random() * 250)}` };
    const statuses: number[] = [];
    for (let i = 0; i < 21; i++) statuses.push((await dashboard("/login", { method: "POST", form: { token: "wrong-token-0123456789" }, headers })).status);
    expect(statuses.slice(0, 20).every((status) => status === 401)).toBe(true);
    expect(statuses[20]).toBe(429);
    const limited = await dashboard("/login", { method: "POST", form: { token: "wrong-token-0123456789" }, headers });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(await limited.text()).toContain('data-testid="login-error"');
    // The right token still signs in.
    expect((await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN }, headers })).status).toBe(303);
  });

  it("sets an HttpOnly, Secure, SameSite=Strict session cookie for /dashboard, 12 hours, and goes to the overview", async () => {
    const response = await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN } });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard");
    const setCookie = response.headers.get("set-cookie") ?? "";
    const attributes = setCookie.split(";").map((part) => part.trim());
    expect(attributes[0]).toMatch(/^relay_session=v1\.\d+\.[0-9a-f]{32}\..+$/);
    expect(attributes).toEqual(expect.arrayContaining(["HttpOnly", "Secure", "SameSite=Strict", "Path=/dashboard", `Max-Age=${SESSION_TTL_SECONDS}`]));
    expect(setCookie).not.toContain(ADMIN_TOKEN);
    expect((await dashboard("", { cookie: cookiePair(setCookie) })).status).toBe(200);
  });

  it("goes back to a dashboard path given as next, and never to another site", async () => {
    const to = async (next: string) => (await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN, next } })).headers.get("location");
    expect(await to("/dashboard/dead-letters?provider=tencent")).toBe("/dashboard/dead-letters?provider=tencent");
    for (const foreign of ["https://evil.test/dashboard", "//evil.test/dashboard", "/\\evil.test", "/v1/dead-letters", "/dashboardx", "javascript:alert(1)"]) {
      expect(await to(foreign)).toBe("/dashboard");
    }
  });

  it("signs out: the cookie is cleared and the browser goes to the sign-in form", async () => {
    const cookie = await signIn();
    const response = await dashboard("/logout", { method: "POST", cookie, form: {} });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard/login");
    const cleared = response.headers.get("set-cookie") ?? "";
    expect(cleared).toMatch(/^relay_session=;/);
    expect(cleared).toContain("Max-Age=0");
    expect(cleared).toContain("Path=/dashboard");
  });

  it("answers 503 with how to turn it on while ADMIN_TOKEN is unset or malformed", async () => {
    for (const token of ["", "short"]) {
      const response = await dashboard("/login", { env: { ADMIN_TOKEN: token } });
      expect(response.status).toBe(503);
      const html = await response.text();
      expect(html).toContain('data-testid="dashboard-off"');
      expect(html).toContain("ADMIN_TOKEN");
      expect((await dashboard("", { env: { ADMIN_TOKEN: token } })).status).toBe(503);
    }
  });
});

describe("sessions", () => {
  it("sends a browser without a session to the sign-in form, coming back after", async () => {
    const overview = await dashboard("");
    expect(overview.status).toBe(303);
    expect(overview.headers.get("location")).toBe("/dashboard/login?next=%2Fdashboard");
    const filtered = await dashboard("/conversations?provider=tencent&status=failing");
    expect(filtered.headers.get("location")).toBe(`/dashboard/login?next=${encodeURIComponent("/dashboard/conversations?provider=tencent&status=failing")}`);
    const login = await dashboard("/login?next=%2Fdashboard%2Fdead-letters");
    expect(await login.text()).toContain('<input type="hidden" name="next" value="/dashboard/dead-letters"/>');
  });

  it("refuses POSTs and the replay JSON without a session (401), rather than redirecting", async () => {
    const replay = await dashboard("/replays", { method: "POST", form: {} });
    expect(replay.status).toBe(401);
    expect(await replay.text()).toContain('data-testid="signed-out"');
    const progress = await dashboard(`/replays/${crypto.randomUUID()}.json`);
    expect(progress.status).toBe(401);
    expect(await progress.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it("refuses a tampered cookie", async () => {
    const cookie = await signIn();
    const [name, value] = cookie.split("=") as [string, string];
    const decoded = decodeURIComponent(value);
    const dot = decoded.lastIndexOf(".");
    const [expiry, id] = decoded.slice(3, dot).split(".") as [string, string];
    const tampered = [
      // A later expiry with the old signature.
      `v1.${Number(expiry) + 1000}.${id}${decoded.slice(dot)}`,
      // Another signature.
      `${decoded.slice(0, dot)}.${"A".repeat(43)}=`,
      // No signature at all.
      decoded.slice(0, dot),
    ];
    for (const forged of tampered) {
      const response = await dashboard("", { cookie: `${name}=${encodeURIComponent(forged)}` });
      expect(response.status, forged).toBe(303);
      expect(response.headers.get("location")).toContain("/dashboard/login");
    }
  });

  it("refuses an expired session, and one longer than a sign-in lasts", async () => {
    for (const expiresAt of [Date.now() - 1000, Date.now() + (SESSION_TTL_SECONDS + 3600) * 1000]) {
      const cookie = cookiePair(await sessionSetCookie(ADMIN_TOKEN, expiresAt));
      expect((await dashboard("", { cookie })).status).toBe(303);
    }
    const fresh = cookiePair(await sessionSetCookie(ADMIN_TOKEN, Date.now() + 60_000));
    expect((await dashboard("", { cookie: fresh })).status).toBe(200);
  });

  it("changing ADMIN_TOKEN revokes every session", async () => {
    const cookie = await signIn();
    expect((await dashboard("", { cookie })).status).toBe(200);
    const rotated = await dashboard("", { cookie, env: { ADMIN_TOKEN: "a-new-admin-token-0123456789" } });
    expect(rotated.status).toBe(303);
    // And a session made under another token is refused under this one.
    const other = cookiePair(await sessionSetCookie("another-admin-token-0123", Date.now() + 60_000));
    expect((await dashboard("", { cookie: other })).status).toBe(303);
  });
});

describe("CSRF and headers", () => {
  it("refuses a POST from another site, or with neither Origin nor Sec-Fetch-Site", async () => {
    const cookie = await signIn();
    const foreignLogin = await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN }, origin: "https://evil.test" });
    expect(foreignLogin.status).toBe(403);
    expect(foreignLogin.headers.get("set-cookie")).toBeNull();
    expect(await foreignLogin.text()).toContain('data-testid="csrf-refused"');
    const conversation = unique("tencent:1400000001:g:csrf-");
    await withDeadLetters(conversation);
    const foreignReplay = await dashboard(`${conversationUrl(conversation)}/replay`, { method: "POST", cookie, form: {}, origin: "https://evil.test" });
    expect(foreignReplay.status).toBe(403);
    const noOrigin = await dashboard(`${conversationUrl(conversation)}/replay`, { method: "POST", cookie, form: {}, origin: null });
    expect(noOrigin.status).toBe(403);
    // Still a dead letter: nothing was replayed.
    expect(await stubFor(conversation).deliveries("failed")).toHaveLength(1);
    // A browser's same-origin form without Origin is let through on Sec-Fetch-Site.
    const sameOrigin = await dashboard(`${conversationUrl(conversation)}/replay`, {
      method: "POST",
      cookie,
      form: {},
      origin: null,
      headers: { "sec-fetch-site": "same-origin" },
    });
    expect(sameOrigin.status).toBe(303);
  });

  it("serves the stylesheet and the script under content-hashed names, cached for a year; pages have no inline script or style", async () => {
    for (const asset of [STYLESHEET, SCRIPT]) {
      expect(asset.name).toMatch(/^dashboard-[0-9a-f]{8}\.(css|js)$/);
      const response = await dashboard(`/assets/${asset.name}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe(asset.contentType);
      expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(await response.text()).toBe(asset.body);
    }
    expect((await dashboard("/assets/dashboard-00000000.js")).status).toBe(404);
    expect(STYLESHEET.body).toContain("prefers-color-scheme: dark");
    const cookie = await signIn();
    const html = await page("", cookie);
    expect(html).toContain(`<link rel="stylesheet" href="/dashboard/assets/${STYLESHEET.name}"/>`);
    expect(html).toContain(`<script src="/dashboard/assets/${SCRIPT.name}" defer=""></script>`);
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle=|<style|\son[a-z]+=/);
  });

  it("answers an unknown dashboard path with a 404 page", async () => {
    const cookie = await signIn();
    const html = await page("/nothing-here", cookie, 404);
    expect(html).toContain('data-testid="not-found"');
  });
});

describe("overview", () => {
  it("shows the providers, backlog, failing conversations, alerts and the activity of the last hour and day", async () => {
    const reader = unique("ov-");
    const conversation = await tencentReceipt(reader, Math.floor(Date.now() / 1000));
    await runAlarm(stubFor(conversation));
    await publishNow(stubFor(conversation));
    await withDeadLetters(unique("tencent:1400000001:g:overview-"));
    const cookie = await signIn();
    const html = await page("", cookie);
    for (const id of ["overview", "providers", "activity-chart", "backlog", "failing-count", "alerts", "sign-out"])
      expect(html).toContain(`data-testid="${id}"`);
    const providers = [...html.matchAll(/data-testid="provider" data-provider="([a-z]+)" data-state="([a-z]+)"/g)].map((match) => [match[1], match[2]]);
    expect(providers).toEqual(["easemob", "tencent", "openim", "stream", "sendbird"].map((name) => [name, "enabled"]));
    expect(Number(textOf(html, "failing-count"))).toBeGreaterThanOrEqual(1);
    expect(Number(textOf(html, "backlog-count"))).toBeGreaterThanOrEqual(0);
    const chart = after(html, "activity-chart", 100_000);
    expect(chart.match(/<figure data-window="(1h|24h)"/g)).toEqual(['<figure data-window="1h"', '<figure data-window="24h"']);
    expect(chart.match(/<svg /g)?.length ?? (chart.match(/no data yet/g) ?? []).length).toBe(2);
  });

  it("draws the chart from the stats' 5-minute series: 12 bars for the hour, 24 for the day; no data yet without one", () => {
    const now = Date.parse("2026-12-03T10:02:00.000Z");
    const stats = (series: SeriesPoint[] = []): DashboardStats => ({
      window: "1h",
      since: new Date(now - 3_600_000).toISOString(),
      generatedAt: new Date(now).toISOString(),
      conversations: { total: 1, withPending: 0, withDeadLetters: 0 },
      backlog: 0,
      deadLetters: 0,
      oldestPendingBefore: null,
      oldestFailureAt: null,
      activeConversations: 1,
      latencyMs: { samples: 0, p50: null, p95: null },
      callbacks: { accepted: 0, duplicates: 0, byProvider: {} },
      deliveries: { delivered: 0, retried: 0, failed: 0 },
      series,
      precision: PRECISION,
    });
    const point = (at: string, accepted: number, delivered: number, failed = 0): SeriesPoint => ({
      at,
      accepted,
      duplicates: 0,
      delivered,
      retried: 0,
      failed,
    });
    const series = [point("2026-12-03T10:00:00.000Z", 3, 2, 1), point("2026-12-03T09:10:00.000Z", 1, 1), point("2026-12-02T12:00:00.000Z", 5, 5)];
    const hour = String(ActivityFigure({ window: "1h", stats: stats(series) }));
    expect(hour.match(/<g>/g)).toHaveLength(12);
    expect(textOf(hour, "chart-total-accepted")).toBe("accepted 4");
    expect(textOf(hour, "chart-total-failed")).toBe("failed 1");
    expect(hour).toContain("<title>10:00 UTC: 3 accepted, 0 duplicates; 2 delivered, 0 retried, 1 failed</title>");
    const day = String(ActivityFigure({ window: "24h", stats: stats(series) }));
    expect(day.match(/<g>/g)).toHaveLength(24);
    expect(textOf(day, "chart-total-accepted")).toBe("accepted 9");
    expect(String(ActivityFigure({ window: "1h", stats: stats([]) }))).toContain("no data yet");
  });

  it('links "Watch these live" to the live page of the most recently active conversations, newest first', async () => {
    // Later than any other test's rows, so first in the index's last_receipt_at order.
    const future = Date.now() + 86_400_000;
    const [newest, second] = [unique("sendbird:app:g:recent-a-"), unique("stream:app:g:recent-b-")];
    await indexRow(second, {}, future);
    await indexRow(newest, {}, future + 1000);
    const keys = watchedKeys(await page("", await signIn()));
    expect(keys?.slice(0, 2)).toEqual([newest, second]);
    expect(keys?.length).toBeLessThanOrEqual(20);
  });

  it("without the index (no DB binding) says so, and still shows the providers", async () => {
    const response = await dashboard("", { cookie: await signIn(), env: { DB: undefined } });
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(watchedKeys(html)).toBeUndefined();
    expect(html).toContain("index off: bind D1 as DB");
    expect(html.match(/data-testid="provider"/g)).toHaveLength(5);
    for (const id of ["backlog", "failing-count", "alerts", "activity-chart"]) expect(html).toContain(`data-testid="${id}"`);
  });
});

describe("conversations", () => {
  it("lists the index, filtered by prefix, provider and status, a page at a time, each row linking to its conversation", async () => {
    const prefix = unique("tencent:1400000001:g:list-") + "-";
    const now = Date.now();
    for (let n = 0; n < 52; n++)
      await indexRow(`${prefix}${String(n).padStart(2, "0")}`, n === 3 ? { failed: 2, oldest_failed_at: new Date(now).toISOString() } : {}, now);
    const cookie = await signIn();
    const first = await page(`/conversations?prefix=${encodeURIComponent(prefix)}&provider=&status=`, cookie);
    expect(first).toContain('<table data-testid="conversations">');
    const rows = [...first.matchAll(/data-testid="conversation-row" data-conversation="([^"]*)"/g)].map((match) => unescape(match[1] ?? ""));
    expect(rows).toHaveLength(50);
    expect(rows[0]).toBe(`${prefix}00`);
    expect(first).toContain(`href="/dashboard/conversations/${encodeURIComponent(`${prefix}00`)}"`);
    const next = /<a href="([^"]*)" data-testid="next-page"/.exec(first)?.[1];
    expect(next).toBeDefined();
    const second = await page(unescape(next ?? "").replace("/dashboard", ""), cookie);
    const rest = [...second.matchAll(/data-testid="conversation-row" data-conversation="([^"]*)"/g)].map((match) => unescape(match[1] ?? ""));
    expect(rest).toEqual([`${prefix}50`, `${prefix}51`]);
    expect(second).not.toContain('data-testid="next-page"');

    const failing = await page(`/conversations?prefix=${encodeURIComponent(prefix)}&status=failing&provider=tencent`, cookie);
    expect([...failing.matchAll(/data-testid="conversation-row" data-conversation="([^"]*)"/g)].map((match) => unescape(match[1] ?? ""))).toEqual([
      `${prefix}03`,
    ]);
    expect(failing).toContain('<option value="failing" selected="">');
    const none = await page(`/conversations?prefix=${encodeURIComponent(prefix)}&provider=openim`, cookie);
    expect(none).toContain('data-testid="no-conversations"');
  });

  it('links "Watch these live" to the live page of the first 20 conversations of the page shown', async () => {
    const prefix = unique("tencent:1400000001:g:watch-") + "-";
    const now = Date.now();
    for (let n = 0; n < 22; n++) await indexRow(`${prefix}${String(n).padStart(2, "0")}`, {}, now);
    const cookie = await signIn();
    const html = await page(`/conversations?prefix=${encodeURIComponent(prefix)}`, cookie);
    const rows = [...html.matchAll(/data-testid="conversation-row" data-conversation="([^"]*)"/g)].map((match) => unescape(match[1] ?? ""));
    expect(rows).toHaveLength(22);
    expect(watchedKeys(html)).toEqual(rows.slice(0, 20));
    const few = await page(`/conversations?prefix=${encodeURIComponent(`${prefix}2`)}`, cookie);
    expect(watchedKeys(few)).toEqual([`${prefix}20`, `${prefix}21`]);
    expect(watchedKeys(await page(`/conversations?prefix=${encodeURIComponent(`${prefix}none`)}`, cookie))).toBeUndefined();
  });

  it("escapes keys and errors, and links with encodeURIComponent", async () => {
    const key = `tencent:1400000001:g:${unique("x-")}<img src=x onerror=alert(1)>"&`;
    await indexRow(key, { failed: 1, oldest_failed_at: new Date().toISOString(), last_error: "<script>alert(2)</script>" }, Date.now());
    const cookie = await signIn();
    const list = await page(`/conversations?prefix=${encodeURIComponent(key)}`, cookie);
    expect(list).not.toContain("<img src=x");
    expect(list).toContain("&lt;img src=x onerror=alert(1)&gt;&quot;&amp;");
    expect(list).toContain(`href="/dashboard/conversations/${encodeURIComponent(key).replaceAll("&", "&amp;")}"`);
    const letters = await page(`/dead-letters?prefix=${encodeURIComponent(key)}`, cookie);
    expect(letters).not.toContain("<script>alert(2)");
    expect(letters).toContain("&lt;script&gt;alert(2)&lt;/script&gt;");
  });

  it("answers an invalid filter or cursor with a 400 page, not a failure", async () => {
    const cookie = await signIn();
    expect(await page("/conversations?status=bogus", cookie, 400)).toContain('data-testid="error-panel"');
    expect(await page("/conversations?cursor=%FF%FE", cookie, 400)).toContain("cursor");
  });

  it("without the index says so (503)", async () => {
    const response = await dashboard("/conversations", { cookie: await signIn(), env: { DB: undefined } });
    expect(response.status).toBe(503);
    expect(await response.text()).toContain("index off: bind D1 as DB");
  });
});

describe("a conversation", () => {
  it("shows its receipts newest first with delivery status and attempts, its readers and its outbox", async () => {
    const reader = unique("cv-");
    const readTime = Math.floor(Date.now() / 1000);
    const conversation = await tencentReceipt(reader, readTime - 10);
    await runAlarm(stubFor(conversation));
    // The second one is refused for now (503): pending, with one attempt.
    await script(conversation, [{ status: 503 }]);
    await tencentReceipt(reader, readTime);
    await runAlarm(stubFor(conversation));
    const cookie = await signIn();
    const html = await page(conversationUrl(conversation), cookie);
    const rows = receiptRows(html);
    expect(rows).toHaveLength(2);
    expect(rows.map((row) => row.status)).toEqual(["pending", "delivered"]);
    // Validated rather than inferred through the RPC stub's types (too deep for tsc).
    const receipts = z.array(z.object({ id: z.string() })).parse(await stubFor(conversation).recent(10));
    expect(receipts).toHaveLength(2);
    expect(rows.map((row) => unescape(row.id))).toEqual(receipts.map((receipt) => receipt.id));
    // Each attempt from the receipt's log: its status or error and how long it took.
    const receiptsHtml = after(html, "receipts", 100_000);
    expect(receiptsHtml).toMatch(/data-status="503"[^>]*>[\s\S]*?origin answered 503[^<]*, in \d+ ms/);
    expect(receiptsHtml).toMatch(/data-status="200"[^>]*>[\s\S]*?answered 200, in \d+ ms/);
    expect(after(html, "reads")).toContain(`data-reader="${reader}"`);
    const outbox = after(html, "outbox", 10_000);
    expect(textOf(outbox, "outbox-pending")).toBe("1 pending");
    expect(textOf(outbox, "outbox-failed")).toBe("0 failed");
    expect(outbox).toContain('data-testid="outbox-pending"');
    expect(html).toMatch(/<form method="post" action="\/dashboard\/conversations\/[^"]+\/replay" data-testid="replay-conversation">/);
    const live = after(html, "live-tail");
    expect(live).toContain(`data-live-url="/dashboard/conversations/${encodeURIComponent(conversation)}/live"`);
    expect(textOf(html, "live-status")).toBe("connecting");
  });

  it("replays its dead letters from the page and comes back (303)", async () => {
    const conversation = unique("tencent:1400000001:g:replay-page-");
    await withDeadLetters(conversation, 2);
    const cookie = await signIn();
    const before = await page(conversationUrl(conversation), cookie);
    expect(receiptRows(before).map((row) => row.status)).toEqual(["failed", "failed"]);
    expect(textOf(before, "outbox-failed")).toBe("2 failed");
    const replay = await dashboard(`${conversationUrl(conversation)}/replay`, { method: "POST", cookie, form: { back: "conversation" } });
    expect(replay.status).toBe(303);
    expect(replay.headers.get("location")).toBe(`/dashboard${conversationUrl(conversation)}?requeued=2`);
    const afterReplay = await page(`${conversationUrl(conversation)}?requeued=2`, cookie);
    expect(textOf(afterReplay, "flash")).toBe("2 dead letter(s) re-queued.");
    expect(receiptRows(afterReplay).every((row) => row.status !== "failed")).toBe(true);
    await retryNow(stubFor(conversation));
    expect(receiptRows(await page(conversationUrl(conversation), cookie)).map((row) => row.status)).toEqual(["delivered", "delivered"]);
  });

  it("answers 404 for a conversation never seen, but lets a viewer wait for its first receipt with ?watch=1", async () => {
    const conversation = unique("tencent:1400000001:g:never-");
    const cookie = await signIn();
    const missing = await page(conversationUrl(conversation), cookie, 404);
    expect(missing).toContain(`href="/dashboard/conversations/${encodeURIComponent(conversation)}?watch=1"`);
    const watching = await page(`${conversationUrl(conversation)}?watch=1`, cookie);
    expect(watching).toContain('data-testid="no-receipts"');
    expect(watching).toContain('data-testid="live-tail"');
    expect(receiptRows(watching)).toEqual([]);
    const replay = await dashboard(`${conversationUrl(conversation)}/replay`, { method: "POST", cookie, form: {} });
    expect(replay.status).toBe(404);
  });
});

describe("dead letters and replays", () => {
  const Progress = z.object({
    id: z.string(),
    status: z.enum(["running", "done"]),
    conversations: z.object({ done: z.number(), total: z.number() }),
    requeued: z.number(),
  });

  it("lists the conversations holding dead letters, each with its replay button", async () => {
    const prefix = unique("tencent:1400000001:g:dl-") + "-";
    await withDeadLetters(`${prefix}a`, 2);
    await withDeadLetters(`${prefix}b`, 1);
    const healthy = `${prefix}c`;
    await stubFor(healthy).accept(makeReceipt(healthy, 1));
    await runAlarm(stubFor(healthy));
    await publishNow(stubFor(healthy));
    const cookie = await signIn();
    const html = await page(`/dead-letters?prefix=${encodeURIComponent(prefix)}`, cookie);
    const rows = [...html.matchAll(/data-testid="dead-letter-row" data-conversation="([^"]*)"[\s\S]*?data-testid="failed-count">(\d+)</g)].map((match) => [
      unescape(match[1] ?? ""),
      Number(match[2]),
    ]);
    expect(rows).toEqual([
      [`${prefix}a`, 2],
      [`${prefix}b`, 1],
    ]);
    expect(html).toContain("origin answered 400");
    expect(html).toMatch(/<form class="filters" method="post" action="\/dashboard\/replays" data-testid="replay-all">/);
    const replayRow = await dashboard(`${conversationUrl(`${prefix}b`)}/replay`, { method: "POST", cookie, form: { back: "dead-letters" } });
    expect(replayRow.status).toBe(303);
    expect(replayRow.headers.get("location")).toBe("/dashboard/dead-letters?requeued=1");
  });

  it("replays all matching dead letters as a job, with a progress page and its JSON", async () => {
    const prefix = unique("tencent:1400000001:g:all-") + "-";
    for (const name of ["a", "b", "c"]) await withDeadLetters(`${prefix}${name}`);
    const cookie = await signIn();
    const started = await dashboard("/replays", { method: "POST", cookie, form: { provider: "", prefix } });
    expect(started.status).toBe(303);
    const location = started.headers.get("location") ?? "";
    const id = /^\/dashboard\/replays\/([0-9a-f-]{36})$/.exec(location)?.[1] ?? "";
    expect(id).not.toBe("");
    const progressPage = await page(`/replays/${id}`, cookie);
    expect(progressPage).toMatch(/<progress data-testid="replay-progress" value="\d" max="3">/);
    expect(progressPage).toContain(`data-poll-url="/dashboard/replays/${id}.json"`);
    expect(["running", "done"]).toContain(textOf(progressPage, "replay-state"));

    const job = env.REPLAYS.get(env.REPLAYS.idFromName(id));
    const done = await waitFor("the replay to finish", async () => {
      // Hurries the job's alarm along (the platform runs it on its own too).
      await runDurableObjectAlarm(job);
      const response = await dashboard(`/replays/${id}.json`, { cookie });
      expect(response.status).toBe(200);
      const progress = Progress.parse(await response.json());
      return progress.status === "done" ? progress : undefined;
    });
    expect(done).toMatchObject({ id, conversations: { done: 3, total: 3 }, requeued: 3 });
    const finished = await page(`/replays/${id}`, cookie);
    expect(textOf(finished, "replay-state")).toBe("done");
    expect(finished).toContain('<progress data-testid="replay-progress" value="3" max="3">');
    expect(textOf(finished, "replay-requeued")).toBe("3");
  });

  it("refuses an invalid filter (400), answers an unknown job 404, and needs the index (503)", async () => {
    const cookie = await signIn();
    expect((await dashboard("/replays", { method: "POST", cookie, form: { provider: "x".repeat(65) } })).status).toBe(400);
    expect((await dashboard(`/replays/${crypto.randomUUID()}`, { cookie })).status).toBe(404);
    expect((await dashboard(`/replays/${crypto.randomUUID()}.json`, { cookie })).status).toBe(404);
    expect((await dashboard("/replays/not-a-uuid.json", { cookie })).status).toBe(404);
    const withoutDb = await dashboard("/replays", { method: "POST", cookie, form: {}, env: { DB: undefined } });
    expect(withoutDb.status).toBe(503);
    expect(await withoutDb.text()).toContain("index off: bind D1 as DB");
  });
});

describe("live page", () => {
  const livePage = (keys: string[]) => `/live?${keys.map((key) => `conversation=${encodeURIComponent(key)}`).join("&")}`;
  /** Each `[data-testid=live-status]`'s conversation and text, in page order. */
  const statuses = (html: string) =>
    [...html.matchAll(/data-testid="live-status" data-conversation="([^"]*)"[^>]*>([^<]*)</g)].map((match) => [unescape(match[1] ?? ""), match[2]?.trim()]);

  it("shows one status per conversation, each with its live-tail socket, once per key, escaped", async () => {
    const tencent = singleConversationKey("tencent", TENCENT_APP, unique("lp-"), "Jonh");
    const hostile = `easemob:app:g:${unique("x-")}<img src=x onerror=alert(1)>"&`;
    const html = await page(livePage([tencent, hostile, tencent]), await signIn());
    expect(statuses(html)).toEqual([
      [tencent, "connecting"],
      [hostile, "connecting"],
    ]);
    expect(html).not.toContain("<img src=x");
    for (const key of [tencent, hostile]) {
      expect(html).toContain(`data-live-url="/dashboard/conversations/${encodeURIComponent(key).replaceAll("&", "&amp;")}/live"`);
      expect(html).toContain(`href="/dashboard/conversations/${encodeURIComponent(key).replaceAll("&", "&amp;")}"`);
    }
    expect(html).toMatch(/data-testid="live-connection" data-conversation="tencent:[^"]*" data-provider="tencent"/);
    expect(html).toMatch(/data-testid="live-connection" data-conversation="easemob:[^"]*" data-provider="easemob"/);
    expect(after(html, "live-feed")).toContain('data-testid="live-events"');
  });

  it("refuses no conversation, an empty key and more than 20 with a 400 page", async () => {
    const cookie = await signIn();
    const keys = Array.from({ length: 21 }, (_, n) => `tencent:1400000001:g:many-${n}`);
    for (const [path, says] of [
      ["/live", "at least one"],
      ["/live?conversation=", "cannot be empty"],
      [livePage(keys), "at most 20"],
    ] as const) {
      const html = await page(path, cookie, 400);
      expect(after(html, "error-panel", 400)).toContain(says);
      expect(html).not.toContain('data-testid="live-status"');
    }
    expect(statuses(await page(livePage(keys.slice(0, 20)), cookie))).toHaveLength(20);
  });

  it("sends a browser without a session to sign in, coming back after", async () => {
    const path = livePage(["tencent:1400000001:g:a", "openim:openim:u:u1:u2"]);
    const response = await dashboard(path);
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe(`/dashboard/login?next=${encodeURIComponent(`/dashboard${path}`)}`);
  });

  it("links at most 20 keys, and fewer when their keys would make the URL too long", () => {
    const short = Array.from({ length: 25 }, (_, n) => `stream:app:g:${n}`);
    expect(new URL(livePath(short), ORIGIN).searchParams.getAll("conversation")).toEqual(short.slice(0, 20));
    const long = Array.from({ length: 20 }, (_, n) => `stream:app:g:${n}${"x".repeat(4000)}`);
    const path = livePath(long);
    expect(path.length).toBeLessThan(9000);
    expect(new URL(path, ORIGIN).searchParams.getAll("conversation")).toEqual(long.slice(0, 2));
  });
});

describe("live tail route", () => {
  const live = (conversation: string) => `${conversationUrl(conversation)}/live`;
  const upgrade = { upgrade: "websocket" };

  it("refuses a viewer without a session, or from another origin (403), and a request that is not an upgrade (426)", async () => {
    const conversation = unique("tencent:1400000001:g:live-refused-");
    const cookie = await signIn();
    expect((await dashboard(live(conversation), { origin: ORIGIN, headers: upgrade })).status).toBe(403);
    expect((await dashboard(live(conversation), { origin: ORIGIN, headers: upgrade, cookie: `${cookie}x` })).status).toBe(403);
    expect((await dashboard(live(conversation), { origin: "https://evil.test", headers: upgrade, cookie })).status).toBe(403);
    expect((await dashboard(live(conversation), { origin: null, headers: upgrade, cookie })).status).toBe(403);
    expect((await dashboard(live(conversation), { origin: ORIGIN, cookie })).status).toBe(426);
  });

  it("opens for a signed-in viewer from this origin, before the first receipt, and streams what happens", async () => {
    const reader = unique("lv-");
    const conversation = singleConversationKey("tencent", TENCENT_APP, reader, "Jonh");
    const response = await dashboard(live(conversation), { origin: ORIGIN, headers: upgrade, cookie: await signIn() });
    expect(response.status).toBe(101);
    const socket = response.webSocket;
    if (!socket) throw new Error("no WebSocket in the 101 answer");
    socket.accept();
    const frames: { type: string; [key: string]: unknown }[] = [];
    const waiters: (() => void)[] = [];
    socket.addEventListener("message", (message) => {
      if (typeof message.data === "string" && message.data !== "pong") frames.push(JSON.parse(message.data));
      waiters.splice(0).forEach((wake) => wake());
    });
    const next = async (type: string) => {
      for (;;) {
        const found = frames.find((frame) => frame.type === type);
        if (found) return found;
        await new Promise<void>((wake) => waiters.push(wake));
      }
    };
    expect(await next("hello")).toMatchObject({ conversation });
    await tencentReceipt(reader, Math.floor(Date.now() / 1000));
    const receipt = await next("receipt");
    expect(receipt).toMatchObject({ seq: 1, receipt: { conversation, readers: [reader] } });
    await runAlarm(stubFor(conversation));
    expect(await next("delivery")).toMatchObject({ outcome: "delivered", status: 200, attempt: 1 });
    socket.close(1000, "done");
  });
});

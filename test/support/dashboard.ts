// Requests to the operators' dashboard and reading its pages, for the tests in test/dashboard/.
import { expect } from "vitest";
import { createExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { app } from "../../src/app";
import { singleConversationKey } from "../../src/receipt";
import { ADMIN_TOKEN, copy, samples, send, TENCENT_APP, tencentPath } from "./callbacks";
import { withDeadLetters as withDeadLettersOf } from "./receipts";

export const ORIGIN = "http://relay.test";
export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export interface Call {
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
export async function dashboard(path: string, { method = "GET", cookie, origin, form, headers = {}, env: overrides }: Call = {}): Promise<Response> {
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
export const cookiePair = (setCookie: string) => setCookie.split(";")[0] ?? "";

export async function signIn(): Promise<string> {
  const response = await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN } });
  expect(response.status).toBe(303);
  return cookiePair(response.headers.get("set-cookie") ?? "");
}

export async function page(path: string, cookie: string, status = 200): Promise<string> {
  const response = await dashboard(path, { cookie });
  const text = await response.text();
  expect(response.status, text.slice(0, 500)).toBe(status);
  expect(response.headers.get("content-security-policy")).toBe(CSP);
  expect(response.headers.get("cache-control")).toBe("no-store");
  return text;
}

/** The `data-testid="<id>"` element's opening tag and what follows it, up to `chars` characters. */
export function after(html: string, testId: string, chars = 2000): string {
  const at = html.indexOf(`data-testid="${testId}"`);
  if (at < 0) throw new Error(`no [data-testid=${testId}] in the page`);
  return html.slice(at, at + chars);
}

/** The text of the element with this test id (its first text, tags removed). */
export function textOf(html: string, testId: string): string {
  const match = new RegExp(`data-testid="${testId}"[^>]*>([^<]*)<`).exec(html);
  if (!match) throw new Error(`no text for [data-testid=${testId}]`);
  return match[1] ?? "";
}

/** The keys a "Watch these live" link (`a[data-testid=watch-page]`) names, in order; undefined without one. */
export function watchedKeys(html: string): string[] | undefined {
  const href = /<a href="([^"]*)" data-testid="watch-page"/.exec(html)?.[1];
  if (href === undefined) return undefined;
  const url = new URL(unescape(href), ORIGIN);
  expect(url.pathname).toBe("/dashboard/live");
  return url.searchParams.getAll("conversation");
}

export const unescape = (text: string) =>
  text.replaceAll("&amp;", "&").replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">");
export const conversationUrl = (key: string) => `/conversations/${encodeURIComponent(key)}`;

/** A real, signed Tencent read receipt from `reader` to Jonh: its conversation key. */
export async function tencentReceipt(reader: string, readTime: number): Promise<string> {
  const body = copy(samples.tencent.report, { Report_Account: reader, LastReadTime: readTime, EventTime: readTime * 1000 });
  const response = await send(await tencentPath("C2C.CallbackAfterMsgReport"), { json: body });
  expect(response.status).toBe(200);
  return singleConversationKey("tencent", TENCENT_APP, reader, "Jonh");
}

/** Dead letters of a conversation (test/support/receipts.ts), 1 by default here. */
export const withDeadLetters = (conversation: string, receipts = 1) => withDeadLettersOf(conversation, receipts);

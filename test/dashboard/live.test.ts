// The dashboard's live page (src/dashboard/pages/live.tsx, layout.tsx) and the live tail's WebSocket
// route (src/dashboard/routes.tsx).
import { describe, expect, it } from "vitest";
import { livePath } from "../../src/dashboard/layout";
import { singleConversationKey } from "../../src/receipt";
import { TENCENT_APP, unique } from "../support/callbacks";
import { runAlarm } from "../support/conversation-object";
import { after, conversationUrl, dashboard, ORIGIN, page, signIn, tencentReceipt, unescape } from "../support/dashboard";
import { stubFor } from "../support/receipts";

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

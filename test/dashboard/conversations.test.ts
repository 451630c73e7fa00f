// The dashboard's list of conversations (src/dashboard/pages/conversations.tsx): filters, pages,
// escaping and the "Watch these live" link.
import { describe, expect, it } from "vitest";
import { unique } from "../support/callbacks";
import { dashboard, page, signIn, unescape, watchedKeys } from "../support/dashboard";
import { indexRow } from "../support/index-rows";

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

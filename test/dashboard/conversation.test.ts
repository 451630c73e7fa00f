// The dashboard's page of one conversation (src/dashboard/pages/conversation.tsx): its receipts and
// their attempts, readers, outbox and replay.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { unique } from "../support/callbacks";
import { retryNow, runAlarm } from "../support/conversation-object";
import { after, conversationUrl, dashboard, page, signIn, tencentReceipt, textOf, unescape, withDeadLetters } from "../support/dashboard";
import { script } from "../support/origin-control";
import { stubFor } from "../support/receipts";

/** The receipt rows' ids and delivery status, in page order. */
function receiptRows(html: string): { id: string; status: string }[] {
  return [...html.matchAll(/data-testid="receipt-row" data-receipt-id="([^"]*)"[\s\S]*?data-testid="delivery-status"[^>]*>([^<]*)</g)].map((match) => ({
    id: match[1] ?? "",
    status: match[2] ?? "",
  }));
}

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
    expect(receiptsHtml).toMatch(/data-status="503"[^>]*>[\s\S]*?destination answered 503[^<]*, in \d+ ms/);
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

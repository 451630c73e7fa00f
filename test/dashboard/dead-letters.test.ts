// The dashboard's dead letters (src/dashboard/pages/dead-letters.tsx): the conversations holding them
// and their replay buttons.
import { describe, expect, it } from "vitest";
import { unique } from "../support/callbacks";
import { publishNow, runAlarm } from "../support/conversation-object";
import { conversationUrl, dashboard, page, signIn, unescape, withDeadLetters } from "../support/dashboard";
import { makeReceipt, stubFor } from "../support/receipts";

describe("dead letters and replays", () => {
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
    expect(html).toContain("destination answered 400");
    expect(html).toMatch(/<form class="filters" method="post" action="\/dashboard\/replays" data-testid="replay-all">/);
    const replayRow = await dashboard(`${conversationUrl(`${prefix}b`)}/replay`, { method: "POST", cookie, form: { back: "dead-letters" } });
    expect(replayRow.status).toBe(303);
    expect(replayRow.headers.get("location")).toBe("/dashboard/dead-letters?requeued=1");
  });
});

// The dashboard's overview (src/dashboard/pages/overview.tsx, chart.tsx): providers, backlog, alerts,
// the activity chart and the "Watch these live" link.
import { describe, expect, it } from "vitest";
import { ActivityFigure, type DashboardStats, type SeriesPoint } from "../../src/dashboard/chart";
import { PRECISION } from "../../src/ops/stats";
import { providers as registry } from "../../src/ingestors";
import { unique } from "../support/callbacks";
import { publishNow, runAlarm } from "../support/conversation-object";
import { after, dashboard, page, signIn, tencentReceipt, textOf, watchedKeys, withDeadLetters } from "../support/dashboard";
import { indexRow } from "../support/index-rows";
import { stubFor } from "../support/receipts";

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
    // Every registered provider, in the registry's order: a new provider shows with no change here.
    expect(providers).toEqual([...registry.keys()].map((name) => [name, "enabled"]));
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
      unrouted: 0,
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
    expect(html.match(/data-testid="provider"/g)).toHaveLength(registry.size);
    for (const id of ["backlog", "failing-count", "alerts", "activity-chart"]) expect(html).toContain(`data-testid="${id}"`);
  });
});

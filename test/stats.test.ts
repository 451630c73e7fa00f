// GET /v1/stats: relay-wide figures from the D1 index, with their precision.
import { describe, expect, it } from "vitest";
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { app } from "../src/app";
import { percentile, percentileOffset, PRECISION } from "../src/ops/stats";
import { ADMIN_TOKEN, api, unique } from "./support/callbacks";
import { indexRow, iso } from "./support/index-rows";

const Stats = z.object({
  window: z.enum(["1h", "24h"]),
  since: z.string(),
  generatedAt: z.string(),
  conversations: z.object({ total: z.number(), withPending: z.number(), withDeadLetters: z.number() }),
  backlog: z.number(),
  deadLetters: z.number(),
  oldestPendingBefore: z.string().nullable(),
  oldestFailureAt: z.string().nullable(),
  activeConversations: z.number(),
  latencyMs: z.object({ samples: z.number(), p50: z.number().nullable(), p95: z.number().nullable() }),
  precision: z.record(z.string(), z.string()),
});

describe("percentiles (pure)", () => {
  it("nearest rank", () => {
    expect(percentile([], 0.5)).toBeUndefined();
    expect(percentile([7], 0.95)).toBe(7);
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 0.5)).toBe(50);
    expect(percentile(values, 0.95)).toBe(95);
    expect(percentileOffset(100, 0.95)).toBe(94);
    expect(percentileOffset(3, 0.5)).toBe(1);
  });
});

describe("GET /v1/stats", () => {
  it("counts conversations, backlog and dead letters, active conversations and latency in the window", async () => {
    const now = Date.now();
    const pending = unique("tencent:1400000001:u:stats-pending-");
    const failing = unique("tencent:1400000001:u:stats-failing-");
    const old = unique("tencent:1400000001:u:stats-old-");
    await indexRow(pending, { pending: 5, last_receipt_at: iso(now - 600_000), last_delivered_at: iso(now - 300_000), last_latency_ms: 120 }, now);
    await indexRow(failing, { failed: 3, oldest_failed_at: iso(now - 900_000), last_error: "destination answered 400" }, now);
    await indexRow(old, { last_receipt_at: iso(now - 3 * 3_600_000), last_delivered_at: iso(now - 3 * 3_600_000), last_latency_ms: 999_999 }, now);

    const response = await api("/v1/stats?window=1h");
    expect(response.status).toBe(200);
    const stats = Stats.parse(await response.json());
    expect(stats.window).toBe("1h");
    expect(stats.conversations.total).toBeGreaterThanOrEqual(3);
    expect(stats.conversations.withPending).toBeGreaterThanOrEqual(1);
    expect(stats.conversations.withDeadLetters).toBeGreaterThanOrEqual(1);
    expect(stats.backlog).toBeGreaterThanOrEqual(5);
    expect(stats.deadLetters).toBeGreaterThanOrEqual(3);
    expect(stats.oldestFailureAt! <= iso(now - 900_000)).toBe(true);
    expect(stats.oldestPendingBefore! <= iso(now - 600_000)).toBe(true);
    expect(stats.activeConversations).toBeGreaterThanOrEqual(2);
    expect(stats.latencyMs.samples).toBeGreaterThanOrEqual(1);
    expect(stats.latencyMs.p50).not.toBeNull();
    // The 3-hour-old delivery is outside the 1h window, so its latency is not a sample.
    expect(stats.latencyMs.p95).toBeLessThan(999_999);
    expect(Object.keys(stats.precision).sort()).toEqual(Object.keys(PRECISION).sort());

    const day = Stats.parse(await (await api("/v1/stats")).json());
    expect(day.window).toBe("24h");
    expect(day.activeConversations).toBeGreaterThanOrEqual(stats.activeConversations + 1);
    expect(day.latencyMs.samples).toBeGreaterThanOrEqual(stats.latencyMs.samples + 1);
  });

  it("refuses a window it does not know, and callers without the token", async () => {
    const bad = await api("/v1/stats?window=7d");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: "invalid_query" } });
    expect((await api("/v1/stats", {}, null)).status).toBe(401);
  });

  it("503 index_disabled without a DB binding", async () => {
    const response = await app.fetch(
      new Request("http://relay.test/v1/stats", { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "cf-connecting-ip": "2001:db8::1" } }),
      { ...env, DB: undefined },
      createExecutionContext(),
    );
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { code: "index_disabled" } });
  });
});

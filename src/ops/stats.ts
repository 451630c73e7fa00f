/**
 * `GET /v1/stats?window=1h|24h` (docs/alerts-and-stats.md): relay-wide figures from the conversation
 * index (D1). Every figure is per conversation row, and rows lag their objects by up to one snapshot
 * interval; `precision` says, figure by figure, how exact it is. Per-callback and per-attempt counts
 * live in Analytics Engine (docs/metrics.md).
 */
import { z } from "zod";

export const StatsWindow = z.enum(["1h", "24h"]);
export type StatsWindow = z.infer<typeof StatsWindow>;
const WINDOW_MS: Record<StatsWindow, number> = { "1h": 3_600_000, "24h": 86_400_000 };

/** Nearest-rank percentile of ascending values (p in 0..1); undefined when there are none. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

/** The 0-based offset of the nearest-rank percentile among `n` ascending values. */
export const percentileOffset = (n: number, p: number) => Math.min(n, Math.max(1, Math.ceil(p * n))) - 1;

export const PRECISION = {
  conversations: "exact count of index rows; a conversation appears once its object first publishes (up to one snapshot interval late)",
  backlog: "sum of the rows' pending counts: exact per row, as of each row's last write (lags by up to one snapshot interval)",
  deadLetters: "sum of the rows' failed counts: exact per row, as of each row's last write (lags by up to one snapshot interval)",
  oldestPendingBefore: "an upper bound: the oldest pending receipt was accepted at or before this (the index keeps each conversation's newest receipt only)",
  oldestFailureAt: "exact: the earliest oldest_failed_at of any row",
  activeConversations:
    "conversations with a receipt accepted in the window (their newest receipt's time), not a count of receipts: per-callback counts are in Analytics Engine (docs/metrics.md)",
  latencyMs:
    "percentiles over each conversation's last delivery in the window (one sample per conversation, not per delivery); per-attempt latency is in Analytics Engine (docs/metrics.md)",
} as const;

const Totals = z.object({
  total: z.number(),
  with_pending: z.number().nullable(),
  with_dead_letters: z.number().nullable(),
  backlog: z.number().nullable(),
  dead_letters: z.number().nullable(),
  oldest_pending_before: z.string().nullable(),
  oldest_failure_at: z.string().nullable(),
  active: z.number().nullable(),
  latency_samples: z.number().nullable(),
});
const Latency = z.object({ last_latency_ms: z.number() });

const LATENCY_WHERE = "last_delivered_at >= ?1 AND last_latency_ms IS NOT NULL";

export async function relayStats(db: D1Database, window: StatsWindow, now: number) {
  const since = new Date(now - WINDOW_MS[window]).toISOString();
  const row = await db
    .prepare(
      `SELECT COUNT(*) AS total,
         SUM(pending > 0) AS with_pending,
         SUM(failed > 0) AS with_dead_letters,
         SUM(pending) AS backlog,
         SUM(failed) AS dead_letters,
         MIN(CASE WHEN pending > 0 THEN last_receipt_at END) AS oldest_pending_before,
         MIN(CASE WHEN failed > 0 THEN oldest_failed_at END) AS oldest_failure_at,
         SUM(last_receipt_at >= ?1) AS active,
         SUM(${LATENCY_WHERE}) AS latency_samples
       FROM conversations`,
    )
    .bind(since)
    .first();
  const totals = Totals.parse(row);
  const samples = totals.latency_samples ?? 0;
  const latencyAt = async (p: number) => {
    if (samples === 0) return null;
    const found = await db
      .prepare(`SELECT last_latency_ms FROM conversations WHERE ${LATENCY_WHERE} ORDER BY last_latency_ms LIMIT 1 OFFSET ?2`)
      .bind(since, percentileOffset(samples, p))
      .first();
    return found ? Latency.parse(found).last_latency_ms : null;
  };
  const [p50, p95] = await Promise.all([latencyAt(0.5), latencyAt(0.95)]);
  return {
    window,
    since,
    generatedAt: new Date(now).toISOString(),
    conversations: { total: totals.total, withPending: totals.with_pending ?? 0, withDeadLetters: totals.with_dead_letters ?? 0 },
    backlog: totals.backlog ?? 0,
    deadLetters: totals.dead_letters ?? 0,
    oldestPendingBefore: totals.oldest_pending_before,
    oldestFailureAt: totals.oldest_failure_at,
    activeConversations: totals.active ?? 0,
    latencyMs: { samples, p50, p95 },
    precision: PRECISION,
  };
}

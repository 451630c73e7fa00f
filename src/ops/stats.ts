/**
 * `GET /v1/stats?window=1h|24h` (docs/alerts-and-stats.md): relay-wide figures from the conversation
 * index (D1). Every figure is per conversation row, and rows lag their objects by up to one snapshot
 * interval; `precision` says, figure by figure, how exact it is. Receipts and deliveries per provider
 * come from the rows' activity buckets (src/ops/activity.ts); refused callbacks and per-attempt
 * figures live in Analytics Engine (docs/metrics.md).
 */
import { z } from "zod";
import { isoFromMillis } from "../time";
import { BUCKET_MS, bucketOf, COUNT_NAMES } from "./activity";

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
  unrouted:
    "sum of the rows' unrouted counts (receipts kept that matched no destination): exact per row, as of each row's last write; 0 for rows not written since migration 0004",
  oldestPendingBefore: "an upper bound: the oldest pending receipt was accepted at or before this (the index keeps each conversation's newest receipt only)",
  oldestFailureAt: "exact: the earliest oldest_failed_at of any row",
  activeConversations:
    "conversations with a receipt accepted in the window (their newest receipt's time), not a count of receipts: per-callback counts are in Analytics Engine (docs/metrics.md)",
  latencyMs:
    "percentiles over each conversation's last delivery in the window (one sample per conversation, not per delivery); per-attempt latency is in Analytics Engine (docs/metrics.md)",
  callbacks:
    "receipts accepted per provider: exact, in 5-minute buckets (the window starts at the beginning of its first bucket, so it spans up to 5 minutes more), lagging by up to one snapshot interval; duplicates: approximate (counted in memory, lost if a conversation's object is evicted before it publishes); callbacks refused before reaching a conversation (authentication, malformed bodies) are counted in Analytics Engine only (docs/metrics.md)",
  deliveries:
    "receipts delivered and dead-lettered in the window, with the retries they needed, counted when each settles: exact, same buckets and lag as callbacks; retries of receipts still pending are not counted yet",
  series: "the same counts per 5-minute bucket, oldest first, every bucket of the window present",
} as const;

const ActivityRow = z.object({
  provider: z.string(),
  bucket: z.number(),
  accepted: z.number(),
  duplicates: z.number(),
  delivered: z.number(),
  retried: z.number(),
  failed: z.number(),
});
type Tally = Record<(typeof COUNT_NAMES)[number], number>;
const zero = (): Tally => ({ accepted: 0, duplicates: 0, delivered: 0, retried: 0, failed: 0 });

/** Every conversation's activity buckets in the window, summed per provider and bucket in D1. */
async function activityIn(db: D1Database, fromBucket: number) {
  const fromIso = isoFromMillis(fromBucket * 1000);
  // A row last written before the window began holds no bucket in it (buckets are written at publication).
  const result = await db
    .prepare(
      `SELECT c.provider AS provider, CAST(b.key AS INTEGER) AS bucket,
         SUM(json_extract(b.value, '$[0]')) AS accepted, SUM(json_extract(b.value, '$[1]')) AS duplicates,
         SUM(json_extract(b.value, '$[2]')) AS delivered, SUM(json_extract(b.value, '$[3]')) AS retried,
         SUM(json_extract(b.value, '$[4]')) AS failed
       FROM conversations AS c, json_each(c.activity, '$.buckets') AS b
       WHERE c.activity IS NOT NULL AND c.updated_at >= ?1 AND CAST(b.key AS INTEGER) >= ?2
       GROUP BY c.provider, CAST(b.key AS INTEGER)`,
    )
    .bind(fromIso, fromBucket)
    .all();
  return result.results.map((row) => ActivityRow.parse(row));
}

/** Callbacks per provider, deliveries, and every bucket of the window (oldest first, zeros included). */
export function tallyActivity(rows: z.infer<typeof ActivityRow>[], fromBucket: number, toBucket: number) {
  const byProvider: Record<string, { accepted: number; duplicates: number }> = {};
  const totals = zero();
  const buckets = new Map<number, Tally>();
  for (let bucket = fromBucket; bucket <= toBucket; bucket += BUCKET_MS / 1000) buckets.set(bucket, zero());
  for (const row of rows) {
    const provider = (byProvider[row.provider] ??= { accepted: 0, duplicates: 0 });
    provider.accepted += row.accepted;
    provider.duplicates += row.duplicates;
    const tally = buckets.get(row.bucket);
    for (const name of COUNT_NAMES) {
      totals[name] += row[name];
      if (tally) tally[name] += row[name];
    }
  }
  return {
    callbacks: { accepted: totals.accepted, duplicates: totals.duplicates, byProvider },
    deliveries: { delivered: totals.delivered, retried: totals.retried, failed: totals.failed },
    series: [...buckets.entries()].map(([bucket, tally]) => ({ at: isoFromMillis(bucket * 1000), ...tally })),
  };
}

const Totals = z.object({
  total: z.number(),
  with_pending: z.number().nullable(),
  with_dead_letters: z.number().nullable(),
  backlog: z.number().nullable(),
  dead_letters: z.number().nullable(),
  unrouted: z.number().nullable(),
  oldest_pending_before: z.string().nullable(),
  oldest_failure_at: z.string().nullable(),
  active: z.number().nullable(),
  latency_samples: z.number().nullable(),
});
const Latency = z.object({ last_latency_ms: z.number() });

const LATENCY_WHERE = "last_delivered_at >= ?1 AND last_latency_ms IS NOT NULL";

export async function relayStats(db: D1Database, window: StatsWindow, now: number) {
  const since = isoFromMillis(now - WINDOW_MS[window]);
  const row = await db
    .prepare(
      `SELECT COUNT(*) AS total,
         SUM(pending > 0) AS with_pending,
         SUM(failed > 0) AS with_dead_letters,
         SUM(pending) AS backlog,
         SUM(failed) AS dead_letters,
         SUM(unrouted) AS unrouted,
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
  const fromBucket = bucketOf(now - WINDOW_MS[window]);
  const [p50, p95, activity] = await Promise.all([latencyAt(0.5), latencyAt(0.95), activityIn(db, fromBucket)]);
  return {
    window,
    since,
    generatedAt: isoFromMillis(now),
    conversations: { total: totals.total, withPending: totals.with_pending ?? 0, withDeadLetters: totals.with_dead_letters ?? 0 },
    backlog: totals.backlog ?? 0,
    deadLetters: totals.dead_letters ?? 0,
    unrouted: totals.unrouted ?? 0,
    oldestPendingBefore: totals.oldest_pending_before,
    oldestFailureAt: totals.oldest_failure_at,
    activeConversations: totals.active ?? 0,
    latencyMs: { samples, p50, p95 },
    ...tallyActivity(activity, fromBucket, bucketOf(now)),
    precision: PRECISION,
  };
}

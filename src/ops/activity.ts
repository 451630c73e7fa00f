/**
 * Each conversation's recent activity, in 5-minute buckets, carried in its row of the D1 index
 * (column `activity`) so that `GET /v1/stats` can count receipts and deliveries per provider over
 * the last hour or day without a row written per receipt (docs/alerts-and-stats.md, "Stats").
 *
 * Counted from the object's own storage when it publishes: receipts accepted since the row was last
 * written (by sequence number), and receipts settled since then (delivered or dead-lettered, with the
 * retries each needed, by `settled_at`). Those counts are exact. Duplicates leave no row, so they
 * are counted in memory and ride along with the next publication: an object evicted before then
 * forgets its duplicates (approximate). Callbacks refused before reaching a conversation (bad
 * signature, malformed body) never reach an object: they are counted in Analytics Engine only.
 */
import { z } from "zod";

export const BUCKET_MS = 5 * 60_000;
/** Buckets older than a day (and the one the 24 h window starts in) are dropped at the next write. */
export const KEEP_MS = 24 * 3_600_000 + BUCKET_MS;

/** Per bucket: accepted, duplicates, delivered, retried (attempts before the last, of receipts settled), failed. */
export const Counts = z.tuple([z.number(), z.number(), z.number(), z.number(), z.number()]);
export type Counts = z.infer<typeof Counts>;
export const COUNT_NAMES = ["accepted", "duplicates", "delivered", "retried", "failed"] as const;

/**
 * `through`: the latest settlement counted (epoch ms; later ones are counted next time; it moves
 * only when something settled, so an unchanged conversation keeps an unchanged row);
 * `buckets`: bucket start (epoch seconds) → counts.
 */
export const Activity = z.object({ through: z.number(), buckets: z.record(z.string(), Counts) });
export type Activity = z.infer<typeof Activity>;

export const bucketOf = (ms: number) => Math.floor(ms / BUCKET_MS) * (BUCKET_MS / 1000);

/** What happened in a conversation since its row was last written, as its object reads it from storage. */
export interface ActivitySource {
  /** Receipts accepted after the sequence number already counted: each one's acceptance time. */
  accepted: Iterable<{ acceptedAt: number }>;
  /** Deliveries (per destination) settled after `through`: delivered or dead-lettered, with their attempts. */
  settled: (through: number) => Iterable<{ delivered: boolean; at: number; attempts: number }>;
}

/**
 * The activity to write now: the previous buckets plus what happened since (`duplicates`: per
 * bucket, since the last write), without buckets older than KEEP_MS. A delivery counts once per
 * destination.
 */
export function nextActivity(source: ActivitySource, previous: Activity | undefined, duplicates: ReadonlyMap<number, number>, now: number): Activity {
  const buckets = new Map<string, Counts>();
  const oldest = bucketOf(now - KEEP_MS);
  for (const [bucket, counts] of Object.entries(previous?.buckets ?? {})) if (Number(bucket) >= oldest) buckets.set(bucket, [...counts]);
  const add = (bucket: number, index: 0 | 1 | 2 | 3 | 4, n: number) => {
    if (n === 0 || bucket < oldest) return;
    const counts: Counts = buckets.get(String(bucket)) ?? [0, 0, 0, 0, 0];
    counts[index] += n;
    buckets.set(String(bucket), counts);
  };
  for (const { acceptedAt } of source.accepted) add(bucketOf(acceptedAt), 0, 1);
  for (const [bucket, n] of duplicates) add(bucket, 1, n);
  const counted = previous?.through ?? 0;
  let through = counted;
  for (const { delivered, at, attempts } of source.settled(counted)) {
    if (at > now) continue;
    through = Math.max(through, at);
    add(bucketOf(at), delivered ? 2 : 4, 1);
    add(bucketOf(at), 3, Math.max(attempts - 1, 0));
  }
  // Sorted, so that the same activity is always the same text (the row is written only when its text changed).
  const sorted = [...buckets.entries()].sort(([a], [b]) => Number(a) - Number(b));
  return { through, buckets: Object.fromEntries(sorted) };
}

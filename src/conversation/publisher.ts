/**
 * The KV read model a conversation publishes (docs/design.md, "Read model"): its snapshot, at
 * most once per SNAPSHOT_INTERVAL_SECONDS. The object decides when; this module decides what, from
 * the stored rows.
 */
import { z } from "zod";
import { type DestinationSummary, LATENCY_BOUNDS_MS } from "../ops/conversation-index";
import { isoFromMillis } from "../time";
import { Outbox } from "./outbox";
import { DELIVERED } from "./schema";
import { ReadState } from "./read-state";
import { deadLetterKey, snapshotKey } from "./snapshot";

/** A snapshot holds the newest receipts that fit in this many bytes (KV allows 25 MiB; the API
 * reads the whole value on every call). */
export const MAX_SNAPSHOT_BYTES = 1024 * 1024;

/**
 * A snapshot holds at most this many readers' states, the newest by `lastReadAt`, within
 * MAX_SNAPSHOT_READS_BYTES: a group's reads are unbounded (issue 18: 122 Tencent callbacks of
 * 2,450 readers made a 27 MB snapshot, over KV's 25 MiB), so the snapshot is trimmed, never
 * refused. Every reader stays in the object, paged by the API and the dashboard.
 */
export const MAX_SNAPSHOT_READERS = 1000;
export const MAX_SNAPSHOT_READS_BYTES = 512 * 1024;

/** The `state` column of a `reads` row: one reader's ReadState as JSON. */
const ReadStateRow = z.object({ state: z.string() });
const Count = z.object({ n: z.number() });

/**
 * The snapshot (see `Snapshot` in snapshot.ts), assembled from the stored JSON text: the rows were
 * validated when written, so they are not parsed again for every publication.
 */
export function snapshotJson(sql: SqlStorage, outbox: Outbox, conversation: string, limit: number, now: number): string {
  const receipts: string[] = [];
  let bytes = 0;
  for (const body of outbox.recentBodies(limit)) {
    bytes += body.length;
    // Newest first, as many as fit (receipts carry their raw bodies, up to 64 KiB each).
    if (bytes > MAX_SNAPSHOT_BYTES && receipts.length > 0) break;
    receipts.push(body);
  }
  const newest = sql
    .exec("SELECT state FROM reads ORDER BY json_extract(state, '$.lastReadAt') DESC, reader LIMIT ?", MAX_SNAPSHOT_READERS + 1)
    .toArray()
    .map((row) => ReadStateRow.parse(row).state);
  // Fewer than the bound came back: that is every reader, no count needed.
  const readers = newest.length > MAX_SNAPSHOT_READERS ? Count.parse(sql.exec("SELECT COUNT(*) AS n FROM reads").one()).n : newest.length;
  const reads = boundedReads(newest);
  const head = JSON.stringify({ conversation, updatedAt: isoFromMillis(now) }).slice(0, -1);
  const bound = `"readers":${readers}${reads.length < readers ? ',"readsTruncated":true' : ""}`;
  const counts = outbox.counts();
  const deliveries = { ...Outbox.totals(counts), destinations: counts };
  return `${head},"receipts":[${receipts.join(",")}],"reads":[${reads.join(",")}],${bound},"deliveries":${JSON.stringify(deliveries)}}`;
}

/**
 * The read states a snapshot keeps, from the stored JSON texts newest first: at most
 * MAX_SNAPSHOT_READERS and MAX_SNAPSHOT_READS_BYTES, then in reader order (as the API pages them).
 */
export function boundedReads(newestFirst: readonly string[]): string[] {
  const kept: string[] = [];
  let bytes = 0;
  for (const state of newestFirst.slice(0, MAX_SNAPSHOT_READERS)) {
    bytes += state.length + 1;
    if (bytes > MAX_SNAPSHOT_READS_BYTES) break;
    kept.push(state);
  }
  // Each text is a ReadState written by this object; its reader is the sort key.
  return kept
    .map((state) => ({ state, reader: ReadState.parse(JSON.parse(state)).reader }))
    .sort((a, b) => (a.reader < b.reader ? -1 : a.reader > b.reader ? 1 : 0))
    .map((entry) => entry.state);
}

/** The window of the latency histogram each destination's summary carries. */
export const LATENCY_WINDOW_MS = 3600_000;

/**
 * Each destination's summary for the conversation's index row: counts, dead letters in brief,
 * last delivery, and the last hour's latencies. Rows read only, before any await of the publication.
 */
export function destinationSummaries(outbox: Outbox, now: number): Record<string, DestinationSummary> {
  const counts = outbox.counts();
  const latency = new Map<string, number[]>();
  for (const settled of outbox.settledSince(now - LATENCY_WINDOW_MS, now)) {
    if (settled.status !== DELIVERED) continue;
    const histogram = latency.get(settled.destination) ?? new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    const ms = settled.at - settled.acceptedAt;
    const bucket = LATENCY_BOUNDS_MS.findIndex((bound) => ms <= bound);
    histogram[bucket === -1 ? LATENCY_BOUNDS_MS.length : bucket] = (histogram[bucket === -1 ? LATENCY_BOUNDS_MS.length : bucket] ?? 0) + 1;
    latency.set(settled.destination, histogram);
  }
  const out: Record<string, DestinationSummary> = {};
  for (const [name, { pending, failed }] of Object.entries(counts)) {
    const range = failed > 0 ? outbox.failedRange(name) : undefined;
    const last = outbox.lastDelivery(name);
    out[name] = {
      pending,
      failed,
      oldestFailedAt: range ? isoFromMillis(range.oldestFailedAt) : null,
      lastError: range ? range.lastError : null,
      lastDeliveredAt: last ? isoFromMillis(last.at) : null,
      lastLatencyMs: last ? last.latencyMs : null,
      latency: latency.get(name) ?? [],
    };
  }
  return out;
}

/**
 * Writes the snapshot (when `snapshot` is given). `legacyEntry`: the conversation still has a KV
 * dead-letter entry from before the D1 index replaced it (migrations/0001), which is deleted.
 */
export async function publishToKv(kv: KVNamespace, conversation: string, snapshot: string | undefined, legacyEntry: boolean): Promise<void> {
  if (snapshot !== undefined) await kv.put(await snapshotKey(conversation), snapshot);
  if (legacyEntry) await kv.delete(await deadLetterKey(conversation));
}

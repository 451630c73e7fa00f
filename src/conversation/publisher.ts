/**
 * The KV read model a conversation publishes (docs/design.md, "Read model"): its snapshot, at
 * most once per SNAPSHOT_INTERVAL_SECONDS. The object decides when; this module decides what, from
 * the stored rows.
 */
import { z } from "zod";
import type { Outbox } from "./outbox";
import { deadLetterKey, snapshotKey, type DeadLetterEntry } from "./snapshot";

/** A snapshot holds the newest receipts that fit in this many bytes (KV allows 25 MiB; the API
 * reads the whole value on every call). */
export const MAX_SNAPSHOT_BYTES = 1024 * 1024;

const StateRow = z.object({ state: z.string() });
const iso = (ms: number) => new Date(ms).toISOString();

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
  const reads = sql
    .exec("SELECT state FROM reads ORDER BY reader")
    .toArray()
    .map((row) => StateRow.parse(row).state);
  const head = JSON.stringify({ conversation, updatedAt: iso(now) }).slice(0, -1);
  return `${head},"receipts":[${receipts.join(",")}],"reads":[${reads.join(",")}],"deliveries":${JSON.stringify(outbox.counts())}}`;
}

/** The conversation's dead letters in brief (count, oldest, last error) for its index row, or undefined when it has none. */
export function deadLetterEntry(outbox: Outbox, conversation: string): DeadLetterEntry | undefined {
  const { failed } = outbox.counts();
  const range = failed > 0 ? outbox.failedRange() : undefined;
  if (!range) return undefined;
  return { conversation, failed, oldestFailedAt: iso(range.oldestFailedAt), lastError: range.lastError };
}

/**
 * Writes the snapshot (when `snapshot` is given). `legacyEntry`: the conversation still has a KV
 * dead-letter entry from before the D1 index replaced it (migrations/0001), which is deleted.
 */
export async function publishToKv(kv: KVNamespace, conversation: string, snapshot: string | undefined, legacyEntry: boolean): Promise<void> {
  if (snapshot !== undefined) await kv.put(await snapshotKey(conversation), snapshot);
  if (legacyEntry) await kv.delete(await deadLetterKey(conversation));
}

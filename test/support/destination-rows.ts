/** Index rows with per-destination parts (column `destinations`, migration 0004) written directly, for tests of what reads them. */
import { expect } from "vitest";
import { env } from "cloudflare:workers";
import { LATENCY_BOUNDS_MS, writeIndexRow, type DestinationSummary, type IndexContent } from "../../src/ops/conversation-index";
import { parseConversationKey } from "../../src/receipt";
import { publishNow, runAlarm, useSettings, type SettingOverrides } from "./conversation-object";
import { script, waitFor } from "./origin-control";
import { makeReceipt, stubFor } from "./receipts";

export const iso = (ms: number) => new Date(ms).toISOString();

/** A destination's part of a row: nothing pending, failed or delivered unless `part` says otherwise. */
export function summary(part: Partial<DestinationSummary> = {}): DestinationSummary {
  return {
    pending: 0,
    failed: 0,
    oldestFailedAt: null,
    lastError: null,
    lastDeliveredAt: null,
    lastLatencyMs: null,
    latency: new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0),
    ...part,
  };
}

/** A latency histogram with `count` deliveries in the bucket whose upper bound is `boundMs` (past the last bound: the overflow bucket). */
export function latencies(...buckets: [boundMs: number, count: number][]): number[] {
  const histogram = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
  for (const [boundMs, count] of buckets) {
    const i = LATENCY_BOUNDS_MS.indexOf(boundMs);
    histogram[i < 0 ? LATENCY_BOUNDS_MS.length : i]! += count;
  }
  return histogram;
}

/** Writes `key`'s row as of `at` with these destinations' parts; its totals are their sums, as the object writes them. */
export async function destinationRow(
  key: string,
  parts: Record<string, Partial<DestinationSummary>>,
  at: number,
  { unrouted = 0, db = env.DB }: { unrouted?: number; db?: D1Database } = {},
): Promise<void> {
  const destinations = Object.fromEntries(Object.entries(parts).map(([name, part]) => [name, summary(part)]));
  const all = Object.values(destinations);
  const failing = all.filter((part) => part.failed > 0);
  const row: IndexContent = {
    key,
    ...parseConversationKey(key),
    accepted: 1,
    last_receipt_at: iso(at),
    pending: all.reduce((sum, part) => sum + part.pending, 0),
    failed: all.reduce((sum, part) => sum + part.failed, 0),
    oldest_failed_at:
      failing
        .map((part) => part.oldestFailedAt)
        .filter((value) => value !== null)
        .sort()[0] ?? null,
    last_error: failing[0]?.lastError ?? null,
    last_delivered_at: null,
    last_latency_ms: null,
    activity: null,
    destinations: JSON.stringify(destinations),
    unrouted,
  };
  await writeIndexRow(db, row, at);
}

/** DESTINATIONS naming `crm`, at the test origin's /crm, signed with the test secret: a second destination beside `origin`. */
export function withCrm(name = "crm"): Record<string, string> {
  const origin = new URL((env as unknown as { ORIGIN_URL: string }).ORIGIN_URL);
  return {
    DESTINATIONS: JSON.stringify([{ name, url: `${origin.origin}/${name}`, secret: "FORWARD_SECRET_CRM" }]),
    FORWARD_SECRET_CRM: (env as unknown as { FORWARD_SECRET: string }).FORWARD_SECRET,
  };
}

/** A conversation whose object forwards to `origin` and `crm` (withCrm), both of which refuse (400): `receipts` dead letters at each, published to the index. */
export async function deadLettersAtBoth(conversation: string, receipts: number): Promise<void> {
  const stub = stubFor(conversation);
  await useSettings(stub, withCrm() as SettingOverrides);
  const refusals = Array.from({ length: receipts }, () => ({ status: 400 }));
  await script(conversation, refusals, "/receipts");
  await script(conversation, refusals, "/crm");
  for (let n = 1; n <= receipts; n++) await stub.accept(makeReceipt(conversation, n));
  const failed = await waitFor("dead letters at both destinations", async () => {
    await runAlarm(stub);
    const list = (await stub.deliveries("failed")) ?? [];
    return list.length === 2 * receipts ? list : undefined;
  });
  expect(new Set(failed.map((delivery) => delivery.destination))).toEqual(new Set(["origin", "crm"]));
  await publishNow(stub);
}

// Activity buckets in the D1 index (src/ops/activity.ts) and the counts GET /v1/stats makes of them.
import { Outbox } from "../src/conversation/outbox";
import { describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { Activity, BUCKET_MS, bucketOf, KEEP_MS, nextActivity } from "../src/ops/activity";
import { IndexRow } from "../src/ops/conversation-index";
import { tallyActivity } from "../src/ops/stats";
import { api, unique } from "./support/callbacks";
import { publishNow, retryNow, runAlarm } from "./support/conversation-object";
import { script } from "./support/origin-control";
import { makeReceipt, stubFor } from "./support/receipts";

/** A conversation under a provider name of its own, so that the relay-wide stats show this test's counts alone. */
const ownProvider = () => {
  const provider = unique("act").replaceAll("-", "");
  return { provider, conversation: `${provider}:1400000001:u:alice:bob` };
};

async function activityOf(conversation: string): Promise<Activity> {
  const row = IndexRow.parse(await env.DB.prepare("SELECT * FROM conversations WHERE key = ?").bind(conversation).first());
  return Activity.parse(JSON.parse(row.activity ?? "null"));
}

const sum = (activity: Activity): number[] =>
  Object.values(activity.buckets).reduce<number[]>((total, counts) => total.map((n, i) => n + (counts[i] ?? 0)), [0, 0, 0, 0, 0]);

const StatsCounts = z.object({
  callbacks: z.object({
    accepted: z.number(),
    duplicates: z.number(),
    byProvider: z.record(z.string(), z.object({ accepted: z.number(), duplicates: z.number() })),
  }),
  deliveries: z.object({ delivered: z.number(), retried: z.number(), failed: z.number() }),
  series: z.array(z.object({ at: z.string(), accepted: z.number(), duplicates: z.number(), delivered: z.number(), retried: z.number(), failed: z.number() })),
});

describe("activity in the conversation index", () => {
  it("counts receipts, duplicates, deliveries with their retries, and dead letters, each once", async () => {
    const { provider, conversation } = ownProvider();
    const stub = stubFor(conversation);
    // Receipt 1: refused once (503), then delivered; 2: delivered; 3: rejected (400), a dead letter.
    await script(conversation, [{ status: 503 }, { status: 200 }, { status: 200 }, { status: 400 }]);
    for (let n = 1; n <= 3; n++) expect(await stub.accept(makeReceipt(conversation, n))).toBe("accepted");
    expect(await stub.accept(makeReceipt(conversation, 2))).toBe("duplicate");
    await runAlarm(stub);
    await retryNow(stub);
    await publishNow(stub);
    // accepted, duplicates, delivered, retried, failed
    expect(sum(await activityOf(conversation))).toEqual([3, 1, 2, 1, 1]);

    // Published again with nothing new: nothing counted twice. One more receipt adds only itself.
    await publishNow(stub);
    await stub.accept(makeReceipt(conversation, 4));
    await runAlarm(stub);
    await publishNow(stub);
    expect(sum(await activityOf(conversation))).toEqual([4, 1, 3, 1, 1]);

    for (const window of ["1h", "24h"]) {
      const stats = StatsCounts.parse(await (await api(`/v1/stats?window=${window}`)).json());
      expect(stats.callbacks.byProvider[provider]).toEqual({ accepted: 4, duplicates: 1 });
      expect(stats.deliveries.delivered).toBeGreaterThanOrEqual(3);
      expect(stats.series.length).toBe(window === "1h" ? 13 : 289);
      const now = stats.series.at(-1);
      expect(now?.accepted).toBeGreaterThanOrEqual(4);
    }
  });

  it("a replayed dead letter counts again when it settles", async () => {
    const { conversation } = ownProvider();
    const stub = stubFor(conversation);
    await script(conversation, [{ status: 400 }]);
    await stub.accept(makeReceipt(conversation, 1));
    await runAlarm(stub);
    await publishNow(stub);
    expect(sum(await activityOf(conversation))).toEqual([1, 0, 0, 0, 1]);
    await stub.retryDeadLetters();
    await runAlarm(stub);
    await publishNow(stub);
    expect(sum(await activityOf(conversation))).toEqual([1, 0, 1, 0, 1]);
  });

  it("drops buckets older than a day, and adds the new ones", async () => {
    const { conversation } = ownProvider();
    const stub = stubFor(conversation);
    await stub.accept(makeReceipt(conversation, 1));
    const now = Date.now();
    const old = String(bucketOf(now - KEEP_MS - 2 * BUCKET_MS));
    const recent = String(bucketOf(now - 3_600_000));
    const next = await runInDurableObject(stub, (_, state) => {
      const outbox = new Outbox(state.storage.sql);
      outbox.load();
      return nextActivity(
        { accepted: outbox.acceptedSince(0), settled: (through) => outbox.settledSince(through, now) },
        {
          through: 0,
          buckets: { [old]: [9, 9, 9, 9, 9], [recent]: [1, 0, 1, 0, 0] },
        },
        new Map(),
        now,
      );
    });
    expect(Object.keys(next.buckets)).toEqual([recent, String(bucketOf(now))]);
    expect(next.buckets[String(bucketOf(now))]).toEqual([1, 0, 0, 0, 0]);
  });

  it("tallies every bucket of the window, zeros included, oldest first (pure)", () => {
    const from = bucketOf(Date.UTC(2026, 0, 1, 0, 0));
    const tally = tallyActivity(
      [
        { provider: "easemob", bucket: from, accepted: 2, duplicates: 1, delivered: 2, retried: 0, failed: 0 },
        { provider: "tencent", bucket: from + 600, accepted: 1, duplicates: 0, delivered: 0, retried: 3, failed: 1 },
      ],
      from,
      from + 900,
    );
    expect(tally.callbacks).toEqual({
      accepted: 3,
      duplicates: 1,
      byProvider: { easemob: { accepted: 2, duplicates: 1 }, tencent: { accepted: 1, duplicates: 0 } },
    });
    expect(tally.deliveries).toEqual({ delivered: 2, retried: 3, failed: 1 });
    expect(tally.series.map((bucket) => [bucket.at.slice(11, 16), bucket.accepted])).toEqual([
      ["00:00", 2],
      ["00:05", 0],
      ["00:10", 1],
      ["00:15", 0],
    ]);
  });
});

// Destinations (docs/destinations.md): each receipt goes to every destination whose match takes it,
// each destination in its own order; a failing, paused or removed destination never holds up
// another. Each test gives its objects a DESTINATIONS setting of destinations that are paths of the
// one test origin (scripted per conversation and path) and drives their alarms itself.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { inject } from "vitest";
import { controlStub, forgetPaused } from "../src/destinations/control";
import { pacingWait } from "../src/conversation/delivery-runs";
import { healthOf } from "../src/health";
import { z } from "zod";
import { Receipt } from "../src/receipt";
import { retryNow, runAlarm, useSettings, type SettingOverrides } from "./support/conversation-object";
import { attempts, script, waitFor } from "./support/origin-control";
import { makeReceipt, stubFor } from "./support/receipts";
import { unique } from "./support/callbacks";
import "./support/provided-context";

const at = (path: string) => `http://127.0.0.1:${inject("originPort")}${path}`;

/** The "done when" of the destinations issue: Easemob only, group chats only, and everything (failing in the tests that script it). */
const THREE = JSON.stringify([
  { name: "crm", url: at("/crm"), secret: "FORWARD_SECRET", match: { provider: ["easemob"] } },
  { name: "groups", url: at("/groups"), secret: "FORWARD_SECRET", match: { chat: ["group"] } },
  { name: "sink", url: at("/sink"), secret: "FORWARD_SECRET", retrySchedule: "60,60" },
]);
const settings = (destinations = THREE, extra: SettingOverrides = {}): SettingOverrides => ({ ORIGIN_URL: "", DESTINATIONS: destinations, ...extra });

function conversationOf(provider: "easemob" | "tencent", chat: "single" | "group") {
  const conversation = unique(`${provider}:app:${chat === "single" ? "u:alice" : "g"}:c-`);
  const receipt = (n: number): Receipt => makeReceipt(conversation, n, { provider, chat, app: "app", ...(chat === "group" ? { group: "c" } : {}) });
  return { conversation, receipt };
}

/** Receipt ids each path of the destination answered 2xx for, in arrival order. */
async function deliveredByPath(conversation: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const attempt of await attempts(conversation)) {
    if (attempt.status < 200 || attempt.status >= 300) continue;
    (out[attempt.path] ??= []).push(...attempt.receiptIds);
  }
  return out;
}

describe("destinations", () => {
  it("delivers exactly the matching receipts to each destination, in order, while the failing one backs off and dead-letters alone", async () => {
    const cases = [conversationOf("easemob", "single"), conversationOf("tencent", "group"), conversationOf("easemob", "group")];
    for (const { conversation } of cases) {
      await useSettings(stubFor(conversation), settings());
      // sink answers 503 to everything of these conversations: two retries, then dead letters.
      await script(conversation, Array(30).fill({ status: 503 }), "/sink");
    }
    const ids = new Map<string, string[]>();
    for (const { conversation, receipt } of cases) {
      const stub = stubFor(conversation);
      const made: string[] = [];
      for (let n = 1; n <= 3; n++) {
        expect(await stub.accept(receipt(n))).toBe("accepted");
        made.push(receipt(n).id);
      }
      ids.set(conversation, made);
      await runAlarm(stub);
    }
    const [single, tencentGroup, easemobGroup] = cases.map((entry) => entry.conversation) as [string, string, string];
    // The healthy destinations have everything they match, in order, while sink's heads wait.
    expect(await deliveredByPath(single)).toEqual({ "/crm": ids.get(single) });
    expect(await deliveredByPath(tencentGroup)).toEqual({ "/groups": ids.get(tencentGroup) });
    expect(await deliveredByPath(easemobGroup)).toEqual({ "/crm": ids.get(easemobGroup), "/groups": ids.get(easemobGroup) });
    // sink was tried once per conversation (its head only: order), then waits for its retry.
    for (const conversation of [single, tencentGroup, easemobGroup]) {
      const sink = (await attempts(conversation)).filter((attempt) => attempt.path === "/sink");
      expect(sink.map((attempt) => [attempt.receiptIds, attempt.status])).toEqual([[[ids.get(conversation)![0]], 503]]);
      const owed = (await stubFor(conversation).deliveries()) ?? [];
      expect(owed.map((delivery) => [delivery.destination, delivery.status])).toEqual([
        ["sink", "pending"],
        ["sink", "pending"],
        ["sink", "pending"],
      ]);
    }
    // Its schedule (two retries) runs out: each receipt becomes sink's dead letter in turn, the others untouched.
    const stub = stubFor(single);
    for (let run = 0; run < 9; run++) await retryNow(stub);
    const all = (await stub.deliveries("all")) ?? [];
    expect(all.map((delivery) => [delivery.destination, delivery.status, delivery.attempts])).toEqual([
      ["crm", "delivered", 1],
      ["sink", "failed", 3],
      ["crm", "delivered", 1],
      ["sink", "failed", 3],
      ["crm", "delivered", 1],
      ["sink", "failed", 3],
    ]);
    expect(await stub.deliveryCounts()).toEqual({ destinations: { crm: { pending: 0, failed: 0 }, sink: { pending: 0, failed: 3 } }, unrouted: 0 });
    // One webhook-id per receipt at every destination.
    const byId = new Map<string, Set<string>>();
    for (const attempt of await attempts(single)) byId.set(attempt.id, (byId.get(attempt.id) ?? new Set()).add(attempt.path));
    expect([...byId.values()].map((paths) => [...paths].sort())).toEqual([
      ["/crm", "/sink"],
      ["/crm", "/sink"],
      ["/crm", "/sink"],
    ]);
    // A retry of sink's dead letters goes to sink only.
    await script(single, [], "/sink");
    expect(await stub.retryDeadLetters("sink")).toEqual({ requeued: 3 });
    await runAlarm(stub);
    expect((await deliveredByPath(single))["/sink"]).toEqual(ids.get(single));
    expect((await deliveredByPath(single))["/crm"]).toEqual(ids.get(single));
  });

  it("stores and counts a receipt that matches no destination (unrouted), and delivers nothing of it", async () => {
    const { conversation, receipt } = conversationOf("tencent", "single");
    const stub = stubFor(conversation);
    await useSettings(stub, settings(JSON.stringify([{ name: "crm", url: at("/crm"), secret: "FORWARD_SECRET", match: { provider: ["easemob"] } }])));
    expect(await stub.accept(receipt(1))).toBe("accepted");
    await runAlarm(stub);
    expect(await attempts(conversation)).toEqual([]);
    expect(await stub.deliveryCounts()).toEqual({ destinations: {}, unrouted: 1 });
    const kept: unknown = await stub.recent(5);
    expect(
      z
        .array(Receipt)
        .parse(kept)
        .map((stored) => stored.id),
    ).toEqual([receipt(1).id]);
  });

  it("holds new attempts of a paused destination, keeps its receipts, and sends them in order after a resume", async () => {
    const { conversation, receipt } = conversationOf("easemob", "group");
    const stub = stubFor(conversation);
    const two = JSON.stringify([
      { name: "crm", url: at("/crm"), secret: "FORWARD_SECRET" },
      { name: "paused-one", url: at("/paused"), secret: "FORWARD_SECRET" },
    ]);
    await useSettings(stub, settings(two));
    const control = controlStub(env.DESTINATION_CONTROL);
    await control.pause("paused-one", Date.now());
    forgetPaused();
    try {
      for (let n = 1; n <= 3; n++) await stub.accept(receipt(n));
      await runAlarm(stub);
      expect(Object.keys(await deliveredByPath(conversation))).toEqual(["/crm"]);
      expect(((await stub.deliveries(undefined, 10, 0, "paused-one")) ?? []).map((delivery) => delivery.status)).toEqual(["pending", "pending", "pending"]);
    } finally {
      await control.resume("paused-one");
      forgetPaused();
    }
    await runAlarm(stub);
    const sent = await waitFor("the paused backlog", async () => {
      const paths = await deliveredByPath(conversation);
      return paths["/paused"]?.length === 3 ? paths["/paused"] : undefined;
    });
    expect(sent).toEqual([1, 2, 3].map((n) => receipt(n).id));
  });

  it("makes what is owed to a removed destination its dead letters, and can purge them", async () => {
    const { conversation, receipt } = conversationOf("easemob", "single");
    const stub = stubFor(conversation);
    const gone = JSON.stringify([{ name: "gone", url: at("/gone"), secret: "FORWARD_SECRET" }]);
    await useSettings(stub, settings(gone));
    await script(conversation, Array(5).fill({ status: 503 }), "/gone");
    await stub.accept(receipt(1));
    await stub.accept(receipt(2));
    await runAlarm(stub);
    // The destination is removed from DESTINATIONS (a deploy): the next alarm settles what it was owed.
    await useSettings(stub, settings(JSON.stringify([{ name: "crm", url: at("/crm"), secret: "FORWARD_SECRET" }])));
    await runAlarm(stub);
    const failed = (await stub.deliveries("failed", 10, 0, "gone")) ?? [];
    expect(failed.map((delivery) => [delivery.seq, delivery.lastError])).toEqual([
      [1, "destination gone is no longer configured (DESTINATIONS, ORIGIN_URL)"],
      [2, "destination gone is no longer configured (DESTINATIONS, ORIGIN_URL)"],
    ]);
    // Receipts after the change go to crm only.
    await stub.accept(receipt(3));
    await runAlarm(stub);
    expect((await deliveredByPath(conversation))["/crm"]).toEqual([receipt(3).id]);
    expect(await stub.purgeDeadLetters("gone")).toEqual({ purged: 2 });
    expect(await stub.deliveries("failed")).toEqual([]);
  });

  it("holds a misconfigured destination's receipts while the others deliver, and sends them once it is fixed", async () => {
    const { conversation, receipt } = conversationOf("easemob", "single");
    const stub = stubFor(conversation);
    const broken = JSON.stringify([
      { name: "crm", url: at("/crm"), secret: "FORWARD_SECRET" },
      { name: "later", url: at("/later"), secret: "FORWARD_SECRET_LATER" },
    ]);
    await useSettings(stub, settings(broken));
    await stub.accept(receipt(1));
    await runAlarm(stub);
    expect(Object.keys(await deliveredByPath(conversation))).toEqual(["/crm"]);
    // FORWARD_SECRET_LATER is set (a secret put): the held receipt goes out.
    await useSettings(stub, settings(broken, { FORWARD_SECRET_LATER: env.FORWARD_SECRET }));
    await retryNow(stub, settings(broken, { FORWARD_SECRET_LATER: env.FORWARD_SECRET }));
    expect((await deliveredByPath(conversation))["/later"]).toEqual([receipt(1).id]);
  });

  it("replays a delivered window to one destination only, and gives a destination added later the past on request", async () => {
    const { conversation, receipt } = conversationOf("easemob", "single");
    const stub = stubFor(conversation);
    const one = JSON.stringify([{ name: "crm", url: at("/crm"), secret: "FORWARD_SECRET" }]);
    await useSettings(stub, settings(one));
    const from = Date.now();
    for (let n = 1; n <= 2; n++) await stub.accept(receipt(n));
    await runAlarm(stub);
    const two = JSON.stringify([
      { name: "crm", url: at("/crm"), secret: "FORWARD_SECRET" },
      { name: "late", url: at("/late"), secret: "FORWARD_SECRET", match: { provider: ["easemob"] } },
    ]);
    await useSettings(stub, settings(two));
    // Added later: it gets what is accepted from now on...
    await stub.accept(receipt(3));
    await runAlarm(stub);
    expect(await deliveredByPath(conversation)).toEqual({ "/crm": [1, 2, 3].map((n) => receipt(n).id), "/late": [receipt(3).id] });
    // ...and the past on request, without sending anything again to crm.
    expect(await stub.redeliver(from, Date.now(), "late")).toEqual({ requeued: 3 });
    await runAlarm(stub);
    const paths = await deliveredByPath(conversation);
    expect(paths["/crm"]).toEqual([1, 2, 3].map((n) => receipt(n).id));
    expect(paths["/late"]).toEqual([3, 1, 2, 3].map((n) => receipt(n).id));
  });
});

describe("maxPerSecond", () => {
  it("waits the rest of 1/maxPerSecond after the last request started, and not at all before the first", () => {
    expect(pacingWait(undefined, 4, 1_000)).toBe(0);
    expect(pacingWait(1_000, 4, 1_000)).toBe(250);
    expect(pacingWait(1_000, 4, 1_100)).toBe(150);
    expect(pacingWait(1_000, 4, 1_250)).toBe(0);
    expect(pacingWait(1_000, 4, 5_000)).toBe(0);
    expect(pacingWait(1_000, 10_000, 1_000)).toBeCloseTo(0.1);
  });

  it("starts one object's requests to a destination at least 1/maxPerSecond apart, and no other destination waits for it", async () => {
    const { conversation, receipt } = conversationOf("easemob", "single");
    const stub = stubFor(conversation);
    const paced = JSON.stringify([
      { name: "slow", url: at("/slow"), secret: "FORWARD_SECRET", maxPerSecond: 4 },
      { name: "fast", url: at("/fast"), secret: "FORWARD_SECRET" },
    ]);
    await useSettings(stub, settings(paced));
    for (let n = 1; n <= 4; n++) await stub.accept(receipt(n));
    await runAlarm(stub);
    // When the relay started each request, as it recorded them (the origin's arrival times would
    // depend on the machine's load; these are bounded by the code alone).
    const startedAt = async (destination: string) =>
      ((await stub.deliveries("delivered", 10, 0, destination)) ?? []).map((delivery) => Date.parse(delivery.attemptLog[0]!.at));
    const slow = await startedAt("slow");
    expect(slow).toHaveLength(4);
    for (let i = 1; i < slow.length; i++) expect(slow[i]! - slow[i - 1]!).toBeGreaterThanOrEqual(250);
    // The fast destination is not paced: its four had started before the slow one's last could (750 ms in).
    const fast = await startedAt("fast");
    expect(fast).toHaveLength(4);
    expect(Math.max(...fast)).toBeLessThan(slow[3]!);
    expect(await deliveredByPath(conversation)).toEqual({
      "/slow": [1, 2, 3, 4].map((n) => receipt(n).id),
      "/fast": [1, 2, 3, 4].map((n) => receipt(n).id),
    });
  });
});

describe("/healthz with destinations", () => {
  it("answers degraded naming a misconfigured destination and the setting to fix, never a secret, while the others stay active", async () => {
    const destinations = JSON.stringify([
      { name: "crm", url: at("/crm"), secret: "FORWARD_SECRET" },
      { name: "broken", url: "ftp://nowhere", secret: "FORWARD_SECRET" },
      { name: "unset", url: at("/unset"), secret: "FORWARD_SECRET_UNSET" },
    ]);
    // DESTINATIONS is not in Env (no default in wrangler.toml): the relay reads it from the raw environment.
    const settings: Env & { DESTINATIONS: string } = { ...env, ORIGIN_URL: "", DESTINATIONS: destinations };
    const health = await healthOf(settings);
    expect(health.status).toBe("degraded");
    expect(health.destinations).toEqual([
      { name: "crm", state: "active", host: new URL(at("/crm")).host },
      { name: "broken", state: "misconfigured", setting: "DESTINATIONS", reason: expect.stringContaining("url") },
      { name: "unset", state: "misconfigured", setting: "FORWARD_SECRET_UNSET", reason: expect.stringContaining("FORWARD_SECRET_UNSET") },
    ]);
    expect(health.problems.map((problem) => [problem.setting, problem.feature])).toEqual(
      expect.arrayContaining([
        ["DESTINATIONS", "destinations"],
        ["FORWARD_SECRET_UNSET", "destinations"],
      ]),
    );
    expect(JSON.stringify(health)).not.toContain(env.FORWARD_SECRET.slice("whsec_".length, "whsec_".length + 12));
  });
});

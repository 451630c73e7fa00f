// Held deliveries: with ORIGIN_URL unset (store-only) or a forwarding setting malformed, receipts
// are still accepted and queued, and go out in order once forwarding works. Each test gives its
// object other settings (test/support/conversation-object.ts) and runs its alarm itself.
import { describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { evictDurableObject } from "./support/evict";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { Receipt } from "../src/receipt";
import { stateNumber, publishNow, retryNow, runAlarm, scheduledAlarm, setState, useSettings } from "./support/conversation-object";
import { attempts, delivered, script, waitFor } from "./support/origin-control";
import { acceptAll, makeReceipt, newConversation, stubFor } from "./support/receipts";

/** The held back-off: 30 s, doubling, at most an hour. */
const HELD_WAITS_S = [30, 60, 120, 240, 480, 960, 1920, 3600, 3600];

describe("held deliveries", () => {
  it("stores and queues receipts while ORIGIN_URL is unset, and delivers them in order once it is set", async () => {
    const conversation = newConversation();
    let stub = stubFor(conversation);
    await useSettings(stub, { ORIGIN_URL: "" });
    const ids = await acceptAll(conversation, 1, 3);
    await runAlarm(stub);
    await publishNow(stub);
    expect(await attempts(conversation)).toEqual([]);
    expect(
      z
        .array(Receipt)
        .parse(await stub.recent(10))
        .map((receipt) => receipt.id),
    ).toEqual([...ids].reverse());
    expect((await stub.deliveries("pending"))?.map((delivery) => [delivery.receiptId, delivery.attempts])).toEqual(ids.map((id) => [id, 0]));
    // Nothing is due but the recheck of the settings.
    const heldUntil = await runInDurableObject(stub, (_, state) => stateNumber(state.storage, "held:origin_retry_at"));
    expect(await scheduledAlarm(stub)).toBe(heldUntil);

    // ORIGIN_URL is set: a deploy restarts the object, which sets its alarm for now on loading.
    stub = await evictDurableObject(env.CONVERSATION, stub);
    await stub.deliveries();
    const arrived = await waitFor("the backlog", async () => {
      const seen = await delivered(conversation);
      return seen.length >= ids.length ? seen : undefined;
    });
    expect(arrived).toEqual(ids);
    expect(await stub.deliveries()).toEqual([]);
  });

  it("looks at held settings again after 30 s, doubling up to an hour", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await useSettings(stub, { ORIGIN_URL: "" });
    await acceptAll(conversation, 1, 1);
    const rounds = await runInDurableObject(stub, async (instance, state) => {
      // The acceptance armed a real alarm, due at once: stop it, let a run it began end, and start
      // from no failure, so that only the runs below count (on a loaded machine it fired first).
      await state.storage.deleteAlarm();
      const inFlight: unknown = Reflect.get(instance, "alarmRuns");
      if (inFlight instanceof Promise) await inFlight;
      await state.storage.deleteAlarm();
      setState(state.storage, "held:origin_failures", 0);
      const seen: { startedAt: number; retryAt: number; endedAt: number; afterEarlyRun: number }[] = [];
      for (let round = 0; round < HELD_WAITS_S.length; round++) {
        // Due now, as if the last wait had passed.
        setState(state.storage, "held:origin_retry_at", 0);
        const startedAt = Date.now();
        await instance.alarm();
        const endedAt = Date.now();
        const retryAt = stateNumber(state.storage, "held:origin_retry_at");
        // A run before the wait is over leaves it alone.
        await instance.alarm();
        seen.push({ startedAt, retryAt, endedAt, afterEarlyRun: stateNumber(state.storage, "held:origin_retry_at") });
      }
      return { seen, failures: stateNumber(state.storage, "held:origin_failures") };
    });
    rounds.seen.forEach((round, i) => {
      const waitMs = HELD_WAITS_S[i]! * 1000;
      // Set during the run: the wait counts from some moment between its start and its end.
      expect(round.retryAt).toBeGreaterThanOrEqual(round.startedAt + waitMs);
      expect(round.retryAt).toBeLessThanOrEqual(round.endedAt + waitMs);
      expect(round.afterEarlyRun).toBe(round.retryAt);
    });
    expect(rounds.failures).toBe(HELD_WAITS_S.length);
    expect(await attempts(conversation)).toEqual([]);
  });

  it("sends the backlog at the next receipt once forwarding works, without waiting for the recheck", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await useSettings(stub, { ORIGIN_URL: "" });
    const ids = await acceptAll(conversation, 1, 2);
    await runAlarm(stub);
    // Forwarding works again (in memory: as if the settings had changed under the running object).
    await runInDurableObject(stub, (instance) => {
      Object.assign(instance, { env });
    });
    ids.push(...(await acceptAll(conversation, 3, 1)));
    // The alarm set at acceptance delivers the three at once, not after the 30 s recheck.
    const arrived = await waitFor("the backlog", async () => {
      const seen = await delivered(conversation);
      return seen.length >= ids.length ? seen : undefined;
    });
    expect(arrived).toEqual(ids);
    expect(await runInDurableObject(stub, (_, state) => stateNumber(state.storage, "held:origin_failures"))).toBe(0);
  });

  it.each([
    ["FORWARD_RETRY_SCHEDULE", "5,soon"],
    ["FORWARD_SECRET", "whsec_typo"],
    ["FORWARD_TIMEOUT_MS", "5"],
  ] as const)("holds deliveries while %s is malformed at alarm time, counting no attempt", async (setting, malformed) => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(conversation, [{ status: 503 }]);
    const ids = await acceptAll(conversation, 1, 2);
    await runAlarm(stub);
    expect(await stub.deliveries("pending")).toMatchObject([
      { receiptId: ids[0], attempts: 1 },
      { receiptId: ids[1], attempts: 0 },
    ]);
    // The retry falls due while the setting is broken: nothing goes out, nothing is counted.
    await retryNow(stub, { [setting]: malformed });
    expect(await attempts(conversation)).toHaveLength(1);
    expect(await stub.deliveries("pending")).toMatchObject([
      { receiptId: ids[0], attempts: 1 },
      { receiptId: ids[1], attempts: 0 },
    ]);
    expect(await runInDurableObject(stub, (_, state) => stateNumber(state.storage, "held:origin_failures"))).toBe(1);
    // Fixed: the next run delivers both, in order.
    await retryNow(stub);
    expect(await delivered(conversation)).toEqual(ids);
    expect(await stub.deliveries()).toEqual([]);
  });
});

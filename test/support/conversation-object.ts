/**
 * Drives a conversation's object from a test, without waiting for real time: its settings, its
 * alarm, its outbox and its bookkeeping. With the test settings' retry steps of a minute, no retry
 * fires on its own during a test; a test makes the head due and runs the alarm itself. Alarm runs
 * are serialized in the object, so a run started here waits for a platform alarm in flight.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { OutboxRow } from "../../src/conversation/object";
import type { stubFor } from "./receipts";

export type ConversationStub = ReturnType<typeof stubFor>;
/** Settings to bind instead of those of vitest.config.ts (an empty string unsets one). */
export type SettingOverrides = { [Setting in keyof Env as Env[Setting] extends string ? Setting : never]?: string };

const settingsWith = (overrides: SettingOverrides): Env => ({ ...env, ...overrides });

/**
 * Gives the object other settings for as long as it stays in memory (an eviction, like a deploy,
 * brings back the bound ones). Settings are parsed once per env object, so these are parsed fresh.
 * Call it before the first receipt to have the receipt accepted under them too.
 */
export async function useSettings(stub: ConversationStub, overrides: SettingOverrides): Promise<void> {
  await runInDurableObject(stub, (instance) => {
    Object.assign(instance, { env: settingsWith(overrides) });
  });
}

/** Runs the alarm now, whether or not one is set, after any run in flight. */
export async function runAlarm(stub: ConversationStub): Promise<void> {
  await runInDurableObject(stub, (instance) => instance.alarm());
}

/**
 * As if every retry wait had passed: makes every pending delivery due and runs the alarm once.
 * With `overrides`, that one run sees other settings (the bound ones are back afterwards).
 */
export async function retryNow(stub: ConversationStub, overrides?: SettingOverrides): Promise<void> {
  await runInDurableObject(stub, async (instance, state) => {
    // A run in flight finishes first, so that it cannot record its attempt over the change below.
    await instance.alarm();
    state.storage.sql.exec("UPDATE outbox SET next_attempt_at = 0 WHERE status = 'pending'");
    if (!overrides) return instance.alarm();
    Object.assign(instance, { env: settingsWith(overrides) });
    try {
      await instance.alarm();
    } finally {
      Object.assign(instance, { env });
    }
  });
}

/** As if the snapshot interval had passed: the next run publishes what changed (after a run in flight). */
export async function publishNow(stub: ConversationStub): Promise<void> {
  await runInDurableObject(stub, async (instance, state) => {
    await instance.alarm();
    state.storage.sql.exec("UPDATE meta SET value = '0' WHERE key = 'published_at'");
    await instance.alarm();
  });
}

/** The outbox as stored (times in epoch ms), in acceptance order. */
export async function outboxRows(stub: ConversationStub): Promise<z.infer<typeof OutboxRow>[]> {
  return runInDurableObject(stub, (_, state) => z.array(OutboxRow).parse(state.storage.sql.exec("SELECT * FROM outbox ORDER BY seq").toArray()));
}

const MetaValue = z.object({ value: z.string() });

/** A number from the object's bookkeeping (`meta`: back-offs, versions), 0 when absent. */
export function metaNumber(storage: DurableObjectStorage, key: string): number {
  const row = storage.sql.exec("SELECT value FROM meta WHERE key = ?", key).toArray()[0];
  return row ? Number(MetaValue.parse(row).value) : 0;
}

export function setMeta(storage: DurableObjectStorage, key: string, value: number): void {
  storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", key, String(value));
}

/** When the object's alarm is set for (epoch ms), or null; reading it loads an evicted object. */
export async function scheduledAlarm(stub: ConversationStub): Promise<number | null> {
  return runInDurableObject(stub, (_, state) => state.storage.getAlarm());
}

/**
 * Drives a conversation's object from a test, without waiting for real time: its settings, its
 * alarm, its outbox and its small state. With the test settings' retry steps of a minute, no retry
 * fires on its own during a test; a test makes the head due and runs the alarm itself. Alarm runs
 * are serialized in the object, so a run started here waits for a platform alarm in flight.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { DeliveryRecord, ReceiptRow } from "../../src/conversation/outbox";
import { DELIVERED, PENDING } from "../../src/conversation/schema";
import type { stubFor } from "./receipts";

export type ConversationStub = ReturnType<typeof stubFor>;
/** Settings to bind instead of those of vitest.config.ts (an empty string unsets one). */
export type SettingOverrides = { [Setting in keyof Env as Env[Setting] extends string ? Setting : never]?: string } & {
  /** Not in Env (no default in wrangler.toml): a JSON array as text (docs/destinations.md). */
  DESTINATIONS?: string;
  /** The secret settings that DESTINATIONS names. */
  [secretSetting: `FORWARD_SECRET_${string}`]: string | undefined;
};

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
    // Every destination's pending record: due now.
    state.storage.sql.exec(
      `UPDATE receipts SET deliveries = (SELECT json_group_object(key, CASE WHEN json_extract(value, '$.s') = ? THEN json_set(value, '$.t', 0) ELSE json(value) END) FROM json_each(deliveries))
       WHERE deliveries IS NOT NULL`,
      PENDING,
    );
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
    const publishedAt = stateNumber(state.storage, "published_at");
    setState(state.storage, "published_at", 0);
    await instance.alarm();
    // Nothing was due: the last publication stands, as it would have.
    if (stateNumber(state.storage, "published_at") === 0) setState(state.storage, "published_at", publishedAt);
  });
}

/** One receipt's delivery to one destination as stored, with the names the columns had before destinations (times in epoch ms). */
export interface OutboxRow {
  seq: number;
  id: string;
  status: number;
  attempts: number;
  next_attempt_at: number;
  last_attempt_at: number | null;
  last_status: number | null;
  last_error: string | null;
  settled_at: number | null;
  batch: number | null;
}

/** What is owed to `destination` as stored (its pending and failed receipts), in acceptance order. */
export async function outboxRows(stub: ConversationStub, destination = "origin"): Promise<OutboxRow[]> {
  const rows = await runInDurableObject(stub, (_, state) =>
    z.array(ReceiptRow).parse(state.storage.sql.exec("SELECT * FROM receipts WHERE instr(routes, ?) > 0 ORDER BY seq", `,${destination},`).toArray()),
  );
  return rows
    .map((row) => {
      const stored: unknown = row.deliveries ? JSON.parse(row.deliveries)[destination] : undefined;
      const record = stored === undefined ? undefined : DeliveryRecord.parse(stored);
      return {
        seq: row.seq,
        id: row.id,
        status: record?.s ?? PENDING,
        attempts: record?.n ?? 0,
        next_attempt_at: record?.t ?? row.accepted_at,
        last_attempt_at: record?.a ?? null,
        last_status: record?.c ?? null,
        last_error: record?.e ?? null,
        settled_at: record?.d ?? null,
        batch: record?.b ?? null,
      };
    })
    .filter((row) => row.status !== DELIVERED);
}

const StateValue = z.object({ value: z.string() });

/** A number from the object's small state (`state`: back-offs, publication), 0 when absent. */
export function stateNumber(storage: DurableObjectStorage, key: string): number {
  const row = storage.sql.exec("SELECT value FROM state WHERE key = ?", key).toArray()[0];
  return row ? Number(StateValue.parse(row).value) : 0;
}

export function setState(storage: DurableObjectStorage, key: string, value: number): void {
  storage.sql.exec("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2", key, String(value));
}

/** When the object's alarm is set for (epoch ms), or null; reading it loads an evicted object. */
export async function scheduledAlarm(stub: ConversationStub): Promise<number | null> {
  return runInDurableObject(stub, (_, state) => state.storage.getAlarm());
}

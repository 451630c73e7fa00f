/**
 * Runs after each test file (vitest.config.ts, `setupFiles`): leaves no Durable Object alarm set or
 * running. An alarm that fires while the pool moves on to the next file, or shuts down, can leave
 * the run hanging with every test passed (measured: 2 runs in 3 of three small files hung without
 * this, none in 4 with it; cloudflare/workers-sdk#14903 has the same symptom). Tests drive alarms
 * themselves (runAlarm, runDurableObjectAlarm), so none is needed after the file's last test.
 */
import { afterAll } from "vitest";
import { listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";

/** The promise chains the relay's objects keep of their alarm runs (Conversation, ReplayJob). */
const RUN_CHAINS = ["alarmRuns", "running"];

async function quiesce<T extends Rpc.DurableObjectBranded>(namespace: DurableObjectNamespace<T>): Promise<void> {
  for (const id of await listDurableObjectIds(namespace)) {
    await runInDurableObject(namespace.get(id), async (instance: object, state) => {
      await state.storage.deleteAlarm();
      // A run in flight may set the alarm again as it ends: wait for it, then delete once more.
      for (const chain of RUN_CHAINS) {
        const run: unknown = Reflect.get(instance, chain);
        if (run instanceof Promise) await run.catch(() => undefined);
      }
      await state.storage.deleteAlarm();
    });
  }
}

afterAll(async () => {
  await quiesce(env.CONVERSATION);
  await quiesce(env.REPLAYS);
  await quiesce(env.CLAIMS);
});

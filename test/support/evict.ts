/**
 * Evicts a Durable Object as the platform does after a restart or a deploy: the instance is thrown
 * away and the next call constructs a new one from storage. `ctx.abort()` resets the object
 * (https://developers.cloudflare.com/durable-objects/api/state/#abort); the stub that saw the
 * reset stays broken, so this returns a new one. (`evictDurableObject` of `cloudflare:test` came
 * in releases of the Vitest integration later than the one that runs our wrangler's workerd.)
 */
import { runInDurableObject } from "cloudflare:test";

export async function evictDurableObject<T extends Rpc.DurableObjectBranded | undefined>(
  namespace: DurableObjectNamespace<T>,
  stub: DurableObjectStub<T>,
): Promise<DurableObjectStub<T>> {
  await runInDurableObject(stub, (_instance: unknown, state) => {
    state.abort("evicted by the test");
  }).catch(() => undefined);
  return namespace.get(stub.id);
}

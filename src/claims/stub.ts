/** The one way to reach the claims object that holds a key. */
import { claimShardName } from "./shard";

export function claimsStub(env: Env, key: string) {
  return env.CLAIMS.get(env.CLAIMS.idFromName(claimShardName(key)));
}

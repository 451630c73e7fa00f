// Relay-wide claims of signed nonces (Easemob callIds), in a real CallbackClaims object.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { CLAIM_SHARDS, claimShardName, fnv1a } from "../src/claims/shard";
import { claimsStub } from "../src/claims/stub";
import { unique } from "./support/callbacks";
import { rowsWrittenBy } from "./support/rows-written";

const MINUTE = 60_000;
/** A claims object of its own per test, so tests never share a shard. */
const ownStub = () => env.CLAIMS.get(env.CLAIMS.idFromName(unique("claims-test-")));

describe("CallbackClaims", () => {
  it("claims a key for its first conversation: the same one again is 'same', another is 'conflict'", async () => {
    const stub = ownStub();
    const key = unique("easemob:callid-");
    const expiresAt = Date.now() + 5 * MINUTE;
    expect(await stub.claim(key, "conversation-a", expiresAt)).toBe("claimed");
    expect(await stub.claim(key, "conversation-a", expiresAt)).toBe("same");
    expect(await stub.claim(key, "conversation-b", expiresAt)).toBe("conflict");
    expect(await stub.claim(unique("easemob:other-"), "conversation-b", expiresAt)).toBe("claimed");
  });

  it("forgets a claim once it has expired (the callback would be refused as too old by then)", async () => {
    const stub = ownStub();
    const key = unique("easemob:callid-");
    expect(await stub.claim(key, "conversation-a", Date.now() - 1)).toBe("claimed");
    expect(await stub.claim(key, "conversation-b", Date.now() + MINUTE)).toBe("claimed");
    expect(await stub.claim(key, "conversation-a", Date.now() + MINUTE)).toBe("conflict");
  });

  it("prunes expired claims at most once a minute, and writes one row per claim", async () => {
    const stub = ownStub();
    const measured = await runInDurableObject(stub, async (instance, state) => {
      const sql = state.storage.sql;
      const count = () => Number(sql.exec("SELECT COUNT(*) AS n FROM claims").one().n);
      const expire = () =>
        sql.exec(
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) INSERT OR IGNORE INTO claims (key, conversation, expires_at) SELECT 'expired-' || i, 'c', ? FROM n",
          Date.now() - 1000,
        );
      // The first claim after a start prunes.
      expire();
      await instance.claim("first", "c", Date.now() + MINUTE);
      const afterFirst = count();
      // Within the minute, claims only insert: count what one writes.
      expire();
      const rowsWritten = await rowsWrittenBy(sql, () => instance.claim("second", "c", Date.now() + MINUTE));
      return { afterFirst, afterSecond: count(), rowsWritten };
    });
    expect(measured).toEqual({ afterFirst: 1, afterSecond: 42, rowsWritten: 1 });
  });

  it("shards keys stably and evenly", () => {
    expect(fnv1a("")).toBe(0x811c9dc5);
    expect(fnv1a("a")).toBe(0xe40c292c);
    expect(claimShardName("easemob:XXXX#XXXX_1")).toBe(claimShardName("easemob:XXXX#XXXX_1"));
    const counts = new Map<string, number>();
    for (let i = 0; i < 6400; i++) {
      const shard = claimShardName(`easemob:XXXX#XXXX_${1_000_000_000_000 + i}`);
      counts.set(shard, (counts.get(shard) ?? 0) + 1);
    }
    expect(counts.size).toBe(CLAIM_SHARDS);
    expect(Math.min(...counts.values())).toBeGreaterThan(50);
    expect(Math.max(...counts.values())).toBeLessThan(150);
  });

  it("is reached through the shard that holds the key", async () => {
    const key = unique("easemob:callid-");
    expect(await claimsStub(env, key).claim(key, "conversation-a", Date.now() + MINUTE)).toBe("claimed");
    expect(await claimsStub(env, key).claim(key, "conversation-b", Date.now() + MINUTE)).toBe("conflict");
  });
});

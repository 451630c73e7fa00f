// Relay-wide claims of signed nonces (Easemob callIds), in a real CallbackClaims object.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { CLAIM_SHARDS, claimShardName, fnv1a } from "../src/claims/shard";
import { CLAIMS_SCHEMA_V1, CLAIMS_SCHEMA_VERSION } from "../src/claims/object";
import { claimsStub } from "../src/claims/stub";
import { unique } from "./support/callbacks";
import { evictDurableObject } from "./support/evict";
import { rowsWrittenBy } from "./support/rows-written";

const MINUTE = 60_000;
/** Two bodies' SHA-256 digests, as ingest computes them. */
const DIGEST_A = "a".repeat(64);
const DIGEST_B = "b".repeat(64);
/** A claims object of its own per test, so tests never share a shard. */
const ownStub = () => env.CLAIMS.get(env.CLAIMS.idFromName(unique("claims-test-")));

describe("CallbackClaims", () => {
  it("claims a key for its first conversation: the same one again is 'same', another is 'conflict'", async () => {
    const stub = ownStub();
    const key = unique("easemob:callid-");
    const expiresAt = Date.now() + 5 * MINUTE;
    expect(await stub.claim(key, "conversation-a", expiresAt, DIGEST_A)).toBe("claimed");
    expect(await stub.claim(key, "conversation-a", expiresAt, DIGEST_A)).toBe("same");
    expect(await stub.claim(key, "conversation-b", expiresAt, DIGEST_A)).toBe("conflict");
    expect(await stub.claim(unique("easemob:other-"), "conversation-b", expiresAt, DIGEST_A)).toBe("claimed");
  });

  it("remembers the body it was made for: another body under the same key is 'conflict', even in the same conversation (issue 18, finding 3)", async () => {
    const stub = ownStub();
    const key = unique("easemob:callid-");
    const expiresAt = Date.now() + 5 * MINUTE;
    expect(await stub.claim(key, "conversation-a", expiresAt, DIGEST_A)).toBe("claimed");
    expect(await stub.claim(key, "conversation-a", expiresAt, DIGEST_B)).toBe("conflict");
    // The refused body did not take the claim over: the original is still the provider's retry.
    expect(await stub.claim(key, "conversation-a", expiresAt, DIGEST_A)).toBe("same");
    const stored = await runInDurableObject(stub, (_, state) => state.storage.sql.exec("SELECT digest FROM claims WHERE key = ?", key).one().digest);
    expect(stored).toBe(DIGEST_A);
  });

  it("forgets a claim once it has expired (the callback would be refused as too old by then)", async () => {
    const stub = ownStub();
    const key = unique("easemob:callid-");
    expect(await stub.claim(key, "conversation-a", Date.now() - 1, DIGEST_A)).toBe("claimed");
    expect(await stub.claim(key, "conversation-b", Date.now() + MINUTE, DIGEST_A)).toBe("claimed");
    expect(await stub.claim(key, "conversation-a", Date.now() + MINUTE, DIGEST_A)).toBe("conflict");
  });

  it("takes over expired claims' rows instead of deleting them: one row written per claim, expiry included", async () => {
    const stub = ownStub();
    const measured = await runInDurableObject(stub, async (instance, state) => {
      const sql = state.storage.sql;
      const count = () => Number(sql.exec("SELECT COUNT(*) AS n FROM claims").one().n);
      const expire = (prefix: string) =>
        sql.exec(
          `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) INSERT OR IGNORE INTO claims (key, conversation, expires_at) SELECT '${prefix}-' || i, 'c', ? FROM n`,
          Date.now() - 1000,
        );
      // The first claim after a start finds the expired rows and takes one over.
      expire("expired");
      const first = await rowsWrittenBy(sql, () => instance.claim("first", "c", Date.now() + MINUTE, DIGEST_A));
      const afterFirst = count();
      // Within the minute, the other 39 are taken over in turn; rows that expire meanwhile wait for the next look.
      expire("later");
      let rest = 0;
      for (let n = 2; n <= 40; n++) rest += await rowsWrittenBy(sql, () => instance.claim(`claim-${n}`, "c", Date.now() + MINUTE, DIGEST_A));
      const afterForty = count();
      const fresh = await rowsWrittenBy(sql, () => instance.claim("claim-41", "c", Date.now() + MINUTE, DIGEST_A));
      const held = Number(sql.exec("SELECT COUNT(*) AS n FROM claims WHERE expires_at >= ?", Date.now()).one().n);
      return { first, afterFirst, rest, afterForty, fresh, afterFortyOne: count(), held };
    });
    expect(measured).toEqual({ first: 1, afterFirst: 40, rest: 39, afterForty: 80, fresh: 1, afterFortyOne: 81, held: 41 });
    // A claim that took over a row is a claim like any other.
    expect(await stub.claim("first", "c", Date.now() + MINUTE, DIGEST_A)).toBe("same");
    expect(await stub.claim("claim-7", "other", Date.now() + MINUTE, DIGEST_A)).toBe("conflict");
  });

  it("loads an object written with schema v1 (no digest): its claims kept, judged by conversation until they expire", async () => {
    let stub = ownStub();
    const old = unique("easemob:old-");
    await runInDurableObject(stub, (_, state) => {
      const sql = state.storage.sql;
      // What a v1 object held: the table as first shipped, no recorded version.
      sql.exec("DROP TABLE claims");
      sql.exec("DROP TABLE state");
      sql.exec(CLAIMS_SCHEMA_V1);
      sql.exec("INSERT INTO claims (key, conversation, expires_at) VALUES (?, 'conversation-a', ?)", old, Date.now() + MINUTE);
    });
    stub = await evictDurableObject(env.CLAIMS, stub);
    expect(await stub.claim(old, "conversation-a", Date.now() + MINUTE, DIGEST_B)).toBe("same");
    expect(await stub.claim(old, "conversation-b", Date.now() + MINUTE, DIGEST_B)).toBe("conflict");
    const fresh = unique("easemob:new-");
    expect(await stub.claim(fresh, "conversation-a", Date.now() + MINUTE, DIGEST_A)).toBe("claimed");
    expect(await stub.claim(fresh, "conversation-a", Date.now() + MINUTE, DIGEST_B)).toBe("conflict");
    const stored = await runInDurableObject(stub, async (instance, state) => {
      const sql = state.storage.sql;
      return {
        version: sql.exec("SELECT value FROM state WHERE key = 'schema_version'").one().value,
        columns: sql
          .exec("SELECT name FROM pragma_table_info('claims')")
          .toArray()
          .map((row) => row.name),
        rowsWritten: await rowsWrittenBy(sql, () => instance.claim(unique("easemob:after-"), "c", Date.now() + MINUTE, DIGEST_A)),
      };
    });
    expect(stored).toEqual({ version: String(CLAIMS_SCHEMA_VERSION), columns: ["key", "conversation", "expires_at", "digest"], rowsWritten: 1 });
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
    expect(await claimsStub(env, key).claim(key, "conversation-a", Date.now() + MINUTE, DIGEST_A)).toBe("claimed");
    expect(await claimsStub(env, key).claim(key, "conversation-b", Date.now() + MINUTE, DIGEST_A)).toBe("conflict");
  });
});

// The conversation object: dedup, order, pruning, read state, and the KV snapshot, in workerd.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { evictDurableObject } from "./support/evict";
import { z } from "zod";
import { Snapshot, snapshotKey } from "../src/conversation/snapshot";
import { Receipt, singleConversationKey } from "../src/receipt";
import { DEDUP_MAX_IDS, DEDUP_WINDOW_MS, MAX_SNAPSHOT_BYTES } from "../src/conversation/object";
import { DELIVERED, FAILED } from "../src/conversation/schema";
import { testSettings } from "./support/settings";
import { runAlarm, setState, stateNumber, useSettings } from "./support/conversation-object";
import { waitFor } from "./support/origin-control";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";

const RECENT_LIMIT = Number(testSettings.RECENT_LIMIT);
const SNAPSHOT_INTERVAL_MS = Number(testSettings.SNAPSHOT_INTERVAL_SECONDS) * 1000;

describe("Conversation object", () => {
  it("stores a receipt once: a repeat is a duplicate, not stored or queued again", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const receipt = makeReceipt(conversation, 1);
    expect(await stub.accept(receipt)).toBe("accepted");
    expect(await stub.accept(receipt)).toBe("duplicate");
    expect(await stub.recent(10)).toHaveLength(1);
    const rows = await runInDurableObject(stub, (_, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM receipts").one().n);
    expect(rows).toBe(1);
  });

  it("keeps the newest RECENT_LIMIT receipts, newest first, and still knows older ids", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const total = RECENT_LIMIT + 5;
    for (let n = 1; n <= total; n++) expect(await stub.accept(makeReceipt(conversation, n))).toBe("accepted");
    const recent = z.array(Receipt).parse(await stub.recent(1000));
    expect(recent.map((receipt) => receipt.id)).toEqual(Array.from({ length: RECENT_LIMIT }, (_, i) => `test:${conversation}:${total - i}`));
    // Pruned from the recent list, but a provider's retry of it is still recognised.
    expect(await stub.accept(makeReceipt(conversation, 1))).toBe("duplicate");
  });

  it("forgets delivered receipts past RECENT_LIMIT and the dedup window, never those still owed, and reuses their rows", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    // Held, so that the test alone decides which receipts are delivered.
    await useSettings(stub, { ORIGIN_URL: "" });
    for (let n = 1; n <= 99; n++) await stub.accept(makeReceipt(conversation, n));
    await runInDurableObject(stub, (_, state) => {
      const old = Date.now() - DEDUP_WINDOW_MS - 3600_000;
      // 2..50 delivered and older than the window; 1 as old but still pending; 51..99 young.
      state.storage.sql.exec(
        "UPDATE receipts SET deliveries = json_object('origin', json_object('s', ?, 'n', 1, 'd', ?)), accepted_at = ? WHERE seq BETWEEN 2 AND 50",
        DELIVERED,
        old,
        old,
      );
      state.storage.sql.exec("UPDATE receipts SET accepted_at = ? WHERE seq = 1", old);
    });
    const count = () => runInDurableObject(stub, (_, state) => Number(state.storage.sql.exec("SELECT COUNT(*) AS n FROM receipts").one().n));
    // Read state written (as the next alarm would): receipts not folded into it yet are never reused.
    await stub.readStates();
    // Rows are looked for reuse at every 100th receipt.
    await stub.accept(makeReceipt(conversation, 100));
    expect(await count()).toBe(100);
    // Forgotten: accepted again, into a reused row (an UPDATE: no row added, none deleted).
    expect(await stub.accept(makeReceipt(conversation, 2))).toBe("accepted");
    expect(await count()).toBe(100);
    expect(await stub.accept(makeReceipt(conversation, 1))).toBe("duplicate");
    expect(await stub.accept(makeReceipt(conversation, 51))).toBe("duplicate");
    // 48 more rows to reuse, then new rows again.
    for (let n = 101; n <= 148; n++) await stub.accept(makeReceipt(conversation, n));
    expect(await count()).toBe(100);
    await stub.accept(makeReceipt(conversation, 149));
    expect(await count()).toBe(101);
    // The pending receipt kept its row and its place.
    expect((await stub.deliveries("pending", 1))?.[0]).toMatchObject({ seq: 1, destination: "origin" });
  });

  it("keeps at most DEDUP_MAX_IDS receipts (plus those still owed), and knows them after a restart", async () => {
    const conversation = newConversation();
    let stub = stubFor(conversation);
    await useSettings(stub, { ORIGIN_URL: "" });
    await stub.accept(makeReceipt(conversation, 1));
    await runInDurableObject(stub, (_, state) => {
      // As many settled receipts as the cap, all within the window, written behind the object's back...
      state.storage.sql.exec(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO receipts (seq, id, read_at, body, accepted_at) SELECT i + 1, 'bulk-' || i, '', '{}', ? FROM n`,
        DEDUP_MAX_IDS,
        Date.now() - 3600_000,
      );
      // The first receipt a dead letter: neither delivered by a restart's alarm nor ever reused.
      state.storage.sql.exec("UPDATE receipts SET deliveries = json_object('origin', json_object('s', ?, 'n', 1)) WHERE seq = 1", FAILED);
    });
    // ...so a restart must load them.
    stub = await evictDurableObject(env.CONVERSATION, stub);
    expect(await stub.accept(makeReceipt(conversation, 1, { id: "bulk-7" }))).toBe("duplicate");
    await useSettings(stub, { ORIGIN_URL: "" });
    // Up to the next multiple of 100: 20,001 stored, so 99 more, and rows are looked for reuse.
    for (let n = 2; n <= 99; n++) await stub.accept(makeReceipt(conversation, n));
    await stub.readStates();
    await stub.accept(makeReceipt(conversation, 100));
    const count = () => runInDurableObject(stub, (_, state) => Number(state.storage.sql.exec("SELECT COUNT(*) AS n FROM receipts").one().n));
    expect(await count()).toBe(DEDUP_MAX_IDS + 100);
    // The oldest beyond the cap (seq 2..100, that is bulk-1..bulk-99) are forgotten and their rows reused; the dead letter stays.
    expect(await stub.accept(makeReceipt(conversation, 1, { id: "bulk-1" }))).toBe("accepted");
    expect(await count()).toBe(DEDUP_MAX_IDS + 100);
    expect(await stub.accept(makeReceipt(conversation, 1, { id: "bulk-100" }))).toBe("duplicate");
    expect(await stub.accept(makeReceipt(conversation, 1))).toBe("duplicate");
    expect((await stub.deliveries("failed"))?.map((delivery) => delivery.seq)).toEqual([1]);
  });

  it("keeps each reader's read state", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await stub.accept(makeReceipt(conversation, 5, { readers: ["alice"], unreadTotal: 2 }));
    await stub.accept(makeReceipt(conversation, 3, { readers: ["bob"], peer: "alice", messages: [{ id: "m-3", seq: 3 }] }));
    await stub.accept(makeReceipt(conversation, 2, { readers: ["alice"] }));
    expect(await stub.readStates()).toEqual({
      readers: 2,
      reads: [
        { reader: "alice", lastReadAt: makeReceipt(conversation, 5).readAt, receiptId: `test:${conversation}:5`, seq: 5, unreadTotal: 2 },
        { reader: "bob", lastReadAt: makeReceipt(conversation, 3).readAt, receiptId: `test:${conversation}:3`, messageId: "m-3", seq: 3 },
      ],
    });
    // A page at a time, in reader order: `next` is the last reader of a full page.
    expect(await stub.readStates(1)).toMatchObject({ readers: 2, reads: [{ reader: "alice" }], next: "alice" });
    expect(await stub.readStates(1, "alice")).toEqual({ readers: 2, reads: [expect.objectContaining({ reader: "bob" })] });
  });

  it("publishes a conversation whose key is too long for KV under a hashed key", async () => {
    // Tencent allows 32-byte user ids; percent-encoded, non-ASCII ones grow threefold.
    const conversation = singleConversationKey("tencent", "1400000001", "读".repeat(30), "者".repeat(30));
    const stub = stubFor(conversation);
    await stub.accept(makeReceipt(conversation, 1));
    const key = await snapshotKey(conversation);
    expect(key).toMatch(/^conversations\/#[0-9a-f]{64}$/);
    const snapshot = await waitFor("the snapshot", async () => {
      const stored = await env.RECEIPTS_KV.get(key, "json");
      return stored === null ? undefined : Snapshot.parse(stored);
    });
    expect(snapshot.conversation).toBe(conversation);
  });

  it("keeps a snapshot within MAX_SNAPSHOT_BYTES, dropping the oldest receipts", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const padding = "x".repeat(60 * 1024);
    for (let n = 1; n <= RECENT_LIMIT; n++) await stub.accept(makeReceipt(conversation, n, { raw: { padding } }));
    const snapshot = await waitFor("a snapshot of the last receipt", async () => {
      const stored = await env.RECEIPTS_KV.get(await snapshotKey(conversation), "json");
      const parsed = stored === null ? undefined : Snapshot.parse(stored);
      return parsed?.receipts[0]?.id === `test:${conversation}:${RECENT_LIMIT}` ? parsed : undefined;
    });
    expect(snapshot.receipts.length).toBeLessThan(RECENT_LIMIT);
    expect(snapshot.receipts.length).toBeGreaterThan(10);
    expect(JSON.stringify(snapshot).length).toBeLessThan(MAX_SNAPSHOT_BYTES + 64 * 1024);
    expect(snapshot.receipts.map((receipt) => receipt.id)).toEqual(
      Array.from({ length: snapshot.receipts.length }, (_, i) => `test:${conversation}:${RECENT_LIMIT - i}`),
    );
  });

  it("backs off when KV refuses writes, without holding up anything else", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const failures = await runInDurableObject(stub, async (instance, state) => {
      // KV over its quota: every write fails.
      const refusing = { ...env, RECEIPTS_KV: { put: () => Promise.reject(new Error("KV put() limit exceeded for the day.")) } };
      Object.assign(instance, { env: refusing });
      await instance.accept(makeReceipt(conversation, 1));
      const meta = (key: string) => stateNumber(state.storage, key);
      const seen: { failures: number; waitMs: number }[] = [];
      for (let round = 0; round < 3; round++) {
        // Due now, as if the back-off had elapsed.
        setState(state.storage, "kv_retry_at", 0);
        await instance.alarm();
        seen.push({ failures: meta("kv_failures"), waitMs: meta("kv_retry_at") - Date.now() });
      }
      return seen;
    });
    expect(failures.map((entry) => entry.failures)).toEqual([1, 2, 3]);
    const waits = failures.map((entry) => Math.round(entry.waitMs / 1000));
    expect(waits[0]).toBeGreaterThanOrEqual(28);
    expect(waits[1]).toBeGreaterThanOrEqual(2 * waits[0]! - 2);
    expect(waits[2]).toBeGreaterThanOrEqual(2 * waits[1]! - 2);
    // Meanwhile the receipt was delivered all the same.
    expect(await stub.deliveries("pending")).toEqual([]);
  });

  it("publishes a snapshot to KV, at most once a second", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    // Held, so that no delivery runs alongside and only publication is at stake.
    await useSettings(stub, { ORIGIN_URL: "" });
    await stub.accept(makeReceipt(conversation, 1));
    // The alarm set at acceptance publishes at once.
    const first = await waitFor("the first snapshot", async () => {
      const stored = await env.RECEIPTS_KV.get(await snapshotKey(conversation), "json");
      return stored === null ? undefined : Snapshot.parse(stored);
    });
    expect(first.receipts.map((receipt) => receipt.id)).toEqual([`test:${conversation}:1`]);
    expect(first.reads).toHaveLength(1);

    const seen = await runInDurableObject(stub, async (instance, state) => {
      const receiptsInKv = async () => Snapshot.parse(await env.RECEIPTS_KV.get(await snapshotKey(conversation), "json")).receipts.length;
      await instance.alarm();
      await instance.accept(makeReceipt(conversation, 2));
      // A change right after a publication waits for the interval: a run now publishes nothing,
      // and leaves the alarm set for the interval's end.
      const publishedAt = Date.now();
      setState(state.storage, "published_at", publishedAt);
      await instance.alarm();
      const alarm = await state.storage.getAlarm();
      const early = { receipts: await receiptsInKv(), alarm };
      // The interval has passed.
      setState(state.storage, "published_at", publishedAt - SNAPSHOT_INTERVAL_MS);
      await instance.alarm();
      return { publishedAt, early, late: { receipts: await receiptsInKv() } };
    });
    expect(seen.early).toEqual({ receipts: 1, alarm: seen.publishedAt + SNAPSHOT_INTERVAL_MS });
    expect(seen.late).toEqual({ receipts: 2 });
  });

  it("creates nothing for a conversation never stored: its reads answer null", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    expect(await stub.recent(10)).toBeNull();
    expect(await stub.readStates()).toBeNull();
    expect(await stub.deliveries()).toBeNull();
    expect(await stub.retryDeadLetters()).toBeNull();
    await runAlarm(stub);
    const stored = await runInDurableObject(stub, async (_, state) => ({
      tables: state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'").toArray(),
      alarm: await state.storage.getAlarm(),
    }));
    expect(stored).toEqual({ tables: [], alarm: null });
  });
});

// The conversation object: dedup, order, pruning, read state, and the KV snapshot, in workerd.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { z } from "zod";
import { Snapshot, snapshotKey } from "../src/conversation/snapshot";
import { Receipt } from "../src/receipt";
import { DEDUP_MAX_IDS, DEDUP_WINDOW_MS, SNAPSHOT_INTERVAL_MS } from "../src/conversation/object";
import { testSettings } from "./support/settings";
import { waitFor } from "./support/origin-control";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";

const RECENT_LIMIT = Number(testSettings.RECENT_LIMIT);

describe("Conversation object", () => {
  it("stores a receipt once: a repeat is a duplicate, not stored or queued again", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const receipt = makeReceipt(conversation, 1);
    expect(await stub.accept(receipt)).toBe("accepted");
    expect(await stub.accept(receipt)).toBe("duplicate");
    expect(await stub.recent(10)).toHaveLength(1);
    const rows = await runInDurableObject(stub, (_, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM outbox").one().n);
    expect(rows).toBeLessThanOrEqual(1);
  });

  it("keeps the newest RECENT_LIMIT receipts, newest first, and still knows older ids", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    const total = RECENT_LIMIT + 5;
    for (let n = 1; n <= total; n++) expect(await stub.accept(makeReceipt(conversation, n))).toBe("accepted");
    const recent = z.array(Receipt).parse(await stub.recent(1000));
    expect(recent.map((receipt) => receipt.id)).toEqual(
      Array.from({ length: RECENT_LIMIT }, (_, i) => `test:${conversation}:${total - i}`),
    );
    // Pruned from the recent list, but a provider's retry of it is still recognised.
    expect(await stub.accept(makeReceipt(conversation, 1))).toBe("duplicate");
  });

  it("forgets seen ids after the dedup window, and keeps at most DEDUP_MAX_IDS of them", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await stub.accept(makeReceipt(conversation, 1));
    const hour = 3600_000;
    const { before, after } = await runInDurableObject(stub, async (instance, state) => {
      const sql = state.storage.sql;
      const now = Date.now();
      sql.exec("INSERT INTO seen (id, seen_at) VALUES ('old', ?), ('recent', ?)", now - DEDUP_WINDOW_MS - hour, now - 25 * hour);
      // Enough to go over the cap; each with an age inside the window.
      sql.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) INSERT INTO seen (id, seen_at) SELECT 'bulk-' || i, ? - i FROM n",
        DEDUP_MAX_IDS,
        now - hour,
      );
      const before = sql.exec("SELECT COUNT(*) AS n FROM seen").one().n;
      await instance.accept(makeReceipt(conversation, 2));
      const ids = sql.exec("SELECT id FROM seen WHERE id IN ('old', 'recent') ORDER BY id").toArray().map((row) => row.id);
      const queued = sql.exec("SELECT COUNT(*) AS n FROM outbox").one().n;
      return { before, after: { count: sql.exec("SELECT COUNT(*) AS n FROM seen").one().n, ids, queued } };
    });
    expect(before).toBe(DEDUP_MAX_IDS + 3);
    // Ids still waiting in the outbox are never forgotten, whatever the cap.
    expect(after.count).toBe(DEDUP_MAX_IDS + Number(after.queued));
    // The 49-hour-old id is gone; the newest ones, including receipt 2, are kept.
    expect(after.ids).not.toContain("old");
    expect(await stub.accept(makeReceipt(conversation, 2))).toBe("duplicate");
  });

  it("keeps each reader's read state", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await stub.accept(makeReceipt(conversation, 5, { readers: ["alice"], unreadTotal: 2 }));
    await stub.accept(makeReceipt(conversation, 3, { readers: ["bob"], peer: "alice", messages: [{ id: "m-3", seq: 3 }] }));
    await stub.accept(makeReceipt(conversation, 2, { readers: ["alice"] }));
    expect(await stub.readStates()).toEqual([
      { reader: "alice", lastReadAt: makeReceipt(conversation, 5).readAt, receiptId: `test:${conversation}:5`, seq: 5, unreadTotal: 2 },
      { reader: "bob", lastReadAt: makeReceipt(conversation, 3).readAt, receiptId: `test:${conversation}:3`, messageId: "m-3", seq: 3 },
    ]);
  });

  it("publishes a snapshot to KV, at most once a second", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await stub.accept(makeReceipt(conversation, 1));
    const first = await waitFor("the first snapshot", async () => {
      const stored = await env.RECEIPTS_KV.get(snapshotKey(conversation), "json");
      return stored === null ? undefined : Snapshot.parse(stored);
    });
    expect(first.receipts.map((receipt) => receipt.id)).toEqual([`test:${conversation}:1`]);
    expect(first.reads).toHaveLength(1);

    // A change right after a publication waits for the interval before it is published.
    await stub.accept(makeReceipt(conversation, 2));
    const second = await waitFor("the second snapshot", async () => {
      const snapshot = Snapshot.parse(await env.RECEIPTS_KV.get(snapshotKey(conversation), "json"));
      return snapshot.receipts.length === 2 ? snapshot : undefined;
    });
    expect(Date.parse(second.updatedAt) - Date.parse(first.updatedAt)).toBeGreaterThanOrEqual(SNAPSHOT_INTERVAL_MS);
    expect(second.receipts[0]!.id).toBe(`test:${conversation}:2`);
  });
});

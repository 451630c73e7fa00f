// The conversation object's storage: the outbox state machine on its own (no origin, no timers),
// schema migrations from the previous version, batched delivery, and the read model's interval.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { Receipt } from "../src/receipt";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { evictDurableObject } from "./support/evict";
import { ATTEMPT_LOG_MAX, DEDUP_WINDOW_MS, Outbox } from "../src/conversation/outbox";
import { createLatest, DELIVERED, FAILED, PENDING, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_VERSION } from "../src/conversation/schema";
import { snapshotKey } from "../src/conversation/snapshot";
import { webhookBody } from "../src/delivery/webhook";
import { retryNow, runAlarm, useSettings } from "./support/conversation-object";
import { attempts, deliveredReceipts, script } from "./support/origin-control";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";
import { rowsWrittenBy } from "./support/rows-written";

/** Runs `body` with an Outbox over a fresh object's storage, created at the latest schema. */
function withOutbox<T>(body: (outbox: Outbox, sql: SqlStorage) => T): Promise<T> {
  return runInDurableObject(stubFor(newConversation()), (_, state) => {
    createLatest(state.storage.sql);
    const outbox = new Outbox(state.storage.sql);
    outbox.load();
    return body(outbox, state.storage.sql);
  });
}

function enqueue(outbox: Outbox, conversation: string, n: number, now: number, routes: string[] = ["origin"]): void {
  const receipt = makeReceipt(conversation, n);
  const [seq] = outbox.enqueueMany([{ id: receipt.id, readAt: receipt.readAt, body: JSON.stringify(receipt), routes }], now);
  outbox.committed(seq!, receipt.id, routes, now);
}

describe("the outbox state machine", () => {
  it("delivers in order: head, attempt, delivered with its latency, then the next", () =>
    withOutbox((outbox) => {
      const t0 = 1_000_000;
      for (let n = 1; n <= 3; n++) enqueue(outbox, "c", n, t0 + n);
      const head = outbox.head("origin")!;
      expect(head).toMatchObject({ seq: 1, id: "test:c:1", record: undefined });
      expect(Outbox.dueAt(head)).toBe(0);
      outbox.delivered("origin", [head], 1, t0 + 10, t0 + 30, 204);
      expect(outbox.head("origin")).toMatchObject({ seq: 2 });
      expect(outbox.page("delivered", 10, 0)).toEqual([
        {
          receiptId: "test:c:1",
          seq: 1,
          destination: "origin",
          status: "delivered",
          attempts: 1,
          acceptedAt: new Date(t0 + 1).toISOString(),
          lastAttemptAt: new Date(t0 + 10).toISOString(),
          lastStatus: 204,
          deliveredAt: new Date(t0 + 30).toISOString(),
          latencyMs: 29,
          attemptLog: [{ at: new Date(t0 + 10).toISOString(), ms: 20, status: 204 }],
        },
      ]);
      expect(outbox.counts()).toEqual({ origin: { pending: 2, failed: 0 } });
    }));

  it("a retry changes only the head; a dead letter lets the next one through; a requeue puts it first again", () =>
    withOutbox((outbox) => {
      const t0 = 2_000_000;
      for (let n = 1; n <= 3; n++) enqueue(outbox, "c", n, t0);
      const head = outbox.head("origin")!;
      outbox.retryLater("origin", head, 1, 1, t0, t0 + 20, t0 + 30_000, 503, "destination answered 503");
      expect(outbox.head("origin")).toMatchObject({ seq: 1, record: { s: 0, n: 1, t: t0 + 30_000, c: 503, e: "destination answered 503" } });
      const again = outbox.head("origin")!;
      outbox.failed("origin", [again], 2, t0 + 30_000, t0 + 30_050, 400, "destination answered 400");
      expect(outbox.head("origin")).toMatchObject({ seq: 2 });
      expect(outbox.page("failed", 10, 0)).toMatchObject([
        { receiptId: "test:c:1", attempts: 2, lastStatus: 400, failedAt: new Date(t0 + 30_050).toISOString() },
      ]);
      expect(outbox.failedRange("origin")).toEqual({ oldestFailedAt: t0 + 30_050, lastError: "destination answered 400" });
      // Receipt 2 goes out meanwhile; then the requeue.
      outbox.delivered("origin", [outbox.head("origin")!], 1, t0 + 31_000, t0 + 31_010, 200);
      expect(outbox.requeueFailed(t0 + 40_000)).toBe(1);
      expect(outbox.head("origin")).toMatchObject({ seq: 1, record: { s: 0, n: 0, t: t0 + 40_000 } });
      expect(outbox.page(undefined, 10, 0).map((delivery) => [delivery.seq, delivery.status])).toEqual([
        [1, "pending"],
        [3, "pending"],
      ]);
      // The requeued receipt keeps its history; the new attempt is added to it.
      outbox.delivered("origin", [outbox.head("origin")!], 1, t0 + 40_000, t0 + 40_007, 200);
      expect(outbox.page("delivered", 10, 0).find((delivery) => delivery.seq === 1)?.attemptLog).toEqual([
        { at: new Date(t0).toISOString(), ms: 20, status: 503, error: "destination answered 503" },
        { at: new Date(t0 + 30_000).toISOString(), ms: 50, status: 400, error: "destination answered 400" },
        { at: new Date(t0 + 40_000).toISOString(), ms: 7, status: 200 },
      ]);
    }));

  it("keeps each destination's order and state apart: one failing never moves another's head", () =>
    withOutbox((outbox) => {
      const t0 = 5_000_000;
      enqueue(outbox, "c", 1, t0, ["crm", "sink"]);
      enqueue(outbox, "c", 2, t0, ["sink"]);
      enqueue(outbox, "c", 3, t0, []);
      enqueue(outbox, "c", 4, t0, ["crm", "sink"]);
      expect(outbox.destinationsOwed().sort()).toEqual(["crm", "sink"]);
      // crm's head waits for a retry; sink delivers all of its three.
      outbox.retryLater("crm", outbox.head("crm")!, 1, 1, t0, t0 + 5, t0 + 60_000, 503, "destination answered 503");
      for (let head = outbox.head("sink"); head; head = outbox.head("sink")) outbox.delivered("sink", [head], 1, t0 + 10, t0 + 20, 200);
      expect(outbox.head("crm")).toMatchObject({ seq: 1 });
      expect(outbox.pendingFrom("crm", outbox.head("crm")!, 10).map((row) => row.seq)).toEqual([1, 4]);
      expect(outbox.counts()).toEqual({ crm: { pending: 2, failed: 0 }, sink: { pending: 0, failed: 0 } });
      expect(outbox.unrouted()).toBe(1);
      expect(outbox.page("all", 10, 0).map((delivery) => [delivery.seq, delivery.destination, delivery.status])).toEqual([
        [1, "crm", "pending"],
        [1, "sink", "delivered"],
        [2, "sink", "delivered"],
        [4, "crm", "pending"],
        [4, "sink", "delivered"],
      ]);
      expect(outbox.page(undefined, 10, 0, "sink")).toEqual([]);
      // A dead letter of crm's; a requeue of sink's deliveries leaves crm's state alone.
      outbox.failed("crm", [outbox.head("crm")!], 2, t0 + 60_000, t0 + 60_010, 410, "destination answered 410");
      expect(outbox.requeueDelivered(0, t0 + 30, t0 + 70_000, "sink")).toBe(3);
      expect(outbox.counts()).toEqual({ crm: { pending: 1, failed: 1 }, sink: { pending: 3, failed: 0 } });
      expect(outbox.purgeFailed("crm", t0 + 80_000)).toBe(1);
      expect(outbox.page("skipped", 10, 0, "crm").map((delivery) => delivery.seq)).toEqual([1]);
    }));

  it("routes to a destination added later the kept receipts its match takes, on request", () =>
    withOutbox((outbox) => {
      const t0 = 6_000_000;
      for (let n = 1; n <= 3; n++) enqueue(outbox, "c", n, t0 + n, ["origin"]);
      const routed = outbox.routeAnew("late", t0 + 2, t0 + 3, (body) => body.includes("test:c:2") || body.includes("test:c:3"), t0 + 10);
      expect(routed).toBe(2);
      expect(outbox.pendingFrom("late", outbox.head("late")!, 10).map((row) => row.seq)).toEqual([2, 3]);
      // Routed once: asking again adds nothing.
      expect(outbox.routeAnew("late", 0, t0 + 3, () => true, t0 + 20)).toBe(1);
    }));

  it("logs every attempt of a batch on each receipt, and keeps the newest ATTEMPT_LOG_MAX", () =>
    withOutbox((outbox) => {
      const t0 = 4_000_000;
      for (let n = 1; n <= 2; n++) enqueue(outbox, "c", n, t0);
      for (let attempt = 1; attempt <= ATTEMPT_LOG_MAX + 2; attempt++) {
        const head = outbox.head("origin")!;
        outbox.retryLater(
          "origin",
          head,
          attempt,
          2,
          t0 + attempt * 1000,
          t0 + attempt * 1000 + 3,
          t0 + attempt * 1000 + 500,
          null,
          `network error ${"x".repeat(300)}`,
        );
      }
      const head = outbox.head("origin")!;
      const rows = outbox.pendingFrom("origin", head, head.record!.b!);
      outbox.delivered("origin", rows, ATTEMPT_LOG_MAX + 3, t0 + 99_000, t0 + 99_010, 200);
      const [first, second] = outbox.page("delivered", 10, 0);
      expect(first?.attemptLog).toHaveLength(ATTEMPT_LOG_MAX);
      // The oldest went first; errors are cut short in the log (the last error stays whole).
      expect(first?.attemptLog[0]).toEqual({ at: new Date(t0 + 4000).toISOString(), ms: 3, error: `network error ${"x".repeat(186)}` });
      expect(first?.attemptLog.at(-1)).toEqual({ at: new Date(t0 + 99_000).toISOString(), ms: 10, status: 200 });
      // Only the head carries the retries; the batch's success is on both.
      expect(second?.attemptLog).toEqual([{ at: new Date(t0 + 99_000).toISOString(), ms: 10, status: 200 }]);
    }));

  it("a batch keeps its size on its head, and settles every receipt it carried", () =>
    withOutbox((outbox) => {
      const t0 = 3_000_000;
      for (let n = 1; n <= 5; n++) enqueue(outbox, "c", n, t0);
      const head = outbox.head("origin")!;
      const rows = outbox.pendingFrom("origin", head, 3);
      expect(rows.map((row) => row.seq)).toEqual([1, 2, 3]);
      outbox.retryLater("origin", head, 1, rows.length, t0, t0 + 5, t0 + 1000, 500, "destination answered 500");
      // A retry reforms the same batch from the head's stored size, whatever is due by then.
      const retried = outbox.head("origin")!;
      expect(retried.record?.b).toBe(3);
      expect(outbox.pendingFrom("origin", retried, retried.record!.b!).map((row) => row.seq)).toEqual([1, 2, 3]);
      outbox.delivered("origin", rows, 2, t0 + 1000, t0 + 1020, 200);
      expect(outbox.page("delivered", 10, 0).map((delivery) => [delivery.seq, delivery.attempts, delivery.latencyMs])).toEqual([
        [1, 2, 1020],
        [2, 2, 1020],
        [3, 2, 1020],
      ]);
      expect(outbox.head("origin")).toMatchObject({ seq: 4, record: undefined });
    }));

  it("writes one row per receipt accepted and one per destination delivered to (no index, no bookkeeping rows)", () =>
    withOutbox(async (outbox, sql) => {
      const accepted = await rowsWrittenBy(sql, () => enqueue(outbox, "c", 1, 1, ["a", "b", "c"]));
      const delivered = await rowsWrittenBy(sql, () => {
        for (const destination of ["a", "b", "c"]) outbox.delivered(destination, [outbox.head(destination)!], 1, 2, 4, 200);
      });
      expect({ accepted, delivered }).toEqual({ accepted: 1, delivered: 3 });
    }));

  it("reuses old settled rows for new receipts instead of deleting them: one row written per receipt, pruning included", () =>
    withOutbox(async (outbox, sql) => {
      const old = 1_000;
      const now = old + DEDUP_WINDOW_MS + 1;
      for (let n = 1; n <= 250; n++) enqueue(outbox, "c", n, old);
      // Held: every row owed, nothing to reuse (and, after this first pass, nothing below 241 is read again).
      expect(outbox.prune(10, now)).toBe(0);
      expect(outbox.prune(10, now)).toBe(0);
      // Rows 1..5 delivered since, older than the window: the next prune finds them below its bound.
      const rows = outbox.pendingFrom("origin", outbox.head("origin")!, 5);
      outbox.delivered("origin", rows, 1, now, now, 200);
      expect(outbox.prune(10, now)).toBe(5);
      expect(outbox.has("test:c:1")).toBe(false);
      expect(outbox.has("test:c:6")).toBe(true);
      const written = await rowsWrittenBy(sql, () => {
        for (let n = 251; n <= 255; n++) enqueue(outbox, "c", n, now);
      });
      expect(written).toBe(5);
      expect(sql.exec("SELECT COUNT(*) AS n FROM receipts").one().n).toBe(250);
      expect(sql.exec("SELECT MIN(seq) AS low, MAX(seq) AS high FROM receipts").one()).toEqual({ low: 6, high: 255 });
    }));
});

describe("the object's small state in memory", () => {
  it("never keeps a value whose transaction rolled back, and reloads what storage holds after an eviction", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    // Held (no destination): no delivery is in flight when the object is thrown away below, so the
    // eviction cuts no request to the test origin short.
    await useSettings(stub, { ORIGIN_URL: "" });
    await stub.accept(makeReceipt(conversation, 1));
    const seen = await runInDurableObject(stub, (instance) => {
      const small = instance["small"];
      small.transaction(() => small.set("probe", "kept"));
      expect(() =>
        small.transaction(() => {
          small.set("probe", "rolled back");
          small.delete("conversation");
          throw new Error("abort");
        }),
      ).toThrow("abort");
      return { probe: small.text("probe"), conversation: small.text("conversation") };
    });
    expect(seen).toEqual({ probe: "kept", conversation });
    const restarted = await evictDurableObject(env.CONVERSATION, stub);
    expect(await runInDurableObject(restarted, (instance) => instance["small"].text("probe"))).toBe("kept");
  });
});

describe("schema migrations", () => {
  it("loads an object written with schema v3: pending and failed receipts go on to `origin`, delivered ones keep their history", async () => {
    const conversation = newConversation();
    let stub = stubFor(conversation);
    const now = Date.now();
    const receipts = [1, 2, 3, 4].map((n) => makeReceipt(conversation, n));
    await runInDurableObject(stub, (_, state) => {
      // What a v3 object held: 1 delivered after a retry (its log); 2 a dead letter; 3 pending after
      // one failed attempt, its retry due; 4 pending, never attempted.
      const sql = state.storage.sql;
      sql.exec(SCHEMA_V3);
      const insert = (n: number, status: number, attemptsMade: number, lastStatus: number | null, settledAt: number | null, log: unknown[] | null) =>
        sql.exec(
          `INSERT INTO receipts (seq, id, read_at, body, status, accepted_at, attempts, next_attempt_at, last_attempt_at, last_status, last_error, settled_at, attempt_log)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          n,
          receipts[n - 1]!.id,
          receipts[n - 1]!.readAt,
          JSON.stringify(receipts[n - 1]),
          status,
          now - 10_000,
          attemptsMade,
          status === PENDING ? now - 1 : 0,
          attemptsMade > 0 ? now - 5000 : null,
          lastStatus,
          lastStatus !== null && lastStatus >= 300 ? `destination answered ${lastStatus}` : null,
          settledAt,
          log === null ? null : JSON.stringify(log),
        );
      insert(1, DELIVERED, 2, 200, now - 4000, [
        [now - 6000, 10, 503, "destination answered 503"],
        [now - 4010, 10, 200, null],
      ]);
      insert(2, FAILED, 11, 500, now - 3000, [[now - 3010, 10, 500, "destination answered 500"]]);
      insert(3, PENDING, 1, 503, null, [[now - 5000, 10, 503, "destination answered 503"]]);
      insert(4, PENDING, 0, null, null, null);
      sql.exec("INSERT INTO state (key, value) VALUES ('schema_version', '3'), ('conversation', ?)", conversation);
    });
    stub = await evictDurableObject(env.CONVERSATION, stub);
    const all = (await stub.deliveries("all")) ?? [];
    expect(all.map((delivery) => [delivery.seq, delivery.destination, delivery.status, delivery.attempts, delivery.attemptLog.length])).toEqual([
      [1, "origin", "delivered", 2, 2],
      [2, "origin", "failed", 11, 1],
      [3, "origin", "pending", 1, 1],
      [4, "origin", "pending", 0, 0],
    ]);
    expect(all[0]).toMatchObject({ deliveredAt: new Date(now - 4000).toISOString(), latencyMs: 6000 });
    expect(await stub.accept(receipts[0]!)).toBe("duplicate");
    // The pending ones go out to `origin` (ORIGIN_URL) in their order; the dead letter waits for a retry.
    await retryNow(stub);
    expect(await deliveredReceipts(conversation)).toEqual([receipts[2]!.id, receipts[3]!.id]);
    expect(await stub.retryDeadLetters()).toEqual({ requeued: 1 });
    await runAlarm(stub);
    expect(await deliveredReceipts(conversation)).toEqual([receipts[2]!.id, receipts[3]!.id, receipts[1]!.id]);
    const version = await runInDurableObject(stub, (_, state) => state.storage.sql.exec("SELECT value FROM state WHERE key = 'schema_version'").one().value);
    expect(version).toBe("4");
  });

  it("loads an object written with schema v2: its rows kept, the attempt log added empty", async () => {
    const conversation = newConversation();
    let stub = stubFor(conversation);
    const receipt = makeReceipt(conversation, 1);
    await runInDurableObject(stub, (_, state) => {
      const sql = state.storage.sql;
      sql.exec(SCHEMA_V2);
      sql.exec(
        "INSERT INTO receipts (seq, id, read_at, body, status, accepted_at, attempts, last_status) VALUES (1, ?, ?, ?, ?, ?, 2, 200)",
        receipt.id,
        receipt.readAt,
        JSON.stringify(receipt),
        DELIVERED,
        Date.now(),
      );
      sql.exec("INSERT INTO state (key, value) VALUES ('schema_version', '2'), ('conversation', ?)", conversation);
    });
    stub = await evictDurableObject(env.CONVERSATION, stub);
    expect(await stub.accept(receipt)).toBe("duplicate");
    const [delivery] = (await stub.deliveries("all")) ?? [];
    expect(delivery).toMatchObject({ receiptId: receipt.id, status: "delivered", attempts: 2, lastStatus: 200, attemptLog: [] });
    const version = await runInDurableObject(stub, (_, state) => state.storage.sql.exec("SELECT value FROM state WHERE key = 'schema_version'").one().value);
    expect(version).toBe(String(SCHEMA_VERSION));
  });

  it("loads an object written with schema v1: receipts, outbox, seen ids and meta carried over", async () => {
    const conversation = newConversation();
    let stub = stubFor(conversation);
    const now = Date.now();
    const receipts = [1, 2, 3, 4].map((n) => makeReceipt(conversation, n));
    await runInDurableObject(stub, (_, state) => {
      // What a v1 object held: receipt 1 delivered; 2 pending after one attempt; 3 a dead letter;
      // 4 pending and already pruned from `receipts` (only its outbox row and webhook body left);
      // one seen id whose receipt was pruned long ago.
      const sql = state.storage.sql;
      sql.exec(SCHEMA_V1);
      for (const receipt of receipts.slice(0, 3)) sql.exec("INSERT INTO receipts (id, body) VALUES (?, ?)", receipt.id, JSON.stringify(receipt));
      const outbox = (seq: number, status: string, attemptsMade: number, lastStatus: number | null) =>
        sql.exec(
          "INSERT INTO outbox (seq, receipt_id, body, status, attempts, next_attempt_at, created_at, last_status, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          seq,
          receipts[seq - 1]!.id,
          webhookBody(receipts[seq - 1]!),
          status,
          attemptsMade,
          now,
          now - 1000,
          lastStatus,
          status === "failed" ? now - 500 : null,
        );
      outbox(2, "pending", 1, 503);
      outbox(3, "failed", 11, 500);
      outbox(4, "pending", 0, null);
      sql.exec(
        "INSERT INTO seen (id, seen_at) VALUES (?, ?), (?, ?), ('long-gone', ?)",
        receipts[0]!.id,
        now - 2000,
        receipts[1]!.id,
        now - 1500,
        now - 3600_000,
      );
      sql.exec(
        "INSERT INTO reads (reader, state) VALUES ('alice', ?)",
        JSON.stringify({ reader: "alice", lastReadAt: receipts[2]!.readAt, receiptId: receipts[2]!.id, seq: 3 }),
      );
      sql.exec(
        "INSERT INTO meta (key, value) VALUES ('conversation', ?), ('version', '7'), ('published_version', '7'), ('published_at', ?)",
        conversation,
        String(now),
      );
    });
    // Loaded again, as after a deploy of this version.
    stub = await evictDurableObject(env.CONVERSATION, stub);
    const stored = await runInDurableObject(stub, (_, state) => ({
      tables: state.storage.sql
        .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name")
        .toArray()
        .map((row) => row.name),
      version: state.storage.sql.exec("SELECT value FROM state WHERE key = 'schema_version'").one().value,
      conversationKey: state.storage.sql.exec("SELECT value FROM state WHERE key = 'conversation'").one().value,
      rows: state.storage.sql
        .exec(
          "SELECT seq, id, routes, json_extract(deliveries, '$.origin.s') AS status, json_extract(deliveries, '$.origin.n') AS attempts, json_extract(deliveries, '$.origin.c') AS last_status FROM receipts ORDER BY seq",
        )
        .toArray()
        .map((row) => [row.seq, row.id, row.routes, row.status, row.attempts, row.last_status]),
    }));
    expect(stored.tables).toEqual(["reads", "receipts", "state"]);
    expect(stored.version).toBe(String(SCHEMA_VERSION));
    expect(stored.conversationKey).toBe(conversation);
    // v1 → v2 → v3 → v4: the tombstone unrouted; every receipt owed to `origin` with its state.
    expect(stored.rows).toEqual([
      [-1, "long-gone", "", null, null, null],
      [1, receipts[0]!.id, ",origin,", DELIVERED, 0, null],
      [2, receipts[1]!.id, ",origin,", PENDING, 1, 503],
      [3, receipts[2]!.id, ",origin,", FAILED, 11, 500],
      [4, receipts[3]!.id, ",origin,", null, null, null],
    ]);
    // v1 kept no delivery time: receipt 1 counts as delivered without one, and publication (which
    // asks for the last delivery) passes over it rather than failing.
    expect(await runInDurableObject(stub, (instance) => instance["outbox"].lastDelivery("origin"))).toBeUndefined();
    // Dedup knows every id, the tombstone included; the API shows real receipts only.
    expect(await stub.accept(makeReceipt(conversation, 9, { id: "long-gone" }))).toBe("duplicate");
    expect(await stub.accept(receipts[3]!)).toBe("duplicate");
    const recent = z.array(Receipt).parse(await stub.recent(10));
    expect(recent.map((receipt) => receipt.id)).toEqual([4, 3, 2, 1].map((n) => receipts[n - 1]!.id));
    expect(await stub.readStates()).toMatchObject({ readers: 1, reads: [{ reader: "alice", seq: 3 }] });
    // The pending ones go out in their order, with the same bytes v1 would have sent.
    await retryNow(stub);
    expect(await deliveredReceipts(conversation)).toEqual([receipts[1]!.id, receipts[3]!.id]);
    const [first] = await attempts(conversation);
    expect(first!.data).toEqual(JSON.parse(JSON.stringify(receipts[1])));
  });
});

describe("batched delivery (FORWARD_BATCH_MAX)", () => {
  it("sends what is due in batches of at most FORWARD_BATCH_MAX, in order, one request each", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await useSettings(stub, { ORIGIN_URL: "", FORWARD_BATCH_MAX: "10" });
    const ids: string[] = [];
    for (let n = 1; n <= 25; n++) {
      const receipt = makeReceipt(conversation, n);
      await stub.accept(receipt);
      ids.push(receipt.id);
    }
    await useSettings(stub, { FORWARD_BATCH_MAX: "10" });
    await script(conversation, [{ status: 503 }]);
    await runAlarm(stub);
    // The first batch failed: nothing after it went, order is kept.
    expect((await attempts(conversation)).map((attempt) => [attempt.batch, attempt.receiptIds.length, attempt.status])).toEqual([[true, 10, 503]]);
    await retryNow(stub, { FORWARD_BATCH_MAX: "10" });
    const made = await attempts(conversation);
    expect(made.map((attempt) => [attempt.receiptIds.length, attempt.status])).toEqual([
      [10, 503],
      [10, 200],
      [10, 200],
      [5, 200],
    ]);
    // The retry was the same batch under the same webhook-id.
    expect(made[1]!.id).toBe(made[0]!.id);
    expect(made[1]!.receiptIds).toEqual(made[0]!.receiptIds);
    expect(await deliveredReceipts(conversation)).toEqual(ids);
    expect(await stub.deliveries()).toEqual([]);
    expect((await stub.deliveries("delivered"))!.map((delivery) => delivery.attempts)).toEqual([...Array(10).fill(2), ...Array(15).fill(1)]);
  });

  it("sends a lone due receipt as a single receipt.read, even with batching on", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await useSettings(stub, { FORWARD_BATCH_MAX: "10" });
    await stub.accept(makeReceipt(conversation, 1));
    await runAlarm(stub);
    expect((await attempts(conversation)).map((attempt) => [attempt.batch, attempt.status])).toEqual([[false, 200]]);
  });
});

describe("the read model's interval (SNAPSHOT_INTERVAL_SECONDS)", () => {
  it("0 turns the KV snapshot off: nothing is written, and the API answers from the object", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await useSettings(stub, { SNAPSHOT_INTERVAL_SECONDS: "0" });
    await stub.accept(makeReceipt(conversation, 1));
    await runAlarm(stub);
    await runAlarm(stub);
    expect(await env.RECEIPTS_KV.get(await snapshotKey(conversation))).toBeNull();
  });
});

describe("delivery metrics", () => {
  it("records one data point per attempt with its outcome, status and attempt number", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await script(conversation, [{ status: 503 }]);
    const points = await runInDurableObject(stub, async (instance) => {
      const written: AnalyticsEngineDataPoint[] = [];
      const metrics: AnalyticsEngineDataset = { writeDataPoint: (point) => void written.push(point ?? {}) };
      Object.assign(instance, { env: { ...env, METRICS: metrics } });
      await instance.accept(makeReceipt(conversation, 1));
      await instance.alarm();
      return written;
    });
    // The object keeps the metered env while in memory: the retry is recorded too.
    await retryNow(stub);
    expect(points.map((point) => [point.blobs?.[0], point.blobs?.[1], point.blobs?.[3], point.doubles?.[0], point.doubles?.[2]])).toEqual([
      ["delivery", "tencent", "retry", 503, 1],
      ["delivery", "tencent", "delivered", 200, 2],
    ]);
  });
});

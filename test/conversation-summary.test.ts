// A conversation's summary (GET /v1/conversations/<conversation>, the dashboard's conversation
// page): answered by the object from its counts (Outbox.summary, the `summary` RPC), not by paging
// its outbox, so the figures are exact however many deliveries it holds.
import { describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { Outbox } from "../src/conversation/outbox";
import { createLatest, FAILED } from "../src/conversation/schema";
import { api } from "./support/callbacks";
import { evictDurableObject } from "./support/evict";
import { makeReceipt, newConversation, published, stubFor } from "./support/receipts";

function enqueue(outbox: Outbox, conversation: string, n: number, now: number, routes: string[]): void {
  const receipt = makeReceipt(conversation, n);
  const [seq] = outbox.enqueueMany([{ id: receipt.id, readAt: receipt.readAt, body: JSON.stringify(receipt), routes }], now);
  outbox.committed(seq!, receipt.id, routes, now);
}

const iso = (millis: number) => new Date(millis).toISOString();

describe("Outbox.summary", () => {
  it("counts per destination, the oldest dead letter, the latest one's error, the latest delivery, and the newest receipts' deliveries", () =>
    runInDurableObject(stubFor(newConversation()), (_, state) => {
      createLatest(state.storage.sql);
      const outbox = new Outbox(state.storage.sql);
      outbox.load();
      const t0 = 1_000_000;
      for (let n = 1; n <= 4; n++) enqueue(outbox, "c", n, t0 + n, ["origin", "crm"]);
      // Matched no destination: listed among the newest, with no delivery.
      enqueue(outbox, "c", 5, t0 + 5, []);
      outbox.delivered("origin", [outbox.head("origin")!], 1, t0 + 90, t0 + 100, 200);
      outbox.failed("origin", [outbox.head("origin")!], 11, t0 + 190, t0 + 200, 500, "origin answered 500");
      outbox.delivered("crm", [outbox.head("crm")!], 1, t0 + 290, t0 + 300, 204);
      outbox.failed("crm", [outbox.head("crm")!], 1, t0 + 390, t0 + 400, 400, "crm answered 400");

      const summary = outbox.summary(3);
      expect(summary).toMatchObject({
        accepted: 5,
        destinations: { origin: { pending: 2, failed: 1 }, crm: { pending: 2, failed: 1 } },
        oldestFailedAt: t0 + 200,
        lastError: "crm answered 400",
        lastDelivery: { at: t0 + 300, latencyMs: 299 },
      });
      expect(
        summary.newest.map(({ body, deliveries }) => [
          z.object({ id: z.string() }).loose().parse(JSON.parse(body)).id,
          deliveries.map((d) => [d.destination, d.status]),
        ]),
      ).toEqual([
        ["test:c:5", []],
        [
          "test:c:4",
          [
            ["origin", "pending"],
            ["crm", "pending"],
          ],
        ],
        [
          "test:c:3",
          [
            ["origin", "pending"],
            ["crm", "pending"],
          ],
        ],
      ]);
      // The newest receipts' deliveries are those the deliveries API pages.
      expect(outbox.summary(4).newest[3]!.deliveries).toEqual(outbox.page("all", 10, 1).slice(0, 2));
    }));

  it("answers a conversation with nothing owed and nothing delivered without dead-letter or delivery fields", () =>
    runInDurableObject(stubFor(newConversation()), (_, state) => {
      createLatest(state.storage.sql);
      const outbox = new Outbox(state.storage.sql);
      outbox.load();
      enqueue(outbox, "c", 1, 1_000_000, []);
      expect(outbox.summary(10)).toEqual({ accepted: 1, destinations: {}, newest: [{ body: expect.any(String), deliveries: [] }] });
    }));
});

describe("GET /v1/conversations/<conversation> over a large outbox", () => {
  const Summary = z.object({
    accepted: z.number(),
    deliveries: z
      .object({ pending: z.number(), failed: z.number(), byDestination: z.record(z.string(), z.object({ pending: z.number(), failed: z.number() })) })
      .strict(),
    oldestFailedAt: z.string(),
    lastError: z.string(),
    lastDeliveredAt: z.string().optional(),
    receipts: z.array(z.object({ id: z.string(), delivery: z.object({ status: z.string() }).loose().nullable() }).loose()),
  });

  it("counts every dead letter exactly, past the 20,000 deliveries the summary used to read", async () => {
    const conversation = newConversation();
    // Receipt 1: a dead letter of origin, the oldest.
    await published(conversation, 1, { refused: 1 });
    const bulk = 20_000;
    const failedFrom = Date.now() + 1000;
    await runInDurableObject(stubFor(conversation), (_, state) => {
      const template = JSON.stringify(makeReceipt(conversation, 2));
      // Rows as the object writes them (a dead letter of origin each), in one statement; their read state counts as folded.
      state.storage.sql.exec(
        `WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO receipts (seq, id, read_at, body, accepted_at, routes, deliveries)
         SELECT i, 'bulk:' || i, '2026-01-01T00:00:00.000Z', json_set(?2, '$.id', 'bulk:' || i), ?3, ',origin,',
                json_object('origin', json_object('s', ${FAILED}, 'n', 1, 'd', ?3 + i, 'e', 'bulk failure ' || i))
         FROM n`,
        bulk + 1,
        template,
        failedFrom,
      );
      state.storage.sql.exec("INSERT INTO state (key, value) VALUES ('reads_folded_to', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1", String(bulk + 1));
    });
    // A restart loads the rows written behind the object's back.
    await evictDurableObject(env.CONVERSATION, stubFor(conversation));

    const response = await api(`/v1/conversations/${encodeURIComponent(conversation)}?limit=2`);
    expect(response.status).toBe(200);
    const body = Summary.parse(await response.json());
    expect(body).toMatchObject({
      accepted: bulk + 1,
      deliveries: { pending: 0, failed: bulk + 1, byDestination: { origin: { pending: 0, failed: bulk + 1 } } },
      lastError: `bulk failure ${bulk + 1}`,
    });
    expect(Date.parse(body.oldestFailedAt)).toBeLessThan(failedFrom);
    expect(body.lastDeliveredAt).toBeUndefined();
    expect(body.receipts.map((receipt) => [receipt.id, receipt.delivery?.status])).toEqual([
      [`bulk:${bulk + 1}`, "failed"],
      [`bulk:${bulk}`, "failed"],
    ]);
  });
});

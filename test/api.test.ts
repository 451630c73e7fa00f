// The app's API: auth, the KV read model, the object's truth, and the error shape.
import { describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { api } from "./support/callbacks";
import { useSettings } from "./support/conversation-object";
import { waitFor } from "./support/origin-control";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";
import { testSettings } from "./support/settings";

const pathOf = (conversation: string, rest: string) => `/v1/conversations/${encodeURIComponent(conversation)}/${rest}`;

describe("API authentication", () => {
  const routes: [string, string][] = [
    ["GET", pathOf("c", "receipts")],
    ["GET", pathOf("c", "reads")],
    ["GET", pathOf("c", "deliveries")],
    ["POST", pathOf("c", "deliveries/retry")],
    ["GET", "/v1/dead-letters"],
    ["DELETE", "/v1/dead-letters?destination=origin&conversation=c"],
    ["GET", "/v1/destinations"],
    ["POST", "/v1/destinations/origin/pause"],
    ["POST", "/v1/destinations/origin/resume"],
  ];

  it.each(routes)("%s %s: 401 without the token or with a wrong one, in the error shape", async (method, path) => {
    const missing = await api(path, { method }, null);
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ error: { code: "unauthorized", message: expect.stringContaining("Bearer") } });
    const wrong = await api(path, { method }, "wrong-token-0123456789");
    expect(wrong.status).toBe(401);
    const text = await wrong.text();
    expect(JSON.parse(text)).toMatchObject({ error: { code: "unauthorized" } });
    expect(text).not.toContain(testSettings.ADMIN_TOKEN);
  });

  it("400 for an Authorization header that is not Bearer", async () => {
    const response = await api("/v1/dead-letters", { headers: { authorization: "Basic abc" } }, null);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_request" } });
  });
});

describe("API reads", () => {
  it("serves receipts and read state from the KV snapshot, newest first, and from the object on request", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    for (let n = 1; n <= 3; n++) await stub.accept(makeReceipt(conversation, n));

    const consistent = await (
      await api(`${pathOf(conversation, "receipts")}?consistent=true&limit=2`)
    ).json<{ consistent: boolean; receipts: { id: string }[] }>();
    expect(consistent).toMatchObject({ conversation, consistent: true });
    expect(consistent.receipts.map((receipt) => receipt.id)).toEqual([`test:${conversation}:3`, `test:${conversation}:2`]);

    const fromKv = await waitFor("the snapshot", async () => {
      const response = await api(pathOf(conversation, "receipts"));
      if (response.status !== 200) return undefined;
      const body = await response.json<{ receipts: { id: string }[]; consistent: boolean; updatedAt: string }>();
      return body.receipts.length === 3 ? body : undefined;
    });
    expect(fromKv.consistent).toBe(false);
    expect(fromKv.receipts.map((receipt) => receipt.id)).toEqual([3, 2, 1].map((n) => `test:${conversation}:${n}`));

    const reads = await (await api(pathOf(conversation, "reads"))).json();
    expect(reads).toMatchObject({ conversation, reads: [{ reader: "alice", seq: 3 }] });
    const readsNow = await (await api(`${pathOf(conversation, "reads")}?consistent=true`)).json();
    expect(readsNow).toMatchObject({ consistent: true, reads: [{ reader: "alice", seq: 3 }] });
  });

  it("404 with a hint for a conversation with no snapshot", async () => {
    const response = await api(pathOf(newConversation(), "receipts"));
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: "conversation_not_found", message: expect.stringContaining("consistent=true") } });
  });

  it.each([
    ["receipts?limit=0", "limit"],
    ["receipts?limit=ten", "limit"],
    [`receipts?limit=${Number(testSettings.RECENT_LIMIT) + 1}`, "limit"],
    ["receipts?consistent=yes", "consistent"],
    ["deliveries?status=lost", "status"],
    ["deliveries?limit=0", "limit"],
    ["deliveries?after=-1", "after"],
    // A parameter given twice is ambiguous: refused, not read as its first value.
    ["receipts?limit=1&limit=2", "limit"],
  ])("400 naming the parameter for %s", async (rest, parameter) => {
    const response = await api(pathOf("tencent:1:g:x", rest));
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_query", message: expect.stringContaining(`query parameter ${parameter}`) } });
  });

  it.each(["limit=0", `limit=${Number(testSettings.RECENT_LIMIT) + 1}`])("400 naming the parameter for the summary's %s", async (query) => {
    const response = await api(`/v1/conversations/${encodeURIComponent("tencent:1:g:x")}?${query}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_query", message: expect.stringContaining("query parameter limit") } });
  });

  it("lists the outbox by status, a page at a time", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    // Held (origin misconfigured without ORIGIN_URL), so that the page is stable while the test reads it.
    await useSettings(stub, { ORIGIN_URL: "" });
    for (let n = 1; n <= 5; n++) await stub.accept(makeReceipt(conversation, n));
    const response = await api(`${pathOf(conversation, "deliveries")}?status=failed`);
    expect(await response.json()).toEqual({ conversation, deliveries: [] });
    type Page = { deliveries: { receiptId: string; seq: number; status: string; destination: string }[]; after?: number };
    const first = await (await api(`${pathOf(conversation, "deliveries")}?status=pending&limit=2`)).json<Page>();
    expect(first.deliveries.map((delivery) => delivery.receiptId)).toEqual([1, 2].map((n) => `test:${conversation}:${n}`));
    expect(first.after).toBe(first.deliveries[1]!.seq);
    expect(first.deliveries.map((delivery) => delivery.destination)).toEqual(["origin", "origin"]);
    const rest = await (await api(`${pathOf(conversation, "deliveries")}?limit=10&after=${first.after}`)).json<Page>();
    expect(rest.deliveries.map((delivery) => delivery.receiptId)).toEqual([3, 4, 5].map((n) => `test:${conversation}:${n}`));
    expect(rest.after).toBeUndefined();
    expect(JSON.stringify(rest)).not.toContain('"body"');
  });

  it("re-queues nothing when there are no dead letters", async () => {
    const conversation = newConversation();
    await useSettings(stubFor(conversation), { ORIGIN_URL: "" });
    await stubFor(conversation).accept(makeReceipt(conversation, 1));
    const response = await api(pathOf(conversation, "deliveries/retry"), { method: "POST" });
    expect(await response.json()).toEqual({ conversation, requeued: 0 });
  });

  it.each(["receipts", "receipts?consistent=true", "reads", "reads?consistent=true", "deliveries"])(
    "404 conversation_not_found for a conversation never seen (%s), creating no storage",
    async (rest) => {
      const conversation = newConversation();
      const response = await api(pathOf(conversation, rest));
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "conversation_not_found" } });
      const tables = await runInDurableObject(stubFor(conversation), (_, state) => state.storage.sql.exec("SELECT name FROM sqlite_master").toArray());
      expect(tables).toEqual([]);
    },
  );

  it("404 for a replay of a conversation never seen", async () => {
    const response = await api(pathOf(newConversation(), "deliveries/retry"), { method: "POST" });
    expect(response.status).toBe(404);
  });

  it("400 invalid_conversation for a key over 4,096 characters", async () => {
    const response = await api(pathOf("x".repeat(4097), "receipts"));
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_conversation" } });
  });

  it("answers 429 with Retry-After after 20 wrong admin tokens from one address; the right token still works", async () => {
    const headers = { "cf-connecting-ip": `203.0.113.${Math.floor(Math.random() * 250)}` };
    const statuses: number[] = [];
    for (let i = 0; i < 22; i++) statuses.push((await api("/v1/dead-letters", { headers }, "wrong-token-0123456789")).status);
    expect(statuses.slice(0, 20).every((status) => status === 401)).toBe(true);
    const limited = await api("/v1/dead-letters", { headers }, "wrong-token-0123456789");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(await limited.json()).toMatchObject({ error: { code: "too_many_failures" } });
    expect((await api("/v1/dead-letters", { headers })).status).toBe(200);
  });

  it("answers unknown API routes with a 404 in the error shape", async () => {
    const response = await api("/v1/nothing-here");
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: "not_found" } });
  });
});

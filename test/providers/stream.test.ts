import { describe, expect, it } from "vitest";
import { inflateIfGzip, signStream, stream, type StreamConfig } from "../../src/providers/stream";
import type { RawCallback } from "../../src/providers/provider";
import { groupConversationKey, MAX_EVENT_AGE_MS, MAX_FUTURE_SKEW_MS } from "../../src/receipt";
import { api, copy, gzip, send, sendStream, STREAM_API_KEY, STREAM_SECRETS, streamRequest, streamSamples, unique } from "../support/callbacks";
import { receiptFrom, runProvider, itRefusesWhatIsNotItsBody } from "../support/pipeline";

const NOW = Date.parse("2026-11-22T00:00:00.000Z");
const RECEIVED_AT = new Date(NOW).toISOString();
const config: StreamConfig = { secrets: ["secret-a", "secret-b"] };
const withKey: StreamConfig = { ...config, apiKeys: ["key-1", "key-2"] };
const encode = (text: string) => new TextEncoder().encode(text);

interface Signing {
  secret?: string;
  signature?: string | null;
  apiKey?: string | null;
  webhookId?: string | null;
  compress?: boolean;
  /** The bytes to send instead of the (possibly gzipped) text, still signed over the text. */
  bytes?: Uint8Array;
  path?: string[];
}

/** A Stream callback as the router hands it over: signed over the uncompressed text. */
async function streamCallback(body: unknown, signing: Signing = {}): Promise<RawCallback> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const { secret = "secret-a", apiKey = "key-1", webhookId = "123e4567-e89b-12d3-a456-426614174000", compress = false, path = [] } = signing;
  const headers = new Headers({ "content-type": "application/json", "x-webhook-attempt": "1" });
  const signature = signing.signature === undefined ? await signStream(secret, text) : signing.signature;
  if (signature !== null) headers.set("x-signature", signature);
  if (apiKey !== null) headers.set("x-api-key", apiKey);
  if (webhookId !== null) headers.set("x-webhook-id", webhookId);
  if (compress) headers.set("content-encoding", "gzip");
  const bytes = signing.bytes ?? (compress ? await gzip(text) : encode(text));
  return { url: new URL("https://relay.test/v1/hooks/stream"), path, body: new TextDecoder().decode(bytes), bytes, headers };
}

const run = async (body: unknown, signing: Signing = {}, cfg: StreamConfig = config) =>
  runProvider(stream, await streamCallback(body, signing), cfg, NOW, RECEIVED_AT);

describe("stream signature", () => {
  it("is lower-case hex HMAC-SHA256 of the body under the API secret", async () => {
    // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    expect(await signStream("Jefe", "what do ya want for nothing?")).toBe("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    expect(await signStream("Jefe", encode("what do ya want for nothing?"))).toBe("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  });

  it("accepts a body signed with any configured secret, and an upper-case signature", async () => {
    for (const secret of config.secrets) expect((await run(streamSamples.read, { secret })).stage).toBe("done");
    const upper = (await signStream("secret-a", JSON.stringify(streamSamples.read))).toUpperCase();
    expect((await run(streamSamples.read, { signature: upper })).stage).toBe("done");
  });

  it("refuses a missing signature, another secret, and a changed body with 401, never naming the secret", async () => {
    expect(await run(streamSamples.read, { signature: null })).toMatchObject({ stage: "verify", status: 401, code: "missing_signature" });
    const wrongSecret = await run(streamSamples.read, { secret: "not-configured" });
    expect(wrongSecret).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
    expect(JSON.stringify(wrongSecret)).not.toContain("secret-a");
    const signature = await signStream("secret-a", JSON.stringify(streamSamples.read));
    const tampered = await run(copy(streamSamples.read, { cid: "messaging:other" }), { signature });
    expect(tampered).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
    expect(await run(streamSamples.read, { signature: "not hex at all" })).toMatchObject({ status: 401, code: "bad_signature" });
  });

  it("with STREAM_API_KEY, requires X-Api-Key to be one of the keys (403)", async () => {
    expect((await run(streamSamples.read, { apiKey: "key-2" }, withKey)).stage).toBe("done");
    expect(await run(streamSamples.read, { apiKey: "key-3" }, withKey)).toMatchObject({ stage: "verify", status: 403, code: "api_key_not_allowed" });
    expect(await run(streamSamples.read, { apiKey: null }, withKey)).toMatchObject({ stage: "verify", status: 403, code: "missing_api_key" });
    // Without it, any key (or none) is taken.
    expect((await run(streamSamples.read, { apiKey: null })).stage).toBe("done");
  });

  it("authenticates before it judges the body: an unsigned non-JSON body is 401, a signed one 400", async () => {
    expect(await run("not json", { signature: "0".repeat(64) })).toMatchObject({ stage: "verify", status: 401 });
    expect(await run("not json")).toMatchObject({ stage: "normalize", status: 400, code: "invalid_json" });
  });
});

describe("stream gzip bodies", () => {
  it("verifies the signature over the uncompressed JSON, with or without Content-Encoding", async () => {
    const compressed = await run(streamSamples.read, { compress: true });
    expect(receiptFrom(compressed).raw).toEqual(streamSamples.read);
    // Detected by the gzip magic, not the header: the header may have been dropped on the way.
    const text = JSON.stringify(streamSamples.read);
    expect((await run(streamSamples.read, { bytes: await gzip(text) })).stage).toBe("done");
  });

  it("refuses a signature computed over the compressed bytes", async () => {
    const text = JSON.stringify(streamSamples.read);
    const bytes = await gzip(text);
    const overCompressed = await signStream("secret-a", bytes);
    expect(await run(streamSamples.read, { compress: true, bytes, signature: overCompressed })).toMatchObject({ status: 401, code: "bad_signature" });
  });

  it("refuses a corrupt or truncated gzip body with 400", async () => {
    const bytes = await gzip(JSON.stringify(streamSamples.read));
    const corrupt = bytes.slice();
    corrupt.fill(0xff, 10, 30);
    expect(await run(streamSamples.read, { compress: true, bytes: corrupt })).toMatchObject({ stage: "verify", status: 400, code: "invalid_gzip" });
    expect(await run(streamSamples.read, { compress: true, bytes: bytes.slice(0, bytes.length - 12) })).toMatchObject({ status: 400, code: "invalid_gzip" });
    expect(await run(streamSamples.read, { bytes: new Uint8Array([0x1f, 0x8b]) })).toMatchObject({ status: 400, code: "invalid_gzip" });
  });

  it("refuses a body that inflates past 64 KiB with 413, reading no further (a gzip bomb)", async () => {
    const padded = JSON.stringify({ ...streamSamples.read, padding: "x".repeat(64 * 1024) });
    expect(await run(padded, { compress: true })).toMatchObject({ stage: "verify", status: 413, code: "body_too_large" });
    // 16 MiB of zeros gzips to about 16 KiB: inflating stops at the limit.
    const bomb = await gzip(new Uint8Array(16 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(64 * 1024);
    expect(await inflateIfGzip(bomb)).toMatchObject({ ok: false, rejection: { status: 413 } });
    const fits = JSON.stringify({ ...streamSamples.read, padding: "x".repeat(60 * 1024) });
    expect((await run(fits, { compress: true })).stage).toBe("done");
  });

  it("passes a body that is not gzip through unchanged", async () => {
    const bytes = encode("{}");
    expect(await inflateIfGzip(bytes)).toEqual({ ok: true, value: bytes });
  });
});

describe("stream validation", () => {
  itRefusesWhatIsNotItsBody(run, async () => stream.parse(await streamCallback(streamSamples.read, { path: ["extra"] })));

  it("refuses a signed body that is not UTF-8", async () => {
    const bytes = new Uint8Array([0x7b, 0xff, 0x7d]);
    const raw = await streamCallback("x", { bytes, signature: await signStream("secret-a", bytes) });
    expect(await runProvider(stream, raw, config, NOW, RECEIVED_AT)).toMatchObject({ stage: "normalize", status: 400, code: "invalid_utf8" });
  });

  it("names a missing or wrong field", async () => {
    for (const field of ["type", "created_at", "user"]) {
      const body = copy(streamSamples.read);
      delete body[field];
      const result = await run(body);
      expect(result).toMatchObject({ stage: "normalize", status: 400 });
      expect("message" in result && result.message).toContain(`field ${field}`);
    }
    const noUserId = copy(streamSamples.read, { user: { channel_last_read_at: "2020-03-30T07:55:01Z" } });
    expect(await run(noUserId)).toMatchObject({ status: 400, message: expect.stringContaining("field user.id") });
    const badTime = copy(streamSamples.read, { created_at: "yesterday" });
    expect(await run(badTime)).toMatchObject({ status: 400, message: expect.stringContaining("field created_at") });
    const badCount = copy(streamSamples.read, { user: { ...streamSamples.read.user, total_unread_count: -1 } });
    expect(await run(badCount)).toMatchObject({ status: 400, message: expect.stringContaining("field user.total_unread_count") });
  });

  it("needs a channel: cid, or channel_type and channel_id, which must agree", async () => {
    const noCid = copy(streamSamples.read);
    delete noCid.cid;
    expect(receiptFrom(await run(noCid)).group).toBe(streamSamples.read.cid);
    delete noCid.channel_id;
    expect(await run(noCid)).toMatchObject({ status: 400, message: expect.stringContaining("field cid") });
    expect(await run(copy(streamSamples.read, { cid: "messaging:other" }))).toMatchObject({ status: 400, message: expect.stringContaining("field cid") });
    expect(await run(copy(streamSamples.read, { cid: "no-colon" }))).toMatchObject({ status: 400, message: expect.stringContaining("field cid") });
  });

  it("refuses an X-Webhook-Id that is not a short printable id", async () => {
    expect(await run(streamSamples.read, { webhookId: "a".repeat(129) })).toMatchObject({ stage: "normalize", status: 400, code: "invalid_webhook_id" });
  });

  it("ignores authentic events that are not message.read, without validating them", async () => {
    expect(await run(streamSamples.other)).toEqual({ stage: "done", kind: "ignored", event: "message.new" });
    expect(await run({ type: "channel.created" })).toEqual({ stage: "done", kind: "ignored", event: "channel.created" });
  });
});

describe("stream normalization", () => {
  it("message.read, field by field", async () => {
    const receipt = receiptFrom(await run(streamSamples.read));
    expect(receipt).toEqual({
      id: "stream:123e4567-e89b-12d3-a456-426614174000",
      provider: "stream",
      event: "message.read",
      app: "key-1",
      chat: "group",
      conversation: "stream:key-1:g:messaging%3Afun-d5f396e3-fbaf-469c-9b45-8837b4f75baa",
      readers: ["tommaso-52ec3a5f-e916-469f-bf54-b53b5247a4b0"],
      group: "messaging:fun-d5f396e3-fbaf-469c-9b45-8837b4f75baa",
      messages: [{ id: "8bffc454-e1da-4d91-8b88-a87853dfb41c" }],
      upTo: { time: "2020-03-30T07:55:01.102Z" },
      readAt: "2020-03-30T07:55:01.104Z",
      unreadTotal: 3,
      receivedAt: RECEIVED_AT,
      raw: streamSamples.read,
    });
  });

  it('without X-Api-Key the app is "stream"; without X-Webhook-Id the id is a hash of the read, stable across retries', async () => {
    const first = receiptFrom(await run(streamSamples.read, { apiKey: null, webhookId: null }));
    expect(first.app).toBe("stream");
    expect(first.conversation).toBe(groupConversationKey("stream", "stream", streamSamples.read.cid));
    expect(first.id).toMatch(/^stream:[0-9a-f]{32}$/);
    expect(receiptFrom(await run(streamSamples.read, { apiKey: null, webhookId: null })).id).toBe(first.id);
    const later = copy(streamSamples.read, { created_at: "2020-03-30T08:00:00Z" });
    expect(receiptFrom(await run(later, { apiKey: null, webhookId: null })).id).not.toBe(first.id);
  });

  it("leaves out what the event does not send", async () => {
    const body = copy(streamSamples.read, { user: { id: "u1" } });
    delete body.last_read_message_id;
    const receipt = receiptFrom(await run(body));
    expect(receipt.messages).toEqual([]);
    expect(receipt).not.toHaveProperty("upTo");
    expect(receipt).not.toHaveProperty("unreadTotal");
  });

  it("a thread read stays on its channel's conversation, with the thread kept in raw", async () => {
    const thread = { parent_message_id: "parent-1", channel_cid: streamSamples.read.cid };
    const receipt = receiptFrom(await run(copy(streamSamples.read, { thread })));
    expect(receipt.conversation).toBe(groupConversationKey("stream", "key-1", streamSamples.read.cid));
    expect(receipt.raw.thread).toEqual(thread);
  });
});

describe("stream answers", () => {
  it("answers 200 with a small JSON body, and refusals with their status and code", () => {
    expect(stream.answer({ ok: true, result: "accepted", event: "message.read" })).toEqual({ status: 200, body: { status: "ok", result: "accepted" } });
    expect(stream.answer({ ok: false, status: 401, code: "bad_signature", message: "m" })).toEqual({
      status: 401,
      body: { status: "error", code: "bad_signature", message: "m" },
    });
  });
});

describe("stream through the worker", () => {
  // A live read: the sample's own created_at (2020) is long past the dedup window.
  const readOf = (user: string, createdAt = Date.now()) =>
    copy(streamSamples.read, {
      cid: `messaging:${unique("ch-")}`,
      channel_id: undefined,
      channel_type: undefined,
      created_at: new Date(createdAt).toISOString(),
      user: { ...streamSamples.read.user, id: user },
    });

  it("takes Stream's retry (same X-Webhook-Id, the next X-Webhook-Attempt) as a duplicate", async () => {
    const body = readOf(unique("reader-"));
    const webhookId = crypto.randomUUID();
    const first = await sendStream(body, { webhookId });
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ status: "ok", result: "accepted" });
    const retry = await sendStream(body, { webhookId, attempt: 2 });
    expect(await retry.json()).toEqual({ status: "ok", result: "duplicate" });
  });

  it("accepts a gzip body signed over the uncompressed JSON, with the second secret", async () => {
    const response = await sendStream(readOf(unique("reader-")), { compress: true, secret: STREAM_SECRETS[1] });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok", result: "accepted" });
  });

  it("refuses another X-Api-Key with 403, a corrupt gzip with 400, a bomb with 413", async () => {
    expect((await sendStream(readOf("u1"), { apiKey: "another-key" })).status).toBe(403);
    const request = await streamRequest(JSON.stringify(readOf("u1")), { compress: true });
    request.body[12] = request.body[12]! ^ 0xff;
    request.body[13] = request.body[13]! ^ 0xff;
    const corrupt = await send("/v1/hooks/stream", { headers: request.headers, body: request.body });
    expect(corrupt.status).toBe(400);
    expect(await corrupt.json()).toMatchObject({ status: "error" });
    const big = JSON.stringify({ ...readOf("u1"), padding: "x".repeat(200 * 1024) });
    const bomb = await streamRequest(big, { compress: true });
    expect(bomb.body.length).toBeLessThan(64 * 1024);
    const refused = await send("/v1/hooks/stream", { headers: bomb.headers, body: bomb.body });
    expect(refused.status).toBe(413);
    expect(await refused.json()).toMatchObject({ status: "error", code: "body_too_large" });
  });

  it("refuses a captured read once created_at is past the dedup window, whatever its X-Webhook-Id (issue 18, finding 4)", async () => {
    const edge = Date.now() - MAX_EVENT_AGE_MS + 60_000;
    expect(await (await sendStream(readOf(unique("reader-"), edge))).json()).toEqual({ status: "ok", result: "accepted" });
    const captured = readOf(unique("reader-"), Date.now() - MAX_EVENT_AGE_MS - 60_000);
    for (const webhookId of [crypto.randomUUID(), crypto.randomUUID()]) {
      const replayed = await sendStream(captured, { webhookId });
      expect(replayed.status).toBe(401);
      expect(await replayed.json()).toEqual({ status: "error", code: "expired", message: expect.stringContaining("created_at is more than 47 h 55 min old") });
    }
    const conversation = groupConversationKey("stream", STREAM_API_KEY, String(captured.cid));
    expect((await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`)).status).toBe(404);
  });

  it("refuses a created_at more than 5 minutes ahead (its id could be forgotten before it ages out)", async () => {
    const ahead = await sendStream(readOf(unique("reader-"), Date.now() + MAX_FUTURE_SKEW_MS + 60_000));
    expect(ahead.status).toBe(401);
    expect(await ahead.json()).toMatchObject({ status: "error", code: "from_the_future" });
  });

  it("files the receipt under the X-Api-Key app", async () => {
    const body = readOf(unique("reader-"));
    expect((await sendStream(body)).status).toBe(200);
    const conversation = groupConversationKey("stream", STREAM_API_KEY, String(body.cid));
    const listed = await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
    expect(listed.status).toBe(200);
    expect(await listed.json()).toMatchObject({ receipts: [{ provider: "stream", event: "message.read", app: STREAM_API_KEY }] });
  });
});

describe("stream settings", () => {
  it("takes several secrets and keys", () => {
    expect(stream.configure({ STREAM_API_SECRET: ["a", "b"], STREAM_API_KEY: ["k"] })).toEqual({
      state: "enabled",
      config: { secrets: ["a", "b"], apiKeys: ["k"] },
    });
    expect(stream.configure({ STREAM_API_SECRET: ["a"], STREAM_API_KEY: undefined })).toEqual({ state: "enabled", config: { secrets: ["a"] } });
  });
});

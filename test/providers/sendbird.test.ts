import { describe, expect, it } from "vitest";
import type { RawCallback } from "../../src/providers/provider";
import { sendbird, signSendbird, type SendbirdConfig } from "../../src/providers/sendbird";
import { z } from "zod";
import { groupConversationKey, MAX_EVENT_AGE_MS, MAX_FUTURE_SKEW_MS, MAX_READERS_PER_RECEIPT, Receipt } from "../../src/receipt";
import { api, copy, SENDBIRD_APP, SENDBIRD_TOKENS, sendbirdSamples, sendSendbird, unique } from "../support/callbacks";
import { receiptFrom, runProvider, itRefusesWhatIsNotItsBody } from "../support/pipeline";

const NOW = Date.parse("2026-11-22T00:00:00.000Z");
const RECEIVED_AT = new Date(NOW).toISOString();
const APP = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
const config: SendbirdConfig = { tokens: ["token-a", "token-b"] };
const withApp: SendbirdConfig = { ...config, appIds: [APP, "app-2"] };
const encode = (text: string) => new TextEncoder().encode(text);

/** The read sample as Sendbird writes it: `/` escaped as `\/`, as in the profile URL. */
const escapedText = (body: unknown = sendbirdSamples.read) => JSON.stringify(body).replaceAll("/", "\\/");

interface Signing {
  token?: string;
  signature?: string | null;
  path?: string[];
}

/** A Sendbird callback as the router hands it over: signed over exactly the bytes sent. */
async function sendbirdCallback(body: unknown, signing: Signing = {}): Promise<RawCallback> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const bytes = encode(text);
  const headers = new Headers({ "content-type": "application/json", "user-agent": "SendBird" });
  const signature = signing.signature === undefined ? await signSendbird(signing.token ?? "token-a", bytes) : signing.signature;
  if (signature !== null) headers.set("x-sendbird-signature", signature);
  return { url: new URL("https://relay.test/v1/hooks/sendbird"), path: signing.path ?? [], body: text, bytes, headers };
}

const run = async (body: unknown, signing: Signing = {}, cfg: SendbirdConfig = config) =>
  runProvider(sendbird, await sendbirdCallback(body, signing), cfg, NOW, RECEIVED_AT);

describe("sendbird signature", () => {
  it("is lower-case hex HMAC-SHA256 of the body under the API token", async () => {
    // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    expect(await signSendbird("Jefe", "what do ya want for nothing?")).toBe("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  });

  it("accepts a body signed with any configured token, and an upper-case signature", async () => {
    for (const token of config.tokens) expect((await run(sendbirdSamples.read, { token })).stage).toBe("done");
    const upper = (await signSendbird("token-a", JSON.stringify(sendbirdSamples.read))).toUpperCase();
    expect((await run(sendbirdSamples.read, { signature: upper })).stage).toBe("done");
  });

  it("verifies the bytes as received, escaped slashes and all; a re-serialized body would not match", async () => {
    const text = escapedText();
    expect(text).toContain("https:\\/\\/sendbird.com\\/main\\/img");
    const signature = await signSendbird("token-a", encode(text));
    const receipt = receiptFrom(await run(text, { signature }));
    // The body means the same: the escapes are only in the bytes.
    expect(receipt.raw).toEqual(sendbirdSamples.read);
    const reserialized = JSON.stringify(JSON.parse(text));
    expect(reserialized).not.toBe(text);
    expect(await signSendbird("token-a", reserialized)).not.toBe(signature);
    expect(await run(reserialized, { signature })).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
  });

  it("verifies a channel_url holding escaped slashes", async () => {
    const body = copy(sendbirdSamples.read, { channel: { ...sendbirdSamples.read.channel, channel_url: "team/support/room-1" } });
    const text = escapedText(body);
    expect(text).toContain('"channel_url":"team\\/support\\/room-1"');
    const receipt = receiptFrom(await run(text));
    expect(receipt.group).toBe("team/support/room-1");
    expect(receipt.conversation).toBe(groupConversationKey("sendbird", APP, "team/support/room-1"));
  });

  it("refuses a missing signature, another token, and a changed body with 401, never naming the token", async () => {
    expect(await run(sendbirdSamples.read, { signature: null })).toMatchObject({ stage: "verify", status: 401, code: "missing_signature" });
    const wrongToken = await run(sendbirdSamples.read, { token: "not-configured" });
    expect(wrongToken).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
    expect(JSON.stringify(wrongToken)).not.toContain("token-a");
    const signature = await signSendbird("token-a", JSON.stringify(sendbirdSamples.read));
    const tampered = copy(sendbirdSamples.read, { read_updates: [{ ...sendbirdSamples.read.read_updates[0], user_id: "Mallory" }] });
    expect(await run(tampered, { signature })).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
  });

  it("with SENDBIRD_APP_ID, requires the body's app_id to be one of them (403), once authentic", async () => {
    expect((await run(sendbirdSamples.read, {}, withApp)).stage).toBe("done");
    expect((await run(copy(sendbirdSamples.read, { app_id: "app-2" }), {}, withApp)).stage).toBe("done");
    expect(await run(copy(sendbirdSamples.read, { app_id: "app-3" }), {}, withApp)).toMatchObject({ stage: "verify", status: 403, code: "app_id_not_allowed" });
    expect(await run(copy(sendbirdSamples.read, { app_id: 7 }), {}, withApp)).toMatchObject({ stage: "verify", status: 403, code: "app_id_not_allowed" });
    const noApp = copy(sendbirdSamples.read);
    delete noApp.app_id;
    expect(await run(noApp, {}, withApp)).toMatchObject({ stage: "verify", status: 403, code: "missing_app_id" });
    // An unsigned body is refused for its signature before its app is read.
    expect(await run(copy(sendbirdSamples.read, { app_id: "app-3" }), { token: "wrong" }, withApp)).toMatchObject({ status: 401 });
  });

  it("authenticates before it judges the body: an unsigned non-JSON body is 401, a signed one 400", async () => {
    expect(await run("not json", { signature: "0".repeat(64) })).toMatchObject({ stage: "verify", status: 401 });
    expect(await run("not json", {}, withApp)).toMatchObject({ stage: "normalize", status: 400, code: "invalid_json" });
  });
});

describe("sendbird validation", () => {
  itRefusesWhatIsNotItsBody(run, async () => sendbird.parse(await sendbirdCallback(sendbirdSamples.read, { path: ["extra"] })));

  it("names a missing or wrong field", async () => {
    for (const field of ["category", "channel", "read_updates"]) {
      const body = copy(sendbirdSamples.read);
      delete body[field];
      const result = await run(body);
      expect(result).toMatchObject({ stage: "normalize", status: 400 });
      expect("message" in result && result.message).toContain(`field ${field}`);
    }
    const update = sendbirdSamples.read.read_updates[0]!;
    const cases: [Record<string, unknown>, string][] = [
      [{ channel: { name: "no url" } }, "field channel.channel_url"],
      [{ read_updates: [] }, "field read_updates"],
      [{ read_updates: [{ ...update, read_ts: "1540864257418" }] }, "field read_updates.0.read_ts"],
      [{ read_updates: [{ ...update, read_ts: 1e20 }] }, "field read_updates.0.read_ts"],
      [{ read_updates: [{ ...update, user_id: "" }] }, "field read_updates.0.user_id"],
      [{ read_updates: [{ ...update, total_unread_message_count: -1 }] }, "field read_updates.0.total_unread_message_count"],
      [{ channel: { channel_url: "c".repeat(129) } }, "field channel.channel_url"],
    ];
    for (const [overrides, field] of cases) {
      expect(await run(copy(sendbirdSamples.read, overrides))).toMatchObject({ stage: "normalize", status: 400, message: expect.stringContaining(field) });
    }
  });

  it("ignores authentic events that are not group_channel:message_read, without validating them", async () => {
    expect(await run(sendbirdSamples.other)).toEqual({ stage: "done", kind: "ignored", event: "group_channel:message_send" });
    expect(await run({ category: "open_channel:enter" })).toEqual({ stage: "done", kind: "ignored", event: "open_channel:enter" });
  });
});

describe("sendbird normalization", () => {
  it("group_channel:message_read (the docs' sample), field by field", async () => {
    const receipt = receiptFrom(await run(sendbirdSamples.read));
    expect(receipt).toEqual({
      id: expect.stringMatching(/^sendbird:[0-9a-f]{32}$/),
      provider: "sendbird",
      event: "group_channel:message_read",
      app: APP,
      chat: "group",
      conversation: `sendbird:${APP}:g:sendbird_group_channel_47226288_21c0d617e45a7db4e12a7f5efdb4df4743b11c16`,
      readers: ["John"],
      group: "sendbird_group_channel_47226288_21c0d617e45a7db4e12a7f5efdb4df4743b11c16",
      messages: [],
      upTo: { time: "2018-10-30T01:50:57.418Z" },
      readAt: "2018-10-30T01:50:57.418Z",
      unreadTotal: 3,
      receivedAt: RECEIVED_AT,
      raw: sendbirdSamples.read,
    });
  });

  it("the same callback sent again (Sendbird's retry) has the same id; another read does not", async () => {
    const first = receiptFrom(await run(sendbirdSamples.read));
    expect(receiptFrom(await run(sendbirdSamples.read, { token: "token-b" })).id).toBe(first.id);
    const later = copy(sendbirdSamples.read, { read_updates: [{ ...sendbirdSamples.read.read_updates[0], read_ts: 1540864257419 }] });
    expect(receiptFrom(await run(later)).id).not.toBe(first.id);
  });

  it("several readers: readAt the latest read_ts, upTo the earliest, no unreadTotal", async () => {
    const read_updates = [
      { user_id: "John", read_ts: 1540864257418, total_unread_message_count: 3 },
      { user_id: "Jane", read_ts: 1540864260000, total_unread_message_count: 0 },
    ];
    const receipt = receiptFrom(await run(copy(sendbirdSamples.read, { read_updates })));
    expect(receipt.readers).toEqual(["John", "Jane"]);
    expect(receipt.readAt).toBe("2018-10-30T01:51:00.000Z");
    expect(receipt.upTo).toEqual({ time: "2018-10-30T01:50:57.418Z" });
    expect(receipt).not.toHaveProperty("unreadTotal");
  });

  it('without app_id the app is "sendbird"', async () => {
    const body = copy(sendbirdSamples.read);
    delete body.app_id;
    const receipt = receiptFrom(await run(body));
    expect(receipt.app).toBe("sendbird");
    expect(receipt.conversation).toBe(groupConversationKey("sendbird", "sendbird", sendbirdSamples.read.channel.channel_url));
  });
});

describe("sendbird answers", () => {
  it("answers 200 with a small JSON body, and refusals with their status and code", () => {
    expect(sendbird.answer({ ok: true, result: "ignored", event: "x" })).toEqual({ status: 200, body: { status: "ok", result: "ignored" } });
    expect(sendbird.answer({ ok: false, status: 403, code: "app_id_not_allowed", message: "m" })).toEqual({
      status: 403,
      body: { status: "error", code: "app_id_not_allowed", message: "m" },
    });
  });
});

describe("sendbird through the worker", () => {
  // A live read: the sample's own read_ts (2018) is long past the dedup window.
  const readIn = (channelUrl: string, readTs = Date.now()) =>
    copy(sendbirdSamples.read, {
      channel: { ...sendbirdSamples.read.channel, channel_url: channelUrl },
      read_updates: [{ ...sendbirdSamples.read.read_updates[0], read_ts: readTs }],
    });
  const receiptsOf = async (channelUrl: string) => {
    const conversation = groupConversationKey("sendbird", SENDBIRD_APP, channelUrl);
    return api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
  };

  it("stores a signed read once, with escaped slashes in the bytes; the retry is a duplicate", async () => {
    const channelUrl = `${unique("room-")}/general`;
    const text = escapedText(readIn(channelUrl));
    const first = await sendSendbird(text);
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ status: "ok", result: "accepted" });
    const retry = await sendSendbird(text, SENDBIRD_TOKENS[1]);
    expect(await retry.json()).toEqual({ status: "ok", result: "duplicate" });
    const conversation = groupConversationKey("sendbird", SENDBIRD_APP, channelUrl);
    const listed = await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
    expect(await listed.json()).toMatchObject({ receipts: [{ provider: "sendbird", group: channelUrl, readers: ["John"] }] });
  });

  it("refuses a captured read once its latest read_ts is past the dedup window (issue 18, finding 4)", async () => {
    const fresh = unique("room-");
    expect(await (await sendSendbird(escapedText(readIn(fresh, Date.now() - MAX_EVENT_AGE_MS + 60_000)))).json()).toEqual({ status: "ok", result: "accepted" });
    const channelUrl = unique("room-");
    const captured = escapedText(readIn(channelUrl, Date.now() - MAX_EVENT_AGE_MS - 60_000));
    const replayed = await sendSendbird(captured);
    expect(replayed.status).toBe(401);
    expect(await replayed.json()).toEqual({
      status: "error",
      code: "expired",
      message: expect.stringContaining("read_updates[].read_ts is more than 47 h 55 min old"),
    });
    expect((await receiptsOf(channelUrl)).status).toBe(404);
    const ahead = await sendSendbird(escapedText(readIn(unique("room-"), Date.now() + MAX_FUTURE_SKEW_MS + 60_000)));
    expect(await ahead.json()).toMatchObject({ status: "error", code: "from_the_future" });
  });

  it(`keeps the first ${MAX_READERS_PER_RECEIPT} readers of a read and counts the rest (it refused them all before)`, async () => {
    const channelUrl = unique("room-");
    const now = Date.now();
    const updates = Array.from({ length: MAX_READERS_PER_RECEIPT + 200 }, (_, i) => ({ user_id: `u${i}`, read_ts: now - i }));
    const { members: _members, ...read } = readIn(channelUrl);
    const text = JSON.stringify({ ...read, read_updates: updates });
    expect(new TextEncoder().encode(text).length).toBeLessThan(64 * 1024);
    const response = await sendSendbird(text);
    expect(await response.json()).toEqual({ status: "ok", result: "accepted" });
    const { receipts } = z.object({ receipts: z.array(Receipt) }).parse(await (await receiptsOf(channelUrl)).json());
    expect(receipts).toHaveLength(1);
    expect(receipts[0]!.readers).toHaveLength(MAX_READERS_PER_RECEIPT);
    expect(receipts[0]!.readers.at(-1)).toBe(`u${MAX_READERS_PER_RECEIPT - 1}`);
    expect(receipts[0]!.truncated).toEqual({ readers: 200 });
    // raw keeps every reader for the origin.
    expect(receipts[0]!.raw.read_updates).toHaveLength(MAX_READERS_PER_RECEIPT + 200);
  });

  it("refuses an app_id not in SENDBIRD_APP_ID with 403", async () => {
    const response = await sendSendbird(copy(readIn(unique("room-")), { app_id: "another-app" }));
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ status: "error", code: "app_id_not_allowed" });
  });
});

describe("sendbird settings", () => {
  it("takes several tokens and app ids", () => {
    expect(sendbird.configure({ SENDBIRD_API_TOKEN: ["a", "b"], SENDBIRD_APP_ID: [APP] })).toEqual({
      state: "enabled",
      config: { tokens: ["a", "b"], appIds: [APP] },
    });
  });
});

import { describe, expect, it } from "vitest";
import { easemob, signEasemob, type EasemobConfig } from "../../src/providers/easemob";
import { groupConversationKey, type Receipt } from "../../src/receipt";
import { api, copy, EASEMOB_SECRETS, samples, send, signedEasemob, unique } from "../support/callbacks";
import { rawCallback, receiptFrom, runProvider } from "../support/pipeline";

const NOW = Date.parse("2026-11-22T00:00:00.000Z");
const RECEIVED_AT = new Date(NOW).toISOString();
const config: EasemobConfig = { secrets: ["secret-a", "secret-b"], maxEventAgeSeconds: 3600 };
const raw = (body: unknown) => rawCallback(body, { url: "https://relay.test/v1/hooks/easemob" });

const run = (body: Record<string, unknown>, now = NOW) => runProvider(easemob, raw(body), config, now, RECEIVED_AT);

async function receiptOf(body: Record<string, unknown>): Promise<Receipt> {
  return receiptFrom(await run(await signedEasemob(body, { secret: "secret-a", timestamp: NOW - 1000 })));
}

describe("easemob signature", () => {
  it("is md5(callId + secret + timestamp), lower-case hex", async () => {
    // md5("abc") from RFC 1321, split across the three parts.
    expect(await signEasemob("a", "b", "c")).toBe("900150983cd24fb0d6963f7d28e17f72");
  });

  it("accepts a body signed with any configured secret, upper-case hex too", async () => {
    for (const secret of config.secrets) {
      const body = await signedEasemob(copy(samples.easemob.single), { secret, timestamp: NOW });
      expect((await run(body)).stage).toBe("done");
      expect((await run({ ...body, security: String(body.security).toUpperCase() })).stage).toBe("done");
    }
  });

  it("refuses another secret, a changed field, and a timestamp that is not the signed one", async () => {
    const body = await signedEasemob(copy(samples.easemob.single), { secret: "secret-a", timestamp: NOW });
    const wrongSecret = await signedEasemob(copy(samples.easemob.single), { secret: "not-configured", timestamp: NOW });
    for (const tampered of [wrongSecret, { ...body, callId: `${body.callId}9` }, { ...body, timestamp: NOW + 1 }]) {
      const result = await run(tampered);
      expect(result).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
      expect(JSON.stringify(result)).not.toContain("secret-a");
    }
  });

  it("refuses a timestamp older than MAX_EVENT_AGE_SECONDS or over 5 minutes ahead", async () => {
    const old = await signedEasemob(copy(samples.easemob.single), { secret: "secret-a", timestamp: NOW - 3600_001 });
    expect(await run(old)).toMatchObject({ stage: "verify", status: 401, code: "expired" });
    const edge = await signedEasemob(copy(samples.easemob.single), { secret: "secret-a", timestamp: NOW - 3600_000 });
    expect((await run(edge)).stage).toBe("done");
    const ahead = await signedEasemob(copy(samples.easemob.single), { secret: "secret-a", timestamp: NOW + 300_001 });
    expect(await run(ahead)).toMatchObject({ stage: "verify", status: 401, code: "from_the_future" });
  });

  it("verifies a timestamp sent as a numeric string, as written", async () => {
    const body = copy(samples.easemob.single, { timestamp: String(NOW) });
    body.security = await signEasemob(String(body.callId), "secret-b", String(NOW));
    expect((await run(body)).stage).toBe("done");
  });
});

describe("easemob parse and validation", () => {
  it.each([
    ["not JSON", "{", "invalid_json"],
    ["empty", "", "empty_body"],
    ["an array", "[]", "invalid_body"],
  ])("refuses %s with 400", (_, text, code) => {
    const parsed = easemob.parse(rawCallback(text));
    expect(parsed).toMatchObject({ ok: false, rejection: { status: 400, code } });
  });

  it.each(["callId", "timestamp", "security", "chat_type"])("names a missing envelope field: %s", (field) => {
    const body: Record<string, unknown> = copy(samples.easemob.single);
    delete body[field];
    const parsed = easemob.parse(raw(body));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.rejection.message).toContain(`field ${field}`);
  });

  it("answers 404 for a path below the hook", () => {
    const parsed = easemob.parse(rawCallback(samples.easemob.single, { path: ["extra"] }));
    expect(parsed).toMatchObject({ ok: false, rejection: { status: 404, code: "unknown_path" } });
  });

  it.each(["from", "to", "payload"])("names a missing read_ack field once authentic: %s", async (field) => {
    const body: Record<string, unknown> = copy(samples.easemob.single);
    delete body[field];
    const result = await run(await signedEasemob(body, { secret: "secret-a", timestamp: NOW }));
    expect(result).toMatchObject({ stage: "normalize", status: 400 });
    expect("message" in result && result.message).toContain(`field ${field}`);
  });

  it("ignores authentic events that are not read receipts", async () => {
    for (const chatType of ["delivery_ack", "chat", "groupchat"]) {
      const body = await signedEasemob(copy(samples.easemob.single, { chat_type: chatType }), { secret: "secret-a", timestamp: NOW });
      expect(await run(body)).toEqual({ stage: "done", kind: "ignored", event: chatType });
    }
  });
});

describe("easemob normalization", () => {
  it("one-to-one read_ack (seed 000), field by field", async () => {
    const receipt = await receiptOf(copy(samples.easemob.single));
    expect(receipt).toEqual({
      id: "easemob:XXXX#XXXX_968665325555943556",
      provider: "easemob",
      event: "read_ack",
      app: "XXXX#XXXX",
      chat: "single",
      conversation: "easemob:XXXX%23XXXX:u:1111:2222",
      readers: ["1111"],
      peer: "2222",
      messages: [{ id: "968665323572037776" }],
      readAt: new Date(NOW - 1000).toISOString(),
      receivedAt: RECEIVED_AT,
      raw: expect.objectContaining({ callId: "XXXX#XXXX_968665325555943556", from: "1111", to: "2222", timestamp: NOW - 1000 }),
    });
  });

  it("group read_ack (seed 001), field by field", async () => {
    const receipt = await receiptOf(copy(samples.easemob.group));
    const { security: _, ...unsigned } = samples.easemob.group;
    expect(receipt).toEqual({
      id: "easemob:XXXX#XXXX_1406088760298309588",
      provider: "easemob",
      event: "read_ack",
      app: "eXXXX#XXXX",
      chat: "group",
      conversation: "easemob:eXXXX%23XXXX:g:277721224642561",
      readers: ["tst"],
      group: "277721224642561",
      messages: [{ id: "1406088702140090324" }],
      readAt: new Date(NOW - 1000).toISOString(),
      receivedAt: RECEIVED_AT,
      raw: { ...unsigned, timestamp: NOW - 1000 },
    });
  });

  it("keeps the body as raw, without the signature (it would make the callback replayable)", async () => {
    const receipt = await receiptOf(copy(samples.easemob.single));
    expect(receipt.raw).not.toHaveProperty("security");
    expect(receipt.raw).toMatchObject({ callId: samples.easemob.single.callId, payload: samples.easemob.single.payload });
  });

  it("refuses ids longer than any provider allows, and message ids that lost digits as numbers", async () => {
    const longFrom = await run(await signedEasemob(copy(samples.easemob.single, { from: "u".repeat(129) }), { secret: "secret-a", timestamp: NOW }));
    expect(longFrom).toMatchObject({ stage: "normalize", status: 400, message: expect.stringContaining("field from") });
    const rounded = copy(samples.easemob.single, { payload: { ack_message_id: 968665323572037776 } });
    const result = await run(await signedEasemob(rounded, { secret: "secret-a", timestamp: NOW }));
    expect(result).toMatchObject({ stage: "normalize", status: 400, message: expect.stringContaining("field payload.ack_message_id") });
  });

  it("group read_ack named by group_id", async () => {
    const body = copy(samples.easemob.single, { group_id: "g-1", to: "g-1" });
    expect(await receiptOf(body)).toMatchObject({ chat: "group", group: "g-1", conversation: "easemob:XXXX%23XXXX:g:g-1" });
  });

  it("channel_ack: the whole conversation is read up to the timestamp, field by field", async () => {
    const receipt = await receiptOf(copy(samples.easemob.channel));
    const { security: _, ...unsigned } = samples.easemob.channel;
    expect(receipt).toEqual({
      id: "easemob:XXXX#XXXX_1407211300018423236",
      provider: "easemob",
      event: "channel_ack",
      app: "XXXX#XXXX",
      chat: "single",
      conversation: "easemob:XXXX%23XXXX:u:1111:2222",
      readers: ["1111"],
      peer: "2222",
      messages: [{ id: "1407211196108736964" }],
      upTo: { time: new Date(NOW - 1000).toISOString() },
      readAt: new Date(NOW - 1000).toISOString(),
      receivedAt: RECEIVED_AT,
      raw: { ...unsigned, timestamp: NOW - 1000 },
    });
  });

  it("takes the app key from callId when appkey is missing, and works without channel_channel", async () => {
    const body = copy(samples.easemob.single);
    delete body.appkey;
    delete body.channel_channel;
    const receipt = await receiptOf(body);
    expect(receipt.app).toBe("XXXX#XXXX");
    expect(receipt.conversation).toBe("easemob:XXXX%23XXXX:u:1111:2222");
  });

  it("refuses a body with neither appkey nor an app key in callId", async () => {
    const body = copy(samples.easemob.single, { callId: "968665325555943556" });
    delete body.appkey;
    const result = await run(await signedEasemob(body, { secret: "secret-a", timestamp: NOW }));
    expect(result).toMatchObject({ stage: "normalize", status: 400 });
    expect("message" in result && result.message).toContain("appkey");
  });

  it("gives both users of a chat the same conversation", async () => {
    const ab = await receiptOf(copy(samples.easemob.single));
    const ba = await receiptOf(copy(samples.easemob.single, { from: "2222", to: "1111", callId: "XXXX#XXXX_1" }));
    expect(ba.conversation).toBe(ab.conversation);
    expect(ba.readers).toEqual(["2222"]);
  });
});

describe("easemob answers", () => {
  it("answers 200 with a short body, and refusals with their status", () => {
    expect(easemob.answer({ ok: true, result: "accepted", event: "read_ack" })).toEqual({ status: 200, body: { status: "ok", result: "accepted" } });
    const refused = easemob.answer({ ok: false, status: 401, code: "bad_signature", message: "x".repeat(5000) });
    expect(refused.status).toBe(401);
    expect(JSON.stringify(refused.body).length).toBeLessThanOrEqual(1000);
  });
});

describe("easemob through the worker: a claimed callId is bound to its body (issue 18, finding 3)", () => {
  /** A group read_ack of its own group and callId, signed now with the relay's test secret. */
  async function groupRead() {
    const group = unique("g");
    const body = copy(samples.easemob.group, { callId: `XXXX#XXXX_${unique("")}`, to: group });
    return { group, body: await signedEasemob(body, { secret: EASEMOB_SECRETS[0] }) };
  }

  it("refuses a re-sent callId with another reader and message in the same group as 401 signature_reused, storing nothing", async () => {
    const { group, body } = await groupRead();
    expect(await (await send("/v1/hooks/easemob", { json: body })).json()).toEqual({ status: "ok", result: "accepted" });
    // Easemob's own retry: the same bytes again.
    expect(await (await send("/v1/hooks/easemob", { json: body })).json()).toEqual({ status: "ok", result: "duplicate" });
    // The forger keeps callId, timestamp and security; the group (so the conversation) is the same.
    const altered = { ...body, from: "mallory", payload: { ...(body.payload as object), ack_message_id: "1406088702140099999" } };
    const replayed = await send("/v1/hooks/easemob", { json: altered });
    expect(replayed.status).toBe(401);
    expect(await replayed.json()).toMatchObject({ status: "error", code: "signature_reused" });
    const conversation = groupConversationKey("easemob", String(body.appkey), group);
    const listed = await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
    expect(await listed.json()).toMatchObject({ receipts: [{ readers: ["tst"], messages: [{ id: "1406088702140090324" }] }] });
  });

  it("refuses even a re-serialization of the same body: the digest is of the bytes as received", async () => {
    const { body } = await groupRead();
    const text = JSON.stringify(body);
    expect((await send("/v1/hooks/easemob", { body: text })).status).toBe(200);
    expect((await send("/v1/hooks/easemob", { body: `${text}\n` })).status).toBe(401);
  });
});

import { describe, expect, it } from "vitest";
import { hmacSha256Hex } from "../../src/crypto/hash";
import { providers } from "../../src/ingestors";
import type { RawCallback } from "../../src/providers/provider";
import { signTalkjs, talkjs, talkjsTimestampMillis, type TalkjsConfig } from "../../src/providers/talkjs";
import { groupConversationKey, Receipt } from "../../src/receipt";
import { copy, sendTalkjs, TALKJS_APP, talkjsSamples, unique, receiptsIn } from "../support/callbacks";
import { receiptFrom, runProvider, itRefusesWhatIsNotItsBody } from "../support/pipeline";

const NOW = Date.parse("2026-11-22T00:00:00.000Z");
const RECEIVED_AT = new Date(NOW).toISOString();
const APP = "tAppOne";
const config: TalkjsConfig = { secrets: ["sk_test_a", "sk_test_b"], maxEventAgeSeconds: 300 };
const withApp: TalkjsConfig = { ...config, appIds: [APP, "tAppTwo"] };
const encode = (text: string) => new TextEncoder().encode(text);

interface Signing {
  secret?: string;
  /** undefined: NOW; null: no header. */
  timestamp?: number | string | null;
  signature?: string | null;
  path?: string[];
}

/** A TalkJS callback as the router hands it over: `<timestamp>.<body>` signed over exactly the bytes sent. */
async function talkjsCallback(body: unknown, signing: Signing = {}): Promise<RawCallback> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const bytes = encode(text);
  const headers = new Headers({ "content-type": "application/json" });
  const timestamp = signing.timestamp === undefined ? String(NOW) : signing.timestamp === null ? null : String(signing.timestamp);
  if (timestamp !== null) headers.set("x-talkjs-timestamp", timestamp);
  const signature = signing.signature === undefined ? await signTalkjs(signing.secret ?? "sk_test_a", timestamp ?? "", bytes) : signing.signature;
  if (signature !== null) headers.set("x-talkjs-signature", signature);
  const path = signing.path ?? [];
  return { url: new URL(`https://relay.test/v1/hooks/talkjs${path.map((part) => `/${part}`).join("")}`), path, body: text, bytes, headers };
}

const run = async (body: unknown, signing: Signing = {}, cfg: TalkjsConfig = config) =>
  runProvider(talkjs, await talkjsCallback(body, signing), cfg, NOW, RECEIVED_AT);

/** The read sample, read at NOW. */
const fresh = (overrides: Record<string, unknown> = {}) => copy(talkjsSamples.read, { createdAt: NOW, ...overrides });

describe("talkjs signature", () => {
  it("is upper-case hex HMAC-SHA256 of `<timestamp>.<body>` under the secret key", async () => {
    // The HMAC against RFC 4231 test case 2, then the construction against the HMAC of the joined text.
    expect(await hmacSha256Hex("Jefe", "what do ya want for nothing?")).toBe("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    const signature = await signTalkjs("Jefe", 1565864000000, '{"type":"message.read"}');
    expect(signature).toMatch(/^[0-9A-F]{64}$/);
    expect(signature).toBe((await hmacSha256Hex("Jefe", '1565864000000.{"type":"message.read"}')).toUpperCase());
  });

  it("accepts a body signed with any configured key, and a lower-case signature", async () => {
    for (const secret of config.secrets) expect((await run(fresh(), { secret })).stage).toBe("done");
    const lower = (await signTalkjs("sk_test_a", NOW, JSON.stringify(fresh()))).toLowerCase();
    expect((await run(fresh(), { signature: lower })).stage).toBe("done");
  });

  it("refuses a missing signature or timestamp, another key, a changed body or timestamp with 401, never naming the key", async () => {
    expect(await run(fresh(), { signature: null })).toMatchObject({ stage: "verify", status: 401, code: "missing_signature" });
    expect(await run(fresh(), { timestamp: null, signature: "A".repeat(64) })).toMatchObject({ stage: "verify", status: 401, code: "missing_timestamp" });
    expect(await run(fresh(), { timestamp: "12e5", signature: "A".repeat(64) })).toMatchObject({ stage: "verify", status: 401, code: "bad_timestamp" });
    const wrongKey = await run(fresh(), { secret: "sk_not_configured" });
    expect(wrongKey).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
    expect(JSON.stringify(wrongKey)).not.toContain("sk_test_a");
    const signature = await signTalkjs("sk_test_a", NOW, JSON.stringify(fresh()));
    const tampered = fresh({ data: { ...talkjsSamples.read.data, recipient: { id: "mallory" } } });
    expect(await run(tampered, { signature })).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
    // The signature covers the timestamp: another timestamp with the same signature is refused.
    const headers = new Headers({ "x-talkjs-timestamp": String(NOW + 1000), "x-talkjs-signature": signature });
    const raw: RawCallback = {
      url: new URL("https://relay.test/v1/hooks/talkjs"),
      path: [],
      body: JSON.stringify(fresh()),
      bytes: encode(JSON.stringify(fresh())),
      headers,
    };
    expect(await runProvider(talkjs, raw, config, NOW, RECEIVED_AT)).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
  });

  it("refuses a timestamp older than MAX_EVENT_AGE_SECONDS or more than 5 minutes ahead, in milliseconds or seconds", async () => {
    expect((await run(fresh(), { timestamp: NOW - 299_000 })).stage).toBe("done");
    expect(await run(fresh(), { timestamp: NOW - 301_000 })).toMatchObject({ stage: "verify", status: 401, code: "expired" });
    expect((await run(fresh(), { timestamp: NOW + 299_000 })).stage).toBe("done");
    expect(await run(fresh(), { timestamp: NOW + 301_000 })).toMatchObject({ stage: "verify", status: 401, code: "from_the_future" });
    // Seconds are taken too.
    expect((await run(fresh(), { timestamp: Math.floor(NOW / 1000) - 10 })).stage).toBe("done");
    expect(await run(fresh(), { timestamp: Math.floor(NOW / 1000) - 400 })).toMatchObject({ stage: "verify", status: 401, code: "expired" });
    expect(await run(fresh(), { timestamp: 0 })).toMatchObject({ stage: "verify", status: 401, code: "expired" });
    expect((await run(fresh(), { timestamp: NOW - 3_000_000 }, { ...config, maxEventAgeSeconds: 3600 })).stage).toBe("done");
    expect(talkjsTimestampMillis(String(NOW))).toBe(NOW);
    expect(talkjsTimestampMillis(String(NOW / 1000))).toBe(NOW);
  });

  it("with TALKJS_APP_ID, requires the URL's app to be one of them (403), once authentic", async () => {
    expect((await run(fresh(), { path: [APP] }, withApp)).stage).toBe("done");
    expect((await run(fresh(), { path: ["tAppTwo"] }, withApp)).stage).toBe("done");
    expect(await run(fresh(), { path: ["tAppThree"] }, withApp)).toMatchObject({ stage: "verify", status: 403, code: "app_id_not_allowed" });
    expect(await run(fresh(), {}, withApp)).toMatchObject({ stage: "verify", status: 403, code: "missing_app_id" });
    // A forged callback is refused for its signature before its app is judged.
    expect(await run(fresh(), { path: ["tAppThree"], secret: "wrong" }, withApp)).toMatchObject({ status: 401 });
  });

  it("authenticates before it judges the body: an unsigned non-JSON body is 401, a signed one 400", async () => {
    expect(await run("not json", { signature: "0".repeat(64) })).toMatchObject({ stage: "verify", status: 401 });
    expect(await run("not json")).toMatchObject({ stage: "normalize", status: 400, code: "invalid_json" });
  });
});

describe("talkjs normalization", () => {
  it("maps the message.read sample onto the receipt, field by field", async () => {
    const body = fresh();
    const receipt = receiptFrom(await run(body, { path: [APP] }));
    expect(receipt).toEqual({
      id: expect.stringMatching(/^talkjs:[0-9a-f]{32}$/),
      provider: "talkjs",
      event: "message.read",
      app: APP,
      chat: "group",
      conversation: groupConversationKey("talkjs", APP, "order_831"),
      readers: ["sebastian"],
      group: "order_831",
      messages: [{ id: "msg_2ZIHPKdoFpOvYTShRqWPcX" }],
      readAt: RECEIVED_AT,
      receivedAt: RECEIVED_AT,
      raw: body,
    });
    expect(Receipt.safeParse(receipt).success).toBe(true);
    expect(receipt.conversation).toBe("talkjs:tAppOne:g:order_831");
  });

  it("without an app segment, files the receipt under the app `talkjs`", async () => {
    expect(receiptFrom(await run(fresh())).conversation).toBe("talkjs:talkjs:g:order_831");
  });

  it("keeps the same id for the same read whatever the event id and time (TalkJS's retry), and another for another reader", async () => {
    const first = receiptFrom(await run(fresh()));
    const retried = receiptFrom(await run(fresh({ id: "evt_other", createdAt: NOW - 5000 }), { timestamp: NOW - 4000 }));
    expect(retried.id).toBe(first.id);
    const other = receiptFrom(await run(fresh({ data: { ...talkjsSamples.read.data, recipient: { id: "alice" } } })));
    expect(other.id).not.toBe(first.id);
  });

  it("answers other event types 200 as ignored", async () => {
    for (const type of ["message.sent", "user.created", "notification.triggered"]) {
      expect(await run(fresh({ type }))).toEqual({ stage: "done", kind: "ignored", event: type });
    }
  });

  itRefusesWhatIsNotItsBody(run, async () => talkjs.parse(await talkjsCallback(fresh(), { path: [APP, "extra"] })));

  it("takes an event without its own id and time: the read is its id, the signed X-TalkJS-Timestamp its time", async () => {
    const body = fresh();
    delete body.id;
    delete body.createdAt;
    const withEnvelope = await run(fresh());
    const without = await run(body, { timestamp: NOW - 5_000 });
    expect(without).toMatchObject({ stage: "done", kind: "receipt", eventTime: { ms: NOW - 5_000, field: "X-TalkJS-Timestamp" } });
    expect(withEnvelope).toMatchObject({ stage: "done", kind: "receipt", eventTime: { ms: NOW, field: "createdAt" } });
    if (without.stage !== "done" || withEnvelope.stage !== "done" || without.kind !== "receipt" || withEnvelope.kind !== "receipt")
      throw new Error("not receipts");
    expect(without.receipt.id).toBe(withEnvelope.receipt.id);
    expect(without.receipt.readAt).toBe(new Date(NOW - 5_000).toISOString());
  });

  it("names a missing or wrong field", async () => {
    for (const [field, value] of [
      ["createdAt", "yesterday"],
      ["id", ""],
    ] as const) {
      expect(await run(fresh({ [field]: value }))).toMatchObject({ stage: "normalize", status: 400, message: expect.stringContaining(`field ${field}`) });
    }
    const body = fresh();
    delete body.data;
    expect(await run(body)).toMatchObject({ stage: "normalize", status: 400, message: expect.stringContaining("field data") });
    for (const field of ["conversation", "message", "recipient"]) {
      const data: Record<string, unknown> = structuredClone(talkjsSamples.read.data);
      delete data[field];
      expect(await run(fresh({ data }))).toMatchObject({ stage: "normalize", status: 400, message: expect.stringContaining(`field data.${field}`) });
    }
    const mismatch = fresh({ data: { ...talkjsSamples.read.data, message: { ...talkjsSamples.read.data.message, conversationId: "elsewhere" } } });
    expect(await run(mismatch)).toMatchObject({ status: 400, message: expect.stringContaining("field data.message.conversationId") });
    const surrogate = JSON.stringify(fresh()).replace('"id":"sebastian"', '"id":"\\ud800"');
    expect(await run(surrogate)).toMatchObject({ status: 400, code: "invalid_body", message: expect.stringContaining("field data.recipient.id") });
  });
});

describe("talkjs through the worker", () => {
  const live = () => {
    const conversationId = unique("conv-");
    const body = copy(talkjsSamples.read, {
      createdAt: Date.now(),
      data: {
        ...talkjsSamples.read.data,
        conversation: { ...talkjsSamples.read.data.conversation, id: conversationId },
        message: { ...talkjsSamples.read.data.message, conversationId },
      },
    });
    return { body, conversation: groupConversationKey("talkjs", TALKJS_APP, conversationId) };
  };

  it("accepts a read, then takes the same callback again as a duplicate, storing one receipt", async () => {
    const { body, conversation } = live();
    const timestamp = Date.now();
    const first = await sendTalkjs(body, { timestamp });
    expect({ status: first.status, body: await first.json() }).toEqual({ status: 200, body: { status: "ok", result: "accepted" } });
    const second = await sendTalkjs(body, { timestamp });
    expect({ status: second.status, body: await second.json() }).toEqual({ status: 200, body: { status: "ok", result: "duplicate" } });
    // TalkJS's retry may carry a new timestamp (re-signed): still the same read.
    const resigned = await sendTalkjs(body, { timestamp: timestamp + 1000 });
    expect(await resigned.json()).toEqual({ status: "ok", result: "duplicate" });
    const receipts = await receiptsIn(conversation);
    expect(receipts).toHaveLength(1);
    expect(receipts[0]).toMatchObject({ provider: "talkjs", readers: ["sebastian"], chat: "group" });
  });

  it("answers a bad signature 401 and an app outside TALKJS_APP_ID 403, in its own shape", async () => {
    const { body } = live();
    const forged = await sendTalkjs(body, { secret: "sk_not_it" });
    expect({ status: forged.status, body: await forged.json() }).toEqual({
      status: 401,
      body: { status: "error", code: "bad_signature", message: expect.any(String) },
    });
    const otherApp = await sendTalkjs(body, { app: "tSomeoneElse" });
    expect({ status: otherApp.status, body: await otherApp.json() }).toMatchObject({ status: 403, body: { code: "app_id_not_allowed" } });
    const noApp = await sendTalkjs(body, { app: null });
    expect({ status: noApp.status, body: await noApp.json() }).toMatchObject({ status: 403, body: { code: "missing_app_id" } });
  });

  it("answers an old timestamp 401 expired", async () => {
    const { body } = live();
    const stale = await sendTalkjs(body, { timestamp: Date.now() - 2 * 3600 * 1000 });
    expect({ status: stale.status, body: await stale.json() }).toMatchObject({ status: 401, body: { code: "expired" } });
  });

  it("is registered under /v1/hooks/talkjs", () => {
    expect(providers.has("talkjs")).toBe(true);
  });
});

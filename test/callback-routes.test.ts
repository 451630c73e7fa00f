// Every callback URL through the worker, with real signatures, a real Durable Object and KV; /healthz; settings problems.
import { describe, expect, it } from "vitest";
import { providers } from "../src/ingestors";
import { env, exports } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { app } from "../src/app";
import { groupConversationKey, readerConversationKey, singleConversationKey } from "../src/receipt";
import { testSettings } from "./support/settings";
import { api, TENCENT_APP, copy, EASEMOB_SECRETS, OPENIM_TOKEN, openimPath, samples, send, signedEasemob, tencentPath, unique } from "./support/callbacks";

const TENCENT_OK = { ActionStatus: "OK", ErrorInfo: "", ErrorCode: 0 };
const OPENIM_OK = { actionCode: 0, errCode: 0, errMsg: "", errDlt: "", nextCode: 0 };

/** The receipts the conversation's object holds (the truth, not the lagging snapshot). */
async function stored(conversation: string) {
  const response = await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
  expect(response.status).toBe(200);
  const body: { receipts: { id: string; event: string }[] } = await response.json();
  return body.receipts;
}

describe("each provider's sample callback, end to end", () => {
  it.each([
    ["one-to-one read_ack", samples.easemob.single],
    ["group read_ack", samples.easemob.group],
    ["channel_ack", samples.easemob.channel],
  ])("easemob %s is accepted once, then answered as a duplicate", async (_, sample) => {
    // Fresh ids so that runs do not see each other's receipts.
    const from = unique("reader-");
    const body = await signedEasemob(copy(sample, { callId: `${unique("app#key_")}${Date.now()}`, from }));
    const first = await send("/v1/hooks/easemob", { json: body });
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ status: "ok", result: "accepted" });
    // Easemob's retry is the same request again.
    const again = await send("/v1/hooks/easemob", { json: body });
    expect(await again.json()).toEqual({ status: "ok", result: "duplicate" });
  });

  it("easemob: a body signed with the second secret is authentic", async () => {
    const body = await signedEasemob(copy(samples.easemob.single, { callId: unique("app#key_") }), { secret: EASEMOB_SECRETS[1] });
    expect((await send("/v1/hooks/easemob", { json: body })).status).toBe(200);
  });

  it.each([
    ["C2C.CallbackAfterMsgReport", samples.tencent.report, "Report_Account"],
    ["Group.CallbackAfterReadReceipt", samples.tencent.group, "GroupId"],
    ["C2C.CallbackAfterMsgReadReceipt", samples.tencent.receipt, "Operator_Account"],
  ])("tencent %s is stored once, and answered in Tencent's shape", async (command, sample, userField) => {
    const user = unique("t-");
    const body = copy(sample, { [userField]: user });
    const response = await send(await tencentPath(command), { json: body });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(TENCENT_OK);
    const duplicate = await send(await tencentPath(command), { json: body });
    expect(await duplicate.json()).toEqual(TENCENT_OK);
    const conversation =
      command === "Group.CallbackAfterReadReceipt"
        ? groupConversationKey("tencent", TENCENT_APP, user)
        : singleConversationKey("tencent", TENCENT_APP, user, String(body.Peer_Account));
    expect((await stored(conversation)).map((receipt) => receipt.event)).toEqual([command]);
  });

  it.each([
    ["callbackAfterSingleMsgReadCommand", samples.openim.single],
    ["callbackAfterGroupMsgReadCommand", samples.openim.group],
  ])("openim %s is stored, with or without ?contenttype=json", async (command, sample) => {
    const reader = unique("o-");
    const body =
      command === "callbackAfterSingleMsgReadCommand"
        ? copy(sample, { userID: reader, conversationID: `si_${reader}_u2` })
        : copy(sample, { sendID: reader, receiveID: reader });
    const response = await send(openimPath(command), {
      json: body,
      headers: { "content-type": "application/json; charset=utf-8", operationID: unique("op-") },
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(OPENIM_OK);
    const legacy = await send(`${openimPath(command)}?contenttype=json`, { json: body, headers: { operationID: unique("op-") } });
    expect(await legacy.json()).toEqual(OPENIM_OK);
    const conversation =
      command === "callbackAfterSingleMsgReadCommand"
        ? singleConversationKey("openim", "openim", reader, "u2")
        : readerConversationKey("openim", "openim", reader);
    expect(await stored(conversation)).toHaveLength(2);
  });

  it("openim: reads of two groups at the same seq are two receipts (OpenIM names no group)", async () => {
    const reader = unique("o-");
    const body = copy(samples.openim.group, { sendID: reader, receiveID: reader });
    for (const operationID of ["op-group-a", "op-group-b"]) {
      const response = await send(openimPath("callbackAfterGroupMsgReadCommand"), { json: body, headers: { operationID } });
      expect(await response.json()).toEqual(OPENIM_OK);
    }
    expect(await stored(readerConversationKey("openim", "openim", reader))).toHaveLength(2);
  });

  it("stores what it accepted, normalized, in the conversation's object", async () => {
    const reader = unique("u-");
    const body = await signedEasemob(copy(samples.easemob.single, { callId: unique("demo#app_"), from: reader }));
    await send("/v1/hooks/easemob", { json: body });
    const conversation = `easemob:${encodeURIComponent("XXXX#XXXX")}:u:${[reader, "2222"].sort().join(":")}`;
    const receipts = await stored(conversation);
    expect(receipts).toHaveLength(1);
    expect(receipts[0]).toMatchObject({ id: `easemob:${body.callId}`, event: "read_ack" });
  });
});

describe("refusals, in each provider's answer shape", () => {
  // One per provider here; the provider tests own every other refusal.
  it("easemob: a bad signature is 401", async () => {
    const body = await signedEasemob(copy(samples.easemob.single, { callId: unique("a#b_") }));
    const forged = await send("/v1/hooks/easemob", { json: { ...body, security: "0".repeat(32) } });
    expect(forged.status).toBe(401);
    expect(await forged.json()).toMatchObject({ status: "error", code: "bad_signature" });
  });

  it("tencent: an SdkAppid not allowed is 403", async () => {
    const notAllowed = await send(await tencentPath("C2C.CallbackAfterMsgReport", { sdkAppId: "1400009999" }), { json: samples.tencent.report });
    expect(notAllowed.status).toBe(403);
    expect(await notAllowed.json()).toEqual({ ActionStatus: "FAIL", ErrorInfo: expect.stringContaining("SdkAppid"), ErrorCode: 1 });
  });

  it("openim: a wrong token is 401, and the answer never holds the real one", async () => {
    const wrong = await send(openimPath("callbackAfterSingleMsgReadCommand", "not-the-token-0123456789"), { json: samples.openim.single });
    expect(wrong.status).toBe(401);
    const body = await wrong.json();
    expect(body).toMatchObject({ actionCode: 1, errCode: 20401, errMsg: "bad_token" });
    expect(JSON.stringify(body)).not.toContain(OPENIM_TOKEN);
  });

  it("easemob: a captured signature reused with another body into another conversation is 401 signature_reused", async () => {
    const reader = unique("r-");
    const original = await signedEasemob(copy(samples.easemob.single, { callId: unique("XXXX#XXXX_"), from: reader }));
    expect(await (await send("/v1/hooks/easemob", { json: original })).json()).toEqual({ status: "ok", result: "accepted" });
    // Same callId, timestamp and security; another reader, peer and message.
    const forged = { ...original, from: unique("mallory-"), to: reader, payload: { ack_message_id: "999" } };
    const refused = await send("/v1/hooks/easemob", { json: forged });
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ status: "error", code: "signature_reused" });
    const forgedConversation = singleConversationKey("easemob", "XXXX#XXXX", String(forged.from), reader);
    const response = await api(`/v1/conversations/${encodeURIComponent(forgedConversation)}/receipts?consistent=true`);
    expect(response.status).toBe(404);
    // Easemob's own retry of the real callback is still a duplicate, not a replay.
    expect(await (await send("/v1/hooks/easemob", { json: original })).json()).toEqual({ status: "ok", result: "duplicate" });
  });

  it("limits failed authentications per client address with 429 and Retry-After, never a valid callback", async () => {
    const address = `198.51.100.${Math.floor(Math.random() * 250)}`;
    const headers = { "cf-connecting-ip": address };
    const wrongToken = openimPath("callbackAfterSingleMsgReadCommand", "not-the-token-0123456789");
    const statuses: number[] = [];
    for (let i = 0; i < 25; i++) statuses.push((await send(wrongToken, { json: samples.openim.single, headers })).status);
    expect(statuses.slice(0, 20).every((status) => status === 401)).toBe(true);
    expect(statuses.slice(20).every((status) => status === 429)).toBe(true);
    const limited = await send(wrongToken, { json: samples.openim.single, headers });
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(await limited.json()).toMatchObject({ actionCode: 1, errCode: 20429, errMsg: "too_many_failures" });
    // The same address with the right token is served.
    const reader = unique("o-");
    const valid = await send(openimPath("callbackAfterSingleMsgReadCommand"), {
      json: copy(samples.openim.single, { userID: reader, conversationID: `si_${reader}_u2` }),
      headers: { ...headers, operationID: unique("op-") },
    });
    expect(valid.status).toBe(200);
    // Another address is not affected.
    expect((await send(wrongToken, { json: samples.openim.single, headers: { "cf-connecting-ip": "203.0.113.7" } })).status).toBe(401);
  });

  it("400 naming the field for a lone surrogate in an id, not a crash", async () => {
    const body = await signedEasemob(copy(samples.easemob.single, { callId: unique("s#t_") }));
    const text = JSON.stringify(body).replace('"from":"1111"', '"from":"\\ud800"');
    expect(text).toContain('"from":"\\ud800"');
    const response = await send("/v1/hooks/easemob", { body: text });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ status: "error", code: "invalid_body", message: expect.stringContaining("field from") });
  });

  it("400, not 503, for a correctly signed body nested 6,000 levels deep", async () => {
    const body = await signedEasemob(copy(samples.easemob.single, { callId: unique("d#e_") }));
    const deep = `${"[".repeat(6000)}${"]".repeat(6000)}`;
    const response = await send("/v1/hooks/easemob", { body: JSON.stringify({ ...body, payload: "PLACEHOLDER" }).replace('"PLACEHOLDER"', deep) });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ status: "error", code: "too_deep" });
  });

  it("authentic callbacks that are not read receipts are answered OK and not stored", async () => {
    const from = unique("ignored-");
    const chat = await signedEasemob(copy(samples.easemob.single, { chat_type: "delivery_ack", callId: unique("x#y_"), from }));
    expect(await (await send("/v1/hooks/easemob", { json: chat })).json()).toEqual({ status: "ok", result: "ignored" });
    const never = await api(`/v1/conversations/${encodeURIComponent(singleConversationKey("easemob", "XXXX#XXXX", from, "2222"))}/receipts?consistent=true`);
    expect(never.status).toBe(404);
    const sendMsg = await send(await tencentPath("C2C.CallbackAfterSendMsg"), { json: { CallbackCommand: "C2C.CallbackAfterSendMsg" } });
    expect(await sendMsg.json()).toEqual(TENCENT_OK);
    const health = await (await exports.default.fetch("http://relay.test/healthz")).json();
    expect(health).toMatchObject({
      ignoredEventsSinceStart: { "easemob:delivery_ack": expect.any(Number), "tencent:C2C.CallbackAfterSendMsg": expect.any(Number) },
    });
  });

  it("413 for a body over 64 KiB, with or without Content-Length, in the provider's shape", async () => {
    const big = JSON.stringify({ padding: "x".repeat(64 * 1024) });
    const declared = await send(await tencentPath("C2C.CallbackAfterMsgReport"), { body: big });
    expect(declared.status).toBe(413);
    expect(await declared.json()).toMatchObject({ ActionStatus: "FAIL", ErrorCode: 1 });
    const chunks = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(new TextEncoder().encode("x".repeat(4096)));
        controller.close();
      },
    });
    const streamed = await send("/v1/hooks/easemob", { body: chunks, headers: { "transfer-encoding": "chunked" } });
    expect(streamed.status).toBe(413);
    expect(await streamed.json()).toMatchObject({ status: "error", code: "body_too_large" });
  });

  it("405 with Allow for another method, 404 JSON for unknown paths", async () => {
    const get = await exports.default.fetch("http://relay.test/v1/hooks/easemob");
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    expect(await get.json()).toMatchObject({ status: "error", code: "method_not_allowed" });
    const getOpenim = await exports.default.fetch(`http://relay.test${openimPath("callbackAfterSingleMsgReadCommand")}`);
    expect(await getOpenim.json()).toMatchObject({ actionCode: 1, errCode: 20405 });
    for (const path of ["/v1/hooks/wechat", "/nope", "/v1/hooks/%E0%A4%A"]) {
      const response = await send(path, { json: {} });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "not_found" } });
    }
    // Below /v1 (not /v1/hooks) the API's token is checked before routing: without it no path says
    // whether it exists; with it, an unknown one is a plain 404.
    for (const path of ["/v1/whatever", "/v1/conversations"]) {
      expect((await send(path, { json: {} })).status, path).toBe(401);
      const response = await exports.default.fetch(`http://relay.test${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${testSettings.ADMIN_TOKEN}`, "content-type": "application/json" },
        body: "{}",
      });
      expect(response.status, path).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "not_found" } });
    }
    // A malformed percent-escape below a provider's URL is that provider's unknown path.
    const malformed = await send("/v1/hooks/easemob/%zz", { json: {} });
    expect(malformed.status).toBe(404);
    expect(await malformed.json()).toMatchObject({ status: "error", code: "unknown_path" });
    const malformedOpenim = await send("/v1/hooks/openim/%zz/callbackAfterSingleMsgReadCommand", { json: {} });
    expect(await malformedOpenim.json()).toMatchObject({ actionCode: 1, errCode: 20404, errMsg: "unknown_path" });
    // A provider's URL takes nothing after it (OpenIM: only token and command).
    const deeper = await send("/v1/hooks/easemob/extra", { json: await signedEasemob(copy(samples.easemob.single, { callId: unique("p#q_") })) });
    expect(deeper.status).toBe(404);
    expect(await deeper.json()).toMatchObject({ status: "error", code: "unknown_path" });
    const tencentDeeper = await send((await tencentPath("C2C.CallbackAfterMsgReport")).replace("/tencent?", "/tencent/a/b?"), { json: samples.tencent.report });
    expect(tencentDeeper.status).toBe(404);
    expect(await tencentDeeper.json()).toMatchObject({ ActionStatus: "FAIL" });
  });
});

describe("/healthz", () => {
  it("lists the configured providers and never a secret", async () => {
    const response = await exports.default.fetch("http://relay.test/healthz");
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(JSON.parse(text)).toMatchObject({
      status: "ok",
      providers: { easemob: { state: "enabled" }, tencent: { state: "enabled" }, openim: { state: "enabled" } },
      forwarding: { state: "on" },
      api: { state: "on" },
      readModel: { state: "on" },
      acceptQueue: { state: "on" },
      problems: [],
    });
    for (const secret of [...EASEMOB_SECRETS, OPENIM_TOKEN, testSettings.TENCENT_TOKEN, testSettings.ADMIN_TOKEN, testSettings.FORWARD_SECRET]) {
      expect(text).not.toContain(secret);
    }
  });
});

describe("a malformed setting turns off only what it configures", () => {
  it("/healthz is degraded and names KV when the read model's binding fails", async () => {
    const failingKv = {
      ...env,
      RECEIPTS_KV: {
        get: () => Promise.reject(new Error("KV GET failed: 500 Internal Server Error")),
      },
    };
    const response = await app.fetch(new Request("http://relay.test/healthz"), failingKv, createExecutionContext());
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      status: "degraded",
      readModel: { state: "failing", reason: expect.stringContaining("RECEIPTS_KV") },
    });
  });

  it("/healthz says where overload goes without the accept queue: 503s, still ok otherwise", async () => {
    const { ACCEPT_QUEUE: _queue, ...unbound } = env;
    const response = await app.fetch(new Request("http://relay.test/healthz"), unbound, createExecutionContext());
    expect(await response.json()).toMatchObject({ status: "ok", acceptQueue: { state: "off", reason: expect.stringContaining("ACCEPT_QUEUE") } });
  });

  const withEnv = async (overrides: Record<string, string>, request: Request) => {
    const context = createExecutionContext();
    const response = await app.fetch(request, { ...env, ...overrides }, context);
    await waitOnExecutionContext(context);
    return response;
  };

  it("/healthz is degraded (200) and lists every problem, naming settings and never values", async () => {
    const response = await withEnv(
      { FORWARD_SECRET: "whsec_not-base64-sekrit", OPENIM_TOKEN: "sekrit", ADMIN_TOKEN: "short" },
      new Request("http://relay.test/healthz"),
    );
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).not.toContain("sekrit");
    const health = JSON.parse(text);
    expect(health).toMatchObject({
      status: "degraded",
      providers: { easemob: { state: "enabled" }, tencent: { state: "enabled" }, openim: { state: "misconfigured" } },
      forwarding: { state: "held", reason: expect.stringContaining("setting FORWARD_SECRET") },
      api: { state: "off", reason: expect.stringContaining("setting ADMIN_TOKEN") },
    });
    expect(health.problems.map((problem: { setting: string; feature: string }) => `${problem.feature}:${problem.setting}`).sort()).toEqual([
      "api:ADMIN_TOKEN",
      "forwarding:FORWARD_SECRET",
      "openim:OPENIM_TOKEN",
    ]);
  });

  it("/healthz is down (503) when no provider can take receipts", async () => {
    // Every registered provider's own settings, unset: a new provider needs no change here.
    const unset = Object.fromEntries([...providers.values()].flatMap((entry) => entry.settingNames).map((name) => [name, ""]));
    const response = await withEnv(unset, new Request("http://relay.test/healthz"));
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ status: "down" });
  });

  it("a broken forward secret still accepts and stores receipts; a broken provider setting refuses only that provider", async () => {
    const broken = { FORWARD_SECRET: "whsec_typo", TENCENT_SDKAPPID: "not-a-number" };
    const reader = unique("u-");
    const body = await signedEasemob(copy(samples.easemob.single, { callId: unique("XXXX#XXXX_"), from: reader }));
    const accepted = await withEnv(broken, new Request("http://relay.test/v1/hooks/easemob", { method: "POST", body: JSON.stringify(body) }));
    expect(accepted.status).toBe(200);
    expect(await stored(singleConversationKey("easemob", "XXXX#XXXX", reader, "2222"))).toHaveLength(1);
    const tencent = await withEnv(broken, new Request(`http://relay.test${await tencentPath("C2C.CallbackAfterMsgReport")}`, { method: "POST", body: "{}" }));
    expect(tencent.status).toBe(503);
    expect(await tencent.json()).toMatchObject({ ActionStatus: "FAIL", ErrorInfo: expect.stringContaining("provider_misconfigured") });
  });

  it("a malformed ADMIN_TOKEN turns off the API with 503 naming it", async () => {
    const response = await withEnv({ ADMIN_TOKEN: "short" }, new Request("http://relay.test/v1/dead-letters", { headers: { authorization: "Bearer short" } }));
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ error: { code: "api_disabled", message: "the API is off: setting ADMIN_TOKEN must be at least 16 characters" } });
  });

  it("a failing KV costs the API no answer: the receipts and reads come from the object instead", async () => {
    const throwingKv = {
      ...env,
      RECEIPTS_KV: {
        get: () => {
          throw new Error("kv exploded");
        },
      },
    };
    const auth = { headers: { authorization: `Bearer ${testSettings.ADMIN_TOKEN}` } };
    for (const path of ["receipts", "reads"]) {
      const viaKv = await app.fetch(new Request(`http://relay.test/v1/conversations/x/${path}`, auth), throwingKv, createExecutionContext());
      const viaObject = await app.fetch(new Request(`http://relay.test/v1/conversations/x/${path}?consistent=true`, auth), env, createExecutionContext());
      // "x" was never seen: the object's own answer, not a 500.
      expect(viaKv.status, path).toBe(404);
      expect(await viaKv.json(), path).toEqual(await viaObject.json());
    }
  });

  it("an error escaping a route is a 500 in the API's shape (app.onError)", async () => {
    // (A failing D1 index is a 503 index_unavailable instead: test/index-unavailable.test.ts.)
    const broken = {
      ...env,
      CONVERSATION: {
        idFromName: () => {
          throw new Error("no objects today");
        },
      },
    };
    const context = createExecutionContext();
    const response = await app.fetch(
      new Request("http://relay.test/v1/conversations/x/receipts?consistent=true", { headers: { authorization: `Bearer ${testSettings.ADMIN_TOKEN}` } }),
      broken,
      context,
    );
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: { code: "internal_error", message: "the relay failed to handle this request" } });
  });
});

// Every endpoint through the worker, with real signatures, a real Durable Object and KV.
import { describe, expect, it } from "vitest";
import { exports } from "cloudflare:workers";
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
  it("easemob: bad signature 401, expired 401, not JSON 400, missing field 400", async () => {
    const body = await signedEasemob(copy(samples.easemob.single, { callId: unique("a#b_") }));
    const forged = await send("/v1/hooks/easemob", { json: { ...body, security: "0".repeat(32) } });
    expect(forged.status).toBe(401);
    expect(await forged.json()).toMatchObject({ status: "error", code: "bad_signature" });
    const old = await signedEasemob(copy(samples.easemob.single), { timestamp: Date.now() - 3601_000 });
    expect((await send("/v1/hooks/easemob", { json: old })).status).toBe(401);
    const notJson = await send("/v1/hooks/easemob", { body: "callId=1&security=2" });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ code: "invalid_json" });
    const noFrom = await signedEasemob(copy(samples.easemob.single, { from: undefined }));
    const missing = await send("/v1/hooks/easemob", { json: noFrom });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ message: expect.stringContaining("field from") });
  });

  it("tencent: SdkAppid not allowed 403, bad Sign 401, missing field 400", async () => {
    const notAllowed = await send(await tencentPath("C2C.CallbackAfterMsgReport", { sdkAppId: "1400009999" }), { json: samples.tencent.report });
    expect(notAllowed.status).toBe(403);
    expect(await notAllowed.json()).toEqual({ ActionStatus: "FAIL", ErrorInfo: expect.stringContaining("SdkAppid"), ErrorCode: 1 });
    const badSign = await send(await tencentPath("C2C.CallbackAfterMsgReport", { token: "guess" }), { json: samples.tencent.report });
    expect(badSign.status).toBe(401);
    const unsigned = await send(await tencentPath("C2C.CallbackAfterMsgReport", { token: null }), { json: samples.tencent.report });
    expect(unsigned.status).toBe(401);
    const missing = await send(await tencentPath("C2C.CallbackAfterMsgReport"), { json: copy(samples.tencent.report, { Peer_Account: undefined }) });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ ActionStatus: "FAIL", ErrorInfo: expect.stringContaining("field Peer_Account") });
  });

  it("openim: wrong or missing token 401, shape 400", async () => {
    const wrong = await send(openimPath("callbackAfterSingleMsgReadCommand", "not-the-token-0123456789"), { json: samples.openim.single });
    expect(wrong.status).toBe(401);
    const body = await wrong.json();
    expect(body).toMatchObject({ actionCode: 1, errCode: 20401, errMsg: "bad_token" });
    expect(JSON.stringify(body)).not.toContain(OPENIM_TOKEN);
    expect((await send("/v1/hooks/openim", { json: samples.openim.single })).status).toBe(401);
    const bad = await send(openimPath("callbackAfterSingleMsgReadCommand"), { json: { userID: "u1" } });
    expect(bad.status).toBe(400);
  });

  it("authentic callbacks that are not read receipts are answered OK and not stored", async () => {
    const from = unique("ignored-");
    const chat = await signedEasemob(copy(samples.easemob.single, { chat_type: "delivery_ack", callId: unique("x#y_"), from }));
    expect(await (await send("/v1/hooks/easemob", { json: chat })).json()).toEqual({ status: "ok", result: "ignored" });
    expect(await stored(singleConversationKey("easemob", "XXXX#XXXX", from, "2222"))).toEqual([]);
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
    for (const path of ["/v1/hooks/wechat", "/nope", "/v1/hooks/%E0%A4%A", "/v1/whatever", "/v1/conversations"]) {
      const response = await send(path, { json: {} });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "not_found" } });
    }
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
      providers: { easemob: { enabled: true }, tencent: { enabled: true }, openim: { enabled: true } },
      forwarding: { enabled: true },
      api: { enabled: true },
    });
    for (const secret of [...EASEMOB_SECRETS, OPENIM_TOKEN, testSettings.TENCENT_TOKEN, testSettings.ADMIN_TOKEN, testSettings.FORWARD_SECRET]) {
      expect(text).not.toContain(secret);
    }
  });
});

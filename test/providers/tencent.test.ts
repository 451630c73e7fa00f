import { describe, expect, it } from "vitest";
import { signTencent, tencent, type TencentConfig } from "../../src/providers/tencent";
import { z } from "zod";
import { groupConversationKey, MAX_MESSAGES_PER_RECEIPT, MAX_READERS_PER_RECEIPT, Receipt as ReceiptSchema, type Receipt } from "../../src/receipt";
import { api, copy, samples, send, TENCENT_APP, tencentPath, unique } from "../support/callbacks";
import { rawCallback, receiptFrom, runProvider } from "../support/pipeline";

const NOW = Date.parse("2026-11-22T00:00:00.000Z");
const NOW_SECONDS = NOW / 1000;
const RECEIVED_AT = new Date(NOW).toISOString();
const withToken: TencentConfig = { sdkAppIds: ["1400000001", "1400000002"], token: "token-t" };
const withoutToken: TencentConfig = { sdkAppIds: ["1400000001"] };

async function url(
  command: string,
  { sdkAppId = "1400000001", token = "token-t" as string | null, requestTime = NOW_SECONDS as number | string, platform = "Android" } = {},
) {
  const query = new URLSearchParams({ SdkAppid: sdkAppId, CallbackCommand: command, contenttype: "json", ClientIP: "10.0.0.1", OptPlatform: platform });
  if (token !== null) {
    query.set("RequestTime", String(requestTime));
    query.set("Sign", await signTencent(token, requestTime));
  }
  return new URL(`https://relay.test/v1/hooks/tencent?${query}`);
}

const run = (target: URL, body: unknown, config = withToken) => runProvider(tencent, rawCallback(body, { url: target.href }), config, NOW, RECEIVED_AT);

async function receiptOf(command: string, body: unknown): Promise<Receipt> {
  return receiptFrom(await run(await url(command), body));
}

describe("tencent authentication", () => {
  it("signs with the vector from providers.md", async () => {
    expect(await signTencent("xxxxyyyy", 1669872112)).toBe("17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061");
  });

  it("accepts any allowed SdkAppid with a valid Sign", async () => {
    for (const sdkAppId of withToken.sdkAppIds) {
      expect((await run(await url("C2C.CallbackAfterMsgReport", { sdkAppId }), samples.tencent.report)).stage).toBe("done");
    }
  });

  it("refuses an SdkAppid not allowed, or none, with 403", async () => {
    expect(await run(await url("C2C.CallbackAfterMsgReport", { sdkAppId: "1499999999" }), samples.tencent.report)).toMatchObject({
      status: 403,
      code: "sdkappid_not_allowed",
    });
    const target = await url("C2C.CallbackAfterMsgReport");
    target.searchParams.delete("SdkAppid");
    expect(await run(target, samples.tencent.report)).toMatchObject({ status: 403, code: "missing_sdkappid" });
  });

  it("with a token, requires Sign and RequestTime and checks both", async () => {
    const unsigned = await url("C2C.CallbackAfterMsgReport", { token: null });
    expect(await run(unsigned, samples.tencent.report)).toMatchObject({ stage: "verify", status: 401, code: "missing_sign" });
    const wrongToken = await url("C2C.CallbackAfterMsgReport", { token: "another-token" });
    expect(await run(wrongToken, samples.tencent.report)).toMatchObject({ status: 401, code: "bad_signature" });
    const stale = await url("C2C.CallbackAfterMsgReport", { requestTime: NOW_SECONDS - 61 });
    expect(await run(stale, samples.tencent.report)).toMatchObject({ status: 401, code: "expired" });
    const ahead = await url("C2C.CallbackAfterMsgReport", { requestTime: NOW_SECONDS + 61 });
    expect(await run(ahead, samples.tencent.report)).toMatchObject({ status: 401, code: "expired" });
    const edge = await url("C2C.CallbackAfterMsgReport", { requestTime: NOW_SECONDS - 60 });
    expect((await run(edge, samples.tencent.report)).stage).toBe("done");
    const notNumber = await url("C2C.CallbackAfterMsgReport", { requestTime: "yesterday" });
    expect(await run(notNumber, samples.tencent.report)).toMatchObject({ status: 401, code: "bad_request_time" });
  });

  it("without a token, checks only SdkAppid", async () => {
    const unsigned = await url("C2C.CallbackAfterMsgReport", { token: null });
    expect((await run(unsigned, samples.tencent.report, withoutToken)).stage).toBe("done");
  });

  it("authenticates before it reads the body", async () => {
    const target = await url("C2C.CallbackAfterMsgReport", { sdkAppId: "1499999999" });
    expect(await run(target, "not json")).toMatchObject({ stage: "verify", status: 403 });
  });
});

describe("tencent validation", () => {
  it("refuses a body that is not JSON, or a missing field, naming it", async () => {
    expect(await run(await url("C2C.CallbackAfterMsgReport"), "{")).toMatchObject({ status: 400, code: "invalid_json" });
    for (const field of ["Report_Account", "Peer_Account", "LastReadTime"]) {
      const body: Record<string, unknown> = copy(samples.tencent.report);
      delete body[field];
      const result = await run(await url("C2C.CallbackAfterMsgReport"), body);
      expect(result).toMatchObject({ stage: "normalize", status: 400 });
      expect("message" in result && result.message).toContain(`field ${field}`);
    }
    const wrongType = await run(await url("Group.CallbackAfterReadReceipt"), copy(samples.tencent.group, { GroupMsgReceiptList: [{ MsgSeq: "one" }] }));
    expect("message" in wrongType && wrongType.message).toContain("field GroupMsgReceiptList.0.MsgSeq");
  });

  it("refuses a missing CallbackCommand, and a body that names another command", async () => {
    const target = await url("C2C.CallbackAfterMsgReport");
    target.searchParams.delete("CallbackCommand");
    expect(await run(target, samples.tencent.report)).toMatchObject({ status: 400, code: "missing_command" });
    const mismatch = await run(await url("C2C.CallbackAfterMsgReadReceipt"), samples.tencent.report);
    expect(mismatch).toMatchObject({ status: 400, code: "command_mismatch" });
  });

  it("ignores authentic commands that are not read receipts, without reading the body", async () => {
    expect(await run(await url("C2C.CallbackAfterSendMsg"), "not even json")).toEqual({ stage: "done", kind: "ignored", event: "C2C.CallbackAfterSendMsg" });
  });
});

describe("tencent normalization", () => {
  it("C2C.CallbackAfterMsgReport (seed 004), field by field", async () => {
    const receipt = await receiptOf("C2C.CallbackAfterMsgReport", samples.tencent.report);
    expect(receipt).toEqual({
      id: expect.stringMatching(/^tencent:[0-9a-f]{32}$/),
      provider: "tencent",
      event: "C2C.CallbackAfterMsgReport",
      app: "1400000001",
      chat: "single",
      conversation: "tencent:1400000001:u:Jonh:jared",
      readers: ["jared"],
      peer: "Jonh",
      messages: [],
      upTo: { time: "2021-03-03T06:56:46.000Z" },
      readAt: "2021-03-03T06:56:46.123Z",
      unreadTotal: 7,
      platform: "Android",
      receivedAt: RECEIVED_AT,
      raw: samples.tencent.report,
    });
  });

  it("C2C.CallbackAfterMsgReport without EventTime reads at LastReadTime", async () => {
    const body = copy(samples.tencent.report);
    delete body.EventTime;
    expect((await receiptOf("C2C.CallbackAfterMsgReport", body)).readAt).toBe("2021-03-03T06:56:46.000Z");
  });

  it("Group.CallbackAfterReadReceipt (seed 002, EventTime as a string), field by field", async () => {
    const receipt = await receiptOf("Group.CallbackAfterReadReceipt", samples.tencent.group);
    expect(receipt).toEqual({
      id: expect.stringMatching(/^tencent:[0-9a-f]{32}$/),
      provider: "tencent",
      event: "Group.CallbackAfterReadReceipt",
      app: "1400000001",
      chat: "group",
      conversation: "tencent:1400000001:g:%40TGS%232TTV7VSII",
      readers: ["user0"],
      group: "@TGS#2TTV7VSII",
      messages: [
        { seq: 1, readCount: 1, unreadCount: 6, readers: ["user0"] },
        { seq: 2, readCount: 1, unreadCount: 6, readers: ["user0"] },
      ],
      readAt: "2022-12-09T08:26:54.123Z",
      platform: "Android",
      receivedAt: RECEIVED_AT,
      raw: samples.tencent.group,
    });
  });

  it("reads EventTime as a number or a numeric string alike", async () => {
    const asNumber = await receiptOf("Group.CallbackAfterReadReceipt", copy(samples.tencent.group, { EventTime: 1670574414123 }));
    const asString = await receiptOf("Group.CallbackAfterReadReceipt", samples.tencent.group);
    expect(asNumber.readAt).toBe(asString.readAt);
    expect(asNumber.id).toBe(asString.id);
  });

  it("C2C.CallbackAfterMsgReadReceipt, field by field", async () => {
    const receipt = await receiptOf("C2C.CallbackAfterMsgReadReceipt", samples.tencent.receipt);
    expect(receipt).toEqual({
      id: expect.stringMatching(/^tencent:[0-9a-f]{32}$/),
      provider: "tencent",
      event: "C2C.CallbackAfterMsgReadReceipt",
      app: "1400000001",
      chat: "single",
      conversation: "tencent:1400000001:u:Jonh:jared",
      readers: ["Jonh"],
      peer: "jared",
      messages: [{ id: "2060886596_1614754601_1614754601" }],
      readAt: "2021-03-03T06:56:50.012Z",
      platform: "Android",
      receivedAt: RECEIVED_AT,
      raw: samples.tencent.receipt,
    });
  });

  it.each([
    ["EventTime", { EventTime: 99999999999999999 }],
    ["EventTime", { EventTime: "999999999999999" }],
    ["LastReadTime", { LastReadTime: 9007199254740 }],
    ["Report_Account", { Report_Account: "x".repeat(129) }],
  ])("refuses an implausible %s with 400", async (field, overrides) => {
    const result = await run(await url("C2C.CallbackAfterMsgReport"), copy(samples.tencent.report, overrides));
    expect(result).toMatchObject({ stage: "normalize", status: 400, message: expect.stringContaining(`field ${field}`) });
  });

  it("answers 404 for a path below the hook", async () => {
    const parsed = tencent.parse(rawCallback(samples.tencent.report, { url: (await url("C2C.CallbackAfterMsgReport")).href, path: ["a"] }));
    expect(parsed).toMatchObject({ ok: false, rejection: { status: 404, code: "unknown_path" } });
  });

  it("gives the same id to the same callback and another to a different one", async () => {
    const first = await receiptOf("C2C.CallbackAfterMsgReport", samples.tencent.report);
    const again = await receiptOf("C2C.CallbackAfterMsgReport", copy(samples.tencent.report));
    const later = await receiptOf("C2C.CallbackAfterMsgReport", copy(samples.tencent.report, { LastReadTime: 1614754700 }));
    expect(again.id).toBe(first.id);
    expect(later.id).not.toBe(first.id);
  });
});

describe("tencent answers", () => {
  it("uses Tencent's own shape", () => {
    expect(tencent.answer({ ok: true, result: "duplicate", event: "x" })).toEqual({ status: 200, body: { ActionStatus: "OK", ErrorInfo: "", ErrorCode: 0 } });
    expect(tencent.answer({ ok: false, status: 403, code: "sdkappid_not_allowed", message: "m" })).toEqual({
      status: 403,
      body: { ActionStatus: "FAIL", ErrorInfo: "sdkappid_not_allowed: m", ErrorCode: 1 },
    });
  });
});

describe("tencent through the worker: bounds (issue 18, finding 1)", () => {
  const receiptsOf = async (group: string) => {
    const conversation = groupConversationKey("tencent", TENCENT_APP, group);
    const listed = await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
    return z.object({ receipts: z.array(ReceiptSchema) }).parse(await listed.json()).receipts;
  };

  it(`keeps the first ${MAX_READERS_PER_RECEIPT} readers of a group read receipt, each message's readers among them, and counts the rest`, async () => {
    const group = unique("@TGS#");
    const members = (from: number, count: number) => Array.from({ length: count }, (_, i) => ({ Member_Account: `m${from + i}` }));
    const body = copy(samples.tencent.group, {
      GroupId: group,
      EventTime: String(Date.now()),
      GroupMsgReceiptList: [
        { MsgSeq: 1, ReadNum: 600, UnreadNum: 0, ReadReceiptMembers: members(0, 600) },
        { MsgSeq: 2, ReadNum: 600, UnreadNum: 0, ReadReceiptMembers: members(600, 600) },
      ],
    });
    expect(JSON.stringify(body).length).toBeLessThan(64 * 1024);
    const response = await send(await tencentPath("Group.CallbackAfterReadReceipt"), { json: body });
    expect(await response.json()).toEqual({ ActionStatus: "OK", ErrorInfo: "", ErrorCode: 0 });
    const [receipt] = await receiptsOf(group);
    expect(receipt?.readers).toHaveLength(MAX_READERS_PER_RECEIPT);
    expect(receipt?.truncated).toEqual({ readers: 200 });
    expect(receipt?.messages[0]?.readers).toHaveLength(600);
    expect(receipt?.messages[1]?.readers).toEqual(members(600, 400).map((member) => member.Member_Account));
    expect(receipt?.raw.GroupMsgReceiptList[1].ReadReceiptMembers).toHaveLength(600);
  });

  it(`keeps the last ${MAX_MESSAGES_PER_RECEIPT} messages of a group read receipt and counts the rest`, async () => {
    const group = unique("@TGS#");
    const list = Array.from({ length: MAX_MESSAGES_PER_RECEIPT + 100 }, (_, i) => ({ MsgSeq: i + 1 }));
    const body = copy(samples.tencent.group, { GroupId: group, EventTime: String(Date.now()), GroupMsgReceiptList: list });
    const response = await send(await tencentPath("Group.CallbackAfterReadReceipt"), { json: body });
    expect(response.status).toBe(200);
    const [receipt] = await receiptsOf(group);
    expect(receipt?.messages).toHaveLength(MAX_MESSAGES_PER_RECEIPT);
    expect(receipt?.messages[0]?.seq).toBe(101);
    expect(receipt?.messages.at(-1)?.seq).toBe(MAX_MESSAGES_PER_RECEIPT + 100);
    expect(receipt?.truncated).toEqual({ messages: 100 });
  });

  it("takes an old EventTime: it is not signed, and Sign's 60-second RequestTime already bounds a replay", async () => {
    const group = unique("@TGS#");
    const body = copy(samples.tencent.group, { GroupId: group, EventTime: String(Date.now() - 30 * 86_400_000) });
    const response = await send(await tencentPath("Group.CallbackAfterReadReceipt"), { json: body });
    expect(response.status).toBe(200);
    expect(await receiptsOf(group)).toHaveLength(1);
  });
});

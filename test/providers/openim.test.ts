import { describe, expect, it } from "vitest";
import { openim } from "../../src/providers/openim";
import { z } from "zod";
import { MAX_MESSAGES_PER_RECEIPT, Receipt as ReceiptSchema, singleConversationKey, type Receipt } from "../../src/receipt";
import { api, copy, openimPath, samples, send, unique } from "../support/callbacks";
import { rawCallback, receiptFrom, runProvider } from "../support/pipeline";

const RECEIVED_AT = "2026-11-22T00:00:00.000Z";
const TOKEN = "openim-token-0123456789";
const SINGLE = "callbackAfterSingleMsgReadCommand";
const GROUP = "callbackAfterGroupMsgReadCommand";

const run = (path: string[], body: unknown, operationID = "op-1") =>
  runProvider(openim, rawCallback(body, { path, headers: { operationID } }), { token: TOKEN }, 0, RECEIVED_AT);

async function receiptOf(command: string, body: unknown): Promise<Receipt> {
  return receiptFrom(await run([TOKEN, command], body));
}

describe("openim authentication", () => {
  it("refuses a missing or wrong token before reading the body", async () => {
    expect(await run([], "not json")).toMatchObject({ stage: "verify", status: 401, code: "missing_token" });
    expect(await run(["wrong-token-0123456789", SINGLE], "not json")).toMatchObject({ stage: "verify", status: 401, code: "bad_token" });
    expect(await run([TOKEN.slice(0, -1), SINGLE], samples.openim.single)).toMatchObject({ status: 401, code: "bad_token" });
  });

  it("answers 404 for a path with no command or extra segments", async () => {
    expect(await run([TOKEN], samples.openim.single)).toMatchObject({ status: 404, code: "unknown_path" });
    expect(await run([TOKEN, SINGLE, "more"], samples.openim.single)).toMatchObject({ status: 404 });
  });
});

describe("openim validation", () => {
  it("names the missing or malformed field", async () => {
    const noUser: Record<string, unknown> = copy(samples.openim.single);
    delete noUser.userID;
    expect(await run([TOKEN, SINGLE], noUser)).toMatchObject({ status: 400, message: expect.stringContaining("field userID") });
    const noSeqs: Record<string, unknown> = copy(samples.openim.single);
    delete noSeqs.Seqs;
    expect(await run([TOKEN, SINGLE], noSeqs)).toMatchObject({ status: 400, message: expect.stringContaining("field Seqs") });
    expect(await run([TOKEN, SINGLE], copy(samples.openim.single, { conversationID: "sg_group1" }))).toMatchObject({
      status: 400,
      message: expect.stringContaining("field conversationID"),
    });
    expect(await run([TOKEN, SINGLE], copy(samples.openim.single, { userID: "stranger" }))).toMatchObject({
      status: 400,
      message: expect.stringContaining("field conversationID"),
    });
    expect(await run([TOKEN, GROUP], copy(samples.openim.group, { unreadMsgNum: "42" }))).toMatchObject({
      status: 400,
      message: expect.stringContaining("field unreadMsgNum"),
    });
    expect(await run([TOKEN, SINGLE], "{oops")).toMatchObject({ status: 400, code: "invalid_json" });
    expect(await run([TOKEN, GROUP], samples.openim.single)).toMatchObject({ status: 400, code: "command_mismatch" });
  });

  it("ignores the other callbacks OpenIM sends to the same base URL", async () => {
    expect(await run([TOKEN, "callbackAfterSendSingleMsgCommand"], "{}")).toEqual({
      stage: "done",
      kind: "ignored",
      event: "callbackAfterSendSingleMsgCommand",
    });
  });
});

describe("openim normalization", () => {
  it("single read (seed 003 as the server sends it), field by field", async () => {
    const receipt = await receiptOf(SINGLE, samples.openim.single);
    expect(receipt).toEqual({
      id: expect.stringMatching(/^openim:[0-9a-f]{32}$/),
      provider: "openim",
      event: SINGLE,
      app: "openim",
      chat: "single",
      conversation: "openim:openim:u:u1:u2",
      readers: ["u1"],
      peer: "u2",
      messages: [{ seq: 20 }, { seq: 35 }],
      readAt: RECEIVED_AT,
      receivedAt: RECEIVED_AT,
      raw: samples.openim.single,
    });
  });

  it("reads `seqs` as older builds send it, and the old `:0` conversationID suffix", async () => {
    const body = copy(samples.openim.single, { conversationID: "si_u1_u2:0", seqs: [35, 20] });
    delete body.Seqs;
    const receipt = await receiptOf(SINGLE, body);
    expect(receipt.messages).toEqual([{ seq: 20 }, { seq: 35 }]);
    expect(receipt.peer).toBe("u2");
    expect(receipt.id).toBe((await receiptOf(SINGLE, samples.openim.single)).id);
  });

  it("finds the peer when user ids hold underscores, from either side", async () => {
    const body = copy(samples.openim.single, { conversationID: "si_a_b_c_d", userID: "c_d" });
    expect(await receiptOf(SINGLE, body)).toMatchObject({ peer: "a_b", conversation: "openim:openim:u:a_b:c_d" });
    const other = copy(samples.openim.single, { conversationID: "si_a_b_c_d", userID: "a_b" });
    expect(await receiptOf(SINGLE, other)).toMatchObject({ peer: "c_d", conversation: "openim:openim:u:a_b:c_d" });
  });

  it("tells apart identical reads by their operationID, and never collides without one", async () => {
    const [a, b, again] = await Promise.all(
      ["op-a", "op-b", "op-a"].map(async (operationID) => receiptFrom(await run([TOKEN, GROUP], samples.openim.group, operationID))),
    );
    expect(a!.id).not.toBe(b!.id);
    expect(again!.id).toBe(a!.id);
    const withoutHeader = (await Promise.all([1, 2].map(async () => receiptFrom(await run([TOKEN, GROUP], samples.openim.group, ""))))).map((r) => r.id);
    expect(withoutHeader[0]).not.toBe(withoutHeader[1]);
  });

  it("group read: the has-read seq, in the reader's own stream (OpenIM names no group)", async () => {
    const receipt = await receiptOf(GROUP, samples.openim.group);
    expect(receipt).toEqual({
      id: expect.stringMatching(/^openim:[0-9a-f]{32}$/),
      provider: "openim",
      event: GROUP,
      app: "openim",
      chat: "group",
      conversation: "openim:openim:r:u1",
      readers: ["u1"],
      messages: [],
      upTo: { seq: 42 },
      readAt: RECEIVED_AT,
      receivedAt: RECEIVED_AT,
      raw: samples.openim.group,
    });
  });
});

describe("openim answers", () => {
  it("uses OpenIM's own shape with numeric fields", () => {
    expect(openim.answer({ ok: true, result: "accepted", event: SINGLE })).toEqual({
      status: 200,
      body: { actionCode: 0, errCode: 0, errMsg: "", errDlt: "", nextCode: 0 },
    });
    const refused = openim.answer({ ok: false, status: 401, code: "bad_token", message: "m" });
    expect(refused).toEqual({ status: 401, body: { actionCode: 1, errCode: 20401, errMsg: "bad_token", errDlt: "m", nextCode: 0 } });
  });
});

describe("openim through the worker: bounds (issue 18, finding 1)", () => {
  it(`keeps the newest ${MAX_MESSAGES_PER_RECEIPT} seqs of a single read and counts the rest (OpenIM never retries: nothing is refused)`, async () => {
    const reader = unique("reader");
    const peer = unique("peer");
    const seqs = Array.from({ length: MAX_MESSAGES_PER_RECEIPT + 500 }, (_, i) => i + 1);
    const body = copy(samples.openim.single, { conversationID: `si_${reader}_${peer}`, userID: reader, Seqs: seqs });
    const response = await send(openimPath(SINGLE), { json: body, headers: { operationID: unique("op-") } });
    expect(await response.json()).toEqual({ actionCode: 0, errCode: 0, errMsg: "", errDlt: "", nextCode: 0 });
    const conversation = singleConversationKey("openim", "openim", reader, peer);
    const listed = await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
    const [receipt] = z.object({ receipts: z.array(ReceiptSchema) }).parse(await listed.json()).receipts;
    expect(receipt?.messages).toHaveLength(MAX_MESSAGES_PER_RECEIPT);
    expect(receipt?.messages[0]).toEqual({ seq: 501 });
    expect(receipt?.messages.at(-1)).toEqual({ seq: MAX_MESSAGES_PER_RECEIPT + 500 });
    expect(receipt?.truncated).toEqual({ messages: 500 });
    expect(receipt?.readers).toEqual([reader]);
  });
});

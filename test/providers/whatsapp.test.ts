import { describe, expect, it } from "vitest";
import { z } from "zod";
import { MAX_EVENT_AGE_MS } from "../../src/receipt";
import { providers } from "../../src/ingestors";
import { MAX_META_ITEMS_PER_CALLBACK, signMeta } from "../../src/providers/meta";
import { whatsapp } from "../../src/providers/whatsapp";
import { groupConversationKey, singleConversationKey } from "../../src/receipt";
import {
  META_SECRETS,
  META_VERIFY_TOKENS,
  metaSamples,
  send,
  sendMeta,
  unique,
  WHATSAPP_PHONE_NUMBER_ID,
  whatsappBody,
  whatsappStatus,
  receiptsIn,
} from "../support/callbacks";
import { rawOf, recordingDeps } from "../support/provider-contract";
import { runBatchProvider } from "../support/pipeline";
import { testSettings } from "../support/settings";

const PHONE = WHATSAPP_PHONE_NUMBER_ID;
const ingestor = providers.get("whatsapp")!;

const answerOf = async (response: Response) => ({ status: response.status, body: await response.json() });

/** The "done when" batch: 3 read statuses for 2 users, 1 delivered, 1 sent. */
function doneWhenBatch() {
  const [alice, bob] = [unique("1650555"), unique("1650556")];
  const statuses = [
    whatsappStatus({ recipient_id: alice }),
    whatsappStatus({ recipient_id: alice }),
    whatsappStatus({ recipient_id: bob }),
    whatsappStatus({ recipient_id: bob, status: "delivered" }),
    whatsappStatus({ recipient_id: alice, status: "sent" }),
  ];
  return {
    body: whatsappBody(statuses),
    alice: singleConversationKey("whatsapp", PHONE, PHONE, alice),
    bob: singleConversationKey("whatsapp", PHONE, PHONE, bob),
  };
}

describe("whatsapp through the worker", () => {
  it("takes a batch of 3 read statuses for 2 users, 1 delivered and 1 sent: 200, exactly 3 receipts in 2 conversations", async () => {
    const { body, alice, bob } = doneWhenBatch();
    expect(await answerOf(await sendMeta("whatsapp", body))).toEqual({ status: 200, body: { status: "ok", result: "accepted" } });
    const [inAlice, inBob] = [await receiptsIn(alice), await receiptsIn(bob)];
    expect(inAlice).toHaveLength(2);
    expect(inBob).toHaveLength(1);
    for (const receipt of [...inAlice, ...inBob]) {
      expect(receipt).toMatchObject({ provider: "whatsapp", event: "status.read", app: PHONE, chat: "single", peer: PHONE });
      expect(receipt.messages).toEqual([{ id: expect.stringMatching(/^wamid\./) }]);
    }
  });

  it("takes the same callback again as duplicates: no new receipt", async () => {
    const { body, alice, bob } = doneWhenBatch();
    expect((await sendMeta("whatsapp", body)).status).toBe(200);
    expect(await answerOf(await sendMeta("whatsapp", body))).toEqual({ status: 200, body: { status: "ok", result: "duplicate" } });
    expect(await receiptsIn(alice)).toHaveLength(2);
    expect(await receiptsIn(bob)).toHaveLength(1);
  });

  it("answers a batch with no read status 200 (ignored), storing nothing", async () => {
    const user = unique("1650555");
    const body = whatsappBody([whatsappStatus({ recipient_id: user, status: "delivered" }), whatsappStatus({ recipient_id: user, status: "sent" })]);
    expect(await answerOf(await sendMeta("whatsapp", body))).toEqual({ status: 200, body: { status: "ok", result: "ignored" } });
    expect(await receiptsIn(singleConversationKey("whatsapp", PHONE, PHONE, user))).toEqual([]);
  });

  it("refuses a wrong signature, and a body signed with another app's secret, 401", async () => {
    const { body, alice } = doneWhenBatch();
    const text = JSON.stringify(body);
    const wrong = await send("/v1/hooks/whatsapp", { headers: { "x-hub-signature-256": `sha256=${"0".repeat(64)}` }, body: text });
    expect(await answerOf(wrong)).toMatchObject({ status: 401, body: { status: "error", code: "bad_signature" } });
    expect(await answerOf(await sendMeta("whatsapp", body, "another-apps-secret"))).toMatchObject({ status: 401, body: { code: "bad_signature" } });
    const missing = await send("/v1/hooks/whatsapp", { body: text });
    expect(await answerOf(missing)).toMatchObject({ status: 401, body: { code: "missing_signature" } });
    expect(await receiptsIn(alice)).toEqual([]);
  });

  it("accepts a body signed with any configured App Secret", async () => {
    const user = unique("1650555");
    const body = whatsappBody([whatsappStatus({ recipient_id: user })]);
    expect((await sendMeta("whatsapp", body, META_SECRETS[1])).status).toBe(200);
    expect(await receiptsIn(singleConversationKey("whatsapp", PHONE, PHONE, user))).toHaveLength(1);
  });

  it("refuses a phone number id that WHATSAPP_PHONE_NUMBER_IDS does not list, 403", async () => {
    const body = whatsappBody([whatsappStatus({ recipient_id: unique("1650555") })], "999999999999999");
    expect(await answerOf(await sendMeta("whatsapp", body))).toMatchObject({ status: 403, body: { code: "not_allowed" } });
  });

  it("answers a signed but malformed body 400 naming the field, and skips a malformed status of a well-formed batch", async () => {
    const sample = whatsappBody([whatsappStatus()]);
    const noChanges = {
      ...sample,
      entry: z
        .array(z.looseObject({}))
        .parse(sample.entry)
        .map((entry) => ({ ...entry, changes: "none" })),
    };
    expect(await answerOf(await sendMeta("whatsapp", noChanges))).toMatchObject({
      status: 400,
      body: { code: "invalid_body", message: expect.stringContaining("field entry.0.changes") },
    });
    // One bad status must not make Meta resend (for 7 days, then drop) the batch's valid receipts.
    const user = unique("3161");
    const batch = whatsappBody([whatsappStatus({ timestamp: "soon" }), whatsappStatus({ recipient_id: user })]);
    expect(await answerOf(await sendMeta("whatsapp", batch))).toMatchObject({ status: 200, body: { status: "ok", result: "accepted" } });
    const conversation = singleConversationKey("whatsapp", WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_PHONE_NUMBER_ID, user);
    expect(await receiptsIn(conversation)).toHaveLength(1);
    const noObject = { ...whatsappBody([whatsappStatus()]), object: "page" };
    expect(await answerOf(await sendMeta("whatsapp", noObject))).toMatchObject({ status: 400, body: { message: expect.stringContaining("field object") } });
  });

  it("answers Meta's handshake with the challenge as plain text, and a wrong token 403", async () => {
    const ok = await send(`/v1/hooks/whatsapp?hub.mode=subscribe&hub.verify_token=${META_VERIFY_TOKENS[1]}&hub.challenge=1158201444`, { method: "GET" });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(await ok.text()).toBe("1158201444");
    const wrong = await send("/v1/hooks/whatsapp?hub.mode=subscribe&hub.verify_token=not-the-token&hub.challenge=1158201444", { method: "GET" });
    expect(await answerOf(wrong)).toMatchObject({ status: 403, body: { code: "bad_verify_token" } });
    const missing = await send("/v1/hooks/whatsapp?hub.mode=subscribe&hub.challenge=1158201444", { method: "GET" });
    expect(missing.status).toBe(403);
    const noMode = await send("/v1/hooks/whatsapp", { method: "GET" });
    expect(await answerOf(noMode)).toMatchObject({ status: 400, body: { code: "bad_handshake" } });
  });

  it("keeps GET 405 for providers without a handshake", async () => {
    const response = await send("/v1/hooks/sendbird?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1", { method: "GET" });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST");
  });
});

describe("whatsapp pipeline", () => {
  const signedRaw = async (body: unknown, secret = META_SECRETS[0]!) => {
    const text = JSON.stringify(body);
    return rawOf({ path: "/v1/hooks/whatsapp", headers: { "x-hub-signature-256": await signMeta(secret, text) }, body: text });
  };

  it("stores in parallel and answers 503 when any store fails (Meta retries; the stored ones are then duplicates)", async () => {
    const { body } = doneWhenBatch();
    const deps = recordingDeps(testSettings);
    let started = 0;
    /** How many stores had started when the first one finished: all three when they run in parallel. */
    let startedWhenFirstFinished = 0;
    deps.store = async (receipt) => {
      const n = started++;
      // One turn of the microtask queue, no timer: stores begun together have all begun by now.
      await Promise.resolve();
      startedWhenFirstFinished ||= started;
      if (n === 2) throw new Error("object overloaded");
      deps.stored.push(receipt);
      return "accepted";
    };
    const answer = await ingestor.handle(await signedRaw(body), deps);
    expect(answer).toMatchObject({ status: 503, body: { status: "error", code: "store_unavailable" } });
    expect(startedWhenFirstFinished).toBe(3);
    expect(deps.stored).toHaveLength(2);
  });

  it("makes one receipt per read status with a stable id per wamid and reader; played is the same receipt", async () => {
    const user = unique("1650555");
    const read = whatsappStatus({ recipient_id: user });
    const played = { ...read, status: "played" };
    const deps = recordingDeps(testSettings);
    expect((await ingestor.handle(await signedRaw(whatsappBody([read])), deps)).status).toBe(200);
    expect((await ingestor.handle(await signedRaw(whatsappBody([played])), deps)).status).toBe(200);
    expect(deps.stored).toHaveLength(2);
    expect(deps.stored[0]!.id).toBe(deps.stored[1]!.id);
    expect(deps.stored[1]!.event).toBe("status.played");
  });

  it("keys a group's read status by the group, with recipient_participant_id as the reader", async () => {
    const group = unique("120363");
    const reader = unique("1650555");
    const status = whatsappStatus({ recipient_id: group, recipient_participant_id: reader, recipient_type: "group" });
    const deps = recordingDeps(testSettings);
    expect((await ingestor.handle(await signedRaw(whatsappBody([status])), deps)).status).toBe(200);
    expect(deps.stored[0]).toMatchObject({
      chat: "group",
      conversation: groupConversationKey("whatsapp", PHONE, group),
      readers: [reader],
      group,
    });
  });

  it("reads business-scoped user ids where Meta omits the phone number (recipient_user_id, recipient_participant_user_id)", async () => {
    const user = `US.${unique("13491208655302741918")}`;
    const group = unique("120363");
    const participant = `US.${unique("98765")}`;
    const single = whatsappStatus({ recipient_id: undefined, recipient_user_id: user });
    const inGroup = whatsappStatus({ recipient_id: group, recipient_type: "group", recipient_participant_user_id: participant });
    const deps = recordingDeps(testSettings);
    expect((await ingestor.handle(await signedRaw(whatsappBody([single, inGroup])), deps)).status).toBe(200);
    expect(deps.stored).toMatchObject([
      { chat: "single", conversation: singleConversationKey("whatsapp", PHONE, PHONE, user), readers: [user] },
      { chat: "group", conversation: groupConversationKey("whatsapp", PHONE, group), readers: [participant], group },
    ]);
    // Neither id, or a group status without its reader: skipped (named in the log), the batch still 200.
    const deps2 = recordingDeps(testSettings);
    const orphans = [whatsappStatus({ recipient_id: undefined }), whatsappStatus({ recipient_id: group, recipient_type: "group" })];
    expect(await ingestor.handle(await signedRaw(whatsappBody(orphans)), deps2)).toMatchObject({ status: 200, body: { result: "ignored" } });
    expect(deps2.stored).toEqual([]);
    const made = await runBatchProvider(
      whatsapp,
      await signedRaw(whatsappBody(orphans)),
      { secrets: META_SECRETS, verifyTokens: META_VERIFY_TOKENS },
      Date.now(),
      new Date().toISOString(),
    );
    expect(made).toMatchObject({
      stage: "done",
      invalid: [
        expect.stringContaining("field entry.0.changes.0.value.statuses.0.recipient_id: is required (or recipient_user_id"),
        expect.stringContaining("field entry.0.changes.0.value.statuses.1.recipient_participant_id: is required for a group's status"),
      ],
    });
  });

  it("keeps the one status in Meta's shape as raw", async () => {
    const deps = recordingDeps(testSettings);
    const { body } = doneWhenBatch();
    await ingestor.handle(await signedRaw(body), deps);
    const raw = deps.stored[0]!.raw;
    expect(raw.object).toBe("whatsapp_business_account");
    expect(raw.entry[0].changes[0].value.statuses).toHaveLength(1);
    expect(raw.entry[0].changes[0].value.metadata.phone_number_id).toBe(PHONE);
  });

  it("skips a read status older than the dedup window, storing the fresh ones", async () => {
    const old = String(Math.floor((Date.now() - MAX_EVENT_AGE_MS - 60_000) / 1000));
    const body = whatsappBody([whatsappStatus({ recipient_id: unique("1") }), whatsappStatus({ recipient_id: unique("2"), timestamp: old })]);
    const deps = recordingDeps(testSettings);
    expect(await ingestor.handle(await signedRaw(body), deps)).toMatchObject({ status: 200, body: { result: "accepted" } });
    expect(deps.stored).toHaveLength(1);
  });

  it(`refuses more than ${MAX_META_ITEMS_PER_CALLBACK} statuses in one callback 413`, async () => {
    const status = { id: "w", status: "sent", timestamp: "1", recipient_id: "1" };
    const body = whatsappBody(Array.from({ length: MAX_META_ITEMS_PER_CALLBACK + 1 }, () => status));
    const result = await runBatchProvider(
      whatsapp,
      await signedRaw(body),
      { secrets: META_SECRETS, verifyTokens: META_VERIFY_TOKENS },
      Date.now(),
      new Date().toISOString(),
    );
    expect(result).toMatchObject({ stage: "normalize", status: 413, code: "too_many_events" });
  });

  it("counts inbound messages and other statuses as ignored", async () => {
    const result = await runBatchProvider(
      whatsapp,
      await signedRaw(metaSamples.whatsapp.other),
      { secrets: META_SECRETS, verifyTokens: META_VERIFY_TOKENS },
      Date.now(),
      new Date().toISOString(),
    );
    expect(result).toEqual({ stage: "done", kind: "receipts", receipts: [], ignored: { message: 1 }, invalid: [] });
  });

  it("reads the sample from Meta's docs: one read receipt", async () => {
    const result = await runBatchProvider(
      whatsapp,
      await signedRaw(metaSamples.whatsapp.read),
      { secrets: META_SECRETS, verifyTokens: META_VERIFY_TOKENS },
      Date.now(),
      "2026-01-01T00:00:00.000Z",
    );
    expect(result).toMatchObject({
      stage: "done",
      receipts: [
        {
          receipt: {
            provider: "whatsapp",
            conversation: "whatsapp:106540352242922:u:106540352242922:16505551234",
            readers: ["16505551234"],
            messages: [{ id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA" }],
            readAt: "2025-06-18T16:22:53.000Z",
          },
          eventTime: { ms: 1750263773000, field: "entry.0.changes.0.value.statuses.0.timestamp" },
        },
      ],
      ignored: {},
    });
  });
});

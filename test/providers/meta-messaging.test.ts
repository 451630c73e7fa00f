import { describe, expect, it } from "vitest";
import { z } from "zod";
import { providers } from "../../src/ingestors";
import { signMeta } from "../../src/providers/meta";
import { instagram } from "../../src/providers/instagram";
import { messenger } from "../../src/providers/messenger";
import { singleConversationKey } from "../../src/receipt";
import {
  INSTAGRAM_ACCOUNT_ID,
  META_SECRETS,
  META_VERIFY_TOKENS,
  MESSENGER_PAGE_ID,
  messagingBody,
  metaSamples,
  send,
  sendMeta,
  unique,
  receiptsIn,
} from "../support/callbacks";
import { rawOf, recordingDeps } from "../support/provider-contract";
import { runBatchProvider } from "../support/pipeline";
import { testSettings } from "../support/settings";

/**
 * Messenger and Instagram share Meta's `messaging[]` envelope: the same cases for both. What is
 * each one's own (Messenger's watermark, Instagram's seen message) is in messenger.test.ts and
 * instagram.test.ts.
 */
const PRODUCTS = [
  {
    name: "messenger",
    provider: messenger,
    account: MESSENGER_PAGE_ID,
    event: "message_reads",
    setting: "MESSENGER_PAGE_IDS",
    read: () => ({ watermark: Date.now() - 1000 }),
    otherKind: "messaging.delivery",
  },
  {
    name: "instagram",
    provider: instagram,
    account: INSTAGRAM_ACCOUNT_ID,
    event: "messaging_seen",
    setting: "INSTAGRAM_ACCOUNT_IDS",
    read: () => ({ mid: `mid.${unique("")}` }),
    otherKind: "messaging.message",
  },
] as const;

const config = { secrets: META_SECRETS, verifyTokens: META_VERIFY_TOKENS };

const answerOf = async (response: Response) => ({ status: response.status, body: await response.json() });

describe.each(PRODUCTS)("$name (Meta messaging)", ({ name, provider, account: ACCOUNT, event, setting, read, otherKind }) => {
  const ingestor = providers.get(name)!;
  const readEvent = (sender: string, account: string = ACCOUNT) => ({
    sender: { id: sender },
    recipient: { id: account },
    timestamp: Date.now(),
    read: read(),
  });
  const signedRaw = async (body: unknown, secret = META_SECRETS[0]!) => {
    const text = JSON.stringify(body);
    return rawOf({ path: `/v1/hooks/${name}`, headers: { "x-hub-signature-256": await signMeta(secret, text) }, body: text });
  };

  describe("through the worker", () => {
    it("takes a read event: one receipt in the account's conversation with the user; a resend is a duplicate", async () => {
      const user = unique("65432");
      const body = messagingBody(name, [readEvent(user)]);
      expect(await answerOf(await sendMeta(name, body))).toEqual({ status: 200, body: { status: "ok", result: "accepted" } });
      expect(await answerOf(await sendMeta(name, body))).toEqual({ status: 200, body: { status: "ok", result: "duplicate" } });
      const conversation = singleConversationKey(name, ACCOUNT, ACCOUNT, user);
      const stored = await receiptsIn(conversation);
      expect(stored).toHaveLength(1);
      expect(stored[0]).toMatchObject({ provider: name, event, app: ACCOUNT, chat: "single", readers: [user], peer: ACCOUNT });
    });

    it("takes several read events for several users in one callback", async () => {
      const users = [unique("1"), unique("2"), unique("3")];
      const body = messagingBody(
        name,
        users.map((user) => readEvent(user)),
      );
      expect((await sendMeta(name, body)).status).toBe(200);
      for (const user of users) expect(await receiptsIn(singleConversationKey(name, ACCOUNT, ACCOUNT, user))).toHaveLength(1);
    });

    it("refuses a wrong signature and another app's secret 401", async () => {
      const body = messagingBody(name, [readEvent(unique("65432"))]);
      const text = JSON.stringify(body);
      const wrong = await send(`/v1/hooks/${name}`, { headers: { "x-hub-signature-256": "sha256=" + "a".repeat(64) }, body: text });
      expect(await answerOf(wrong)).toMatchObject({ status: 401, body: { code: "bad_signature" } });
      expect(await answerOf(await sendMeta(name, body, "another-apps-secret"))).toMatchObject({ status: 401, body: { code: "bad_signature" } });
    });

    it(`refuses an account that ${setting} does not list 403`, async () => {
      const body = messagingBody(name, [readEvent(unique("65432"), "999")]);
      expect(await answerOf(await sendMeta(name, body))).toMatchObject({ status: 403, body: { code: "not_allowed" } });
    });

    it("answers a signed but malformed body 400 naming the field; a malformed event alone is skipped, counted and logged", async () => {
      const sample = messagingBody(name, []);
      const noMessaging = {
        ...sample,
        entry: z
          .array(z.looseObject({}))
          .parse(sample.entry)
          .map((entry) => ({ ...entry, messaging: "none" })),
      };
      expect(await answerOf(await sendMeta(name, noMessaging))).toMatchObject({
        status: 400,
        body: { message: expect.stringContaining("field entry.0.messaging") },
      });
      // Meta unsubscribes an app whose deliveries fail for an hour: one bad event must not fail them all.
      const only = messagingBody(name, [{ ...readEvent(unique("65432")), recipient: {} }]);
      expect(await answerOf(await sendMeta(name, only))).toMatchObject({ status: 200, body: { status: "ok", result: "ignored" } });
    });

    it("answers the handshake with the challenge, and a wrong token 403", async () => {
      const ok = await send(`/v1/hooks/${name}?hub.mode=subscribe&hub.verify_token=${META_VERIFY_TOKENS[0]}&hub.challenge=42`, { method: "GET" });
      expect({ status: ok.status, text: await ok.text() }).toEqual({ status: 200, text: "42" });
      const wrong = await send(`/v1/hooks/${name}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=42`, { method: "GET" });
      expect(wrong.status).toBe(403);
    });
  });

  describe("pipeline", () => {
    it("answers 503 when a store fails", async () => {
      const deps = recordingDeps(testSettings);
      deps.store = async () => {
        throw new Error("down");
      };
      const answer = await ingestor.handle(await signedRaw(messagingBody(name, [readEvent(unique("1")), readEvent(unique("2"))])), deps);
      expect(answer).toMatchObject({ status: 503, body: { code: "store_unavailable" } });
    });

    it("reads the sample from Meta's docs", async () => {
      const result = await runBatchProvider(provider, await signedRaw(metaSamples[name].read), config, Date.now(), "2026-01-01T00:00:00.000Z");
      expect(result).toMatchObject({ stage: "done", ignored: {} });
      if (result.stage !== "done") throw new Error("refused");
      expect(result.receipts).toHaveLength(1);
      const { receipt } = result.receipts[0]!;
      const sample = metaSamples[name].read.entry[0]!.messaging[0]!;
      expect(receipt).toMatchObject({
        conversation: singleConversationKey(name, sample.recipient.id, sample.recipient.id, sample.sender.id),
        readAt: new Date(sample.timestamp).toISOString(),
      });
      expect(receipt.raw).toEqual(metaSamples[name].read);
    });

    it("counts other messaging events as ignored", async () => {
      const result = await runBatchProvider(provider, await signedRaw(metaSamples[name].other), config, Date.now(), "2026-01-01T00:00:00.000Z");
      expect(result).toMatchObject({ stage: "done", receipts: [], ignored: { [otherKind]: 1 } });
    });
  });
});

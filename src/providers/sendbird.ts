/**
 * Sendbird Chat: `group_channel:message_read`. Signed `x-sendbird-signature =
 * hex(HMAC-SHA256(master API token, body))` over the body's bytes exactly as received (Sendbird
 * writes `/` as `\/`, so a re-serialized body would not match). The signature covers the whole
 * body, so no claim is needed; Sendbird sends no timestamp or delivery id to check or dedupe by.
 * Facts and sources: docs/providers/sendbird.md.
 */
import { z } from "zod";
import { hmacSha256Hex } from "../crypto/hash";
import { timingSafeEqualAny } from "../crypto/timing-safe";
import { groupConversationKey, type Receipt } from "../receipt";
import { isoFromMillis } from "../time";
import { list, optional } from "../settings";
import {
  Identifier,
  identityId,
  JSON_CONTENT,
  parseEvent,
  parseJsonObject,
  rejectExtraPath,
  unconfigured,
  type Answer,
  type Normalized,
  type Outcome,
  type Parsed,
  type RegisteredProvider,
  type SignedBody,
} from "./provider";

/** The app when a body carries no `app_id` (docs/providers/sendbird.md, "Conversations"). */
const SENDBIRD_DEFAULT_APP = "sendbird";
const READ_EVENT = "group_channel:message_read";

/** The signature header and the body's bytes, not yet trusted or parsed. */
type Envelope = SignedBody;

const Settings = z.object({
  /** The app's master API token, or several (several apps, or a rotation), comma-separated. */
  SENDBIRD_API_TOKEN: optional(list(z.string(), "token")),
  /** When set, a body's `app_id` must be one of these, comma-separated. */
  SENDBIRD_APP_ID: optional(list(Identifier, "app id")),
});

export interface SendbirdConfig {
  tokens: string[];
  appIds?: string[];
}

/** The last millisecond of year 9999: later times have no ISO-8601 form. */
const MAX_TIME_MS = 253_402_300_799_999;
const Millis = z.number().int().nonnegative().max(MAX_TIME_MS, "is not a plausible time in milliseconds");
const Count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** https://sendbird.com/docs/chat/platform-api/v3/webhook/events/group-channel (group_channel:message_read). */
const MessageRead = z.object({
  category: z.literal(READ_EVENT),
  channel: z.looseObject({
    channel_url: Identifier,
    name: z.string().optional(),
    custom_type: z.string().optional(),
  }),
  read_updates: z
    .array(
      z.object({
        user_id: Identifier,
        read_ts: Millis,
        channel_unread_message_count: Count.optional(),
        total_unread_message_count: Count.optional(),
      }),
    )
    // No maximum here: past MAX_READERS_PER_RECEIPT, ingest keeps the first ones and counts the rest.
    .min(1, "must name at least one reader"),
  app_id: Identifier.optional(),
});

/** Sendbird's signature: hex HMAC-SHA256 of the body's bytes as sent, under the master API token. Also how tests build real ones. */
export function signSendbird(apiToken: string, body: Uint8Array | string): Promise<string> {
  return hmacSha256Hex(apiToken, body);
}

export const sendbird: RegisteredProvider<SendbirdConfig, Envelope, typeof Settings> = {
  name: "sendbird",
  settings: Settings,
  samples: [{ label: "group_channel:message_read", fixture: "sendbird-group_channel-message_read" }],

  fresh(body, _sample, { conversation, reader, now }) {
    // Sendbird's read names no message: the reader's read_ts is the read.
    const [update] = Array.isArray(body.read_updates) ? body.read_updates : [];
    return { ...body, channel: { ...body.channel, channel_url: conversation }, read_updates: [{ ...update, user_id: reader, read_ts: now }] };
  },

  async sign(body, _sample, config) {
    const appId = config.appIds?.[0];
    // Sendbird writes "/" as "\/" and signs the bytes it sends.
    const text = JSON.stringify(appId ? { ...body, app_id: appId } : body).replaceAll("/", "\\/");
    return {
      path: "/v1/hooks/sendbird",
      headers: { ...JSON_CONTENT, "user-agent": "SendBird", "x-sendbird-signature": await signSendbird(config.tokens[0] ?? "", text) },
      body: text,
    };
  },

  configure(settings) {
    if (!settings.SENDBIRD_API_TOKEN) return unconfigured("SENDBIRD_API_TOKEN", { SENDBIRD_APP_ID: settings.SENDBIRD_APP_ID });
    return {
      state: "enabled",
      config: { tokens: settings.SENDBIRD_API_TOKEN, ...(settings.SENDBIRD_APP_ID ? { appIds: settings.SENDBIRD_APP_ID } : {}) },
    };
  },

  parse(raw) {
    const extraPath = rejectExtraPath(raw);
    if (extraPath) return extraPath;
    const signature = raw.headers.get("x-sendbird-signature")?.trim() || undefined;
    return { ok: true, value: { signature, bytes: raw.bytes, body: raw.body } };
  },

  async verify(envelope, config) {
    if (!envelope.signature) return { status: 401, code: "missing_signature", message: "the x-sendbird-signature header is missing" };
    // Over the bytes as received: Sendbird escapes `/` as `\/`, which no re-serialization reproduces.
    const expected = await Promise.all(config.tokens.map((token) => signSendbird(token, envelope.bytes)));
    if (!(await timingSafeEqualAny(envelope.signature.toLowerCase(), expected))) {
      return {
        status: 401,
        code: "bad_signature",
        message: "x-sendbird-signature does not match hmac_sha256(SENDBIRD_API_TOKEN, body as received) for any configured token",
      };
    }
    if (!config.appIds) return undefined;
    // Authentic: now the body may be read for its app. One that is not JSON is normalize's 400.
    const json = parseJsonObject(envelope.body);
    if (!json.ok) return undefined;
    const appId = json.value.app_id;
    if (appId === undefined) return { status: 403, code: "missing_app_id", message: "the body has no app_id: SENDBIRD_APP_ID is set" };
    if (typeof appId !== "string" || !config.appIds.includes(appId)) {
      return { status: 403, code: "app_id_not_allowed", message: "app_id is not one of those allowed by SENDBIRD_APP_ID" };
    }
    return undefined;
  },

  async normalize(envelope, { receivedAt }): Promise<Parsed<Normalized>> {
    const event = parseEvent(envelope.body, "category", READ_EVENT, MessageRead);
    if (!event.ok) return event;
    if ("ignored" in event.value) return { ok: true, value: { kind: "ignored", event: event.value.ignored } };
    const { read: body, json } = event.value;
    const app = body.app_id ?? SENDBIRD_DEFAULT_APP;
    const channelUrl = body.channel.channel_url;
    const updates = body.read_updates;
    const times = updates.map((update) => update.read_ts);
    const single = updates.length === 1 ? updates[0] : undefined;

    const receipt: Receipt = {
      // No delivery id is documented: a retry is the same body, so the same hash.
      id: await identityId("sendbird", [app, channelUrl, updates.map((update) => [update.user_id, update.read_ts])]),
      provider: "sendbird",
      event: READ_EVENT,
      app,
      // A group channel may have two members; Sendbird's read event does not say (docs/providers/sendbird.md).
      chat: "group",
      conversation: groupConversationKey("sendbird", app, channelUrl),
      readers: [...new Set(updates.map((update) => update.user_id))],
      group: channelUrl,
      messages: [],
      // read_ts is each reader's read receipt: everything before it is read. The earliest holds for every reader named.
      upTo: { time: isoFromMillis(Math.min(...times)) },
      readAt: isoFromMillis(Math.max(...times)),
      ...(single?.total_unread_message_count !== undefined ? { unreadTotal: single.total_unread_message_count } : {}),
      receivedAt,
      raw: json,
    };
    // read_ts is inside the signed body; the latest one is the callback's own time.
    return { ok: true, value: { kind: "receipt", receipt, eventTime: { ms: Math.max(...times), field: "read_updates[].read_ts" } } };
  },

  answer(outcome: Outcome): Answer {
    // Sendbird reads only the status and waits 5 s; the body is for people reading logs.
    if (outcome.ok) return { status: 200, body: { status: "ok", result: outcome.result } };
    return { status: outcome.status, body: { status: "error", code: outcome.code, message: outcome.message } };
  },
};

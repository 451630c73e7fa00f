/**
 * TalkJS: `message.read`, "another user in the same conversation received the message in the chat
 * UI" (at most once per member other than the sender). Signed `X-TalkJS-Signature =
 * HEX(HMAC-SHA256(secret key, X-TalkJS-Timestamp + "." + body))`, upper-case hex, over the body's
 * bytes as received. The timestamp is signed: it is refused outside MAX_EVENT_AGE_SECONDS (and
 * more than 5 minutes ahead). TalkJS names no app in the body: the app is the optional path
 * segment `/v1/hooks/talkjs/<appId>`. Facts and sources: docs/providers/talkjs.md.
 */
import { z } from "zod";
import { hmacSha256Hex } from "../crypto/hash";
import { timingSafeEqualAny } from "../crypto/timing-safe";
import { groupConversationKey, MAX_EVENT_AGE_MS, type Receipt } from "../receipt";
import { isoFromMillis } from "../time";
import { integer, list, optional } from "../settings";
import {
  Identifier,
  identityId,
  JSON_CONTENT,
  parseEvent,
  outsideSignatureWindow,
  reject,
  unconfigured,
  type Answer,
  type Normalized,
  type Outcome,
  type Parsed,
  type RegisteredProvider,
  type SignedBody,
} from "./provider";

/** The app when the URL names none (docs/providers/talkjs.md, "Conversations"). */
const TALKJS_DEFAULT_APP = "talkjs";
const READ_EVENT = "message.read";
/** A timestamp below this is in seconds, at or above it in milliseconds (1e11 s is the year 5138; 1e11 ms is 1973). */
const MILLIS_FROM = 100_000_000_000;

/** The headers that authenticate the callback, the app named by the URL, and the body as received. */
interface Envelope extends SignedBody {
  timestamp?: string;
  app?: string;
}

const Settings = z.object({
  /** The app's secret key (`sk_…`), or several (several apps, or a rotation), comma-separated. */
  TALKJS_SECRET_KEY: optional(list(z.string(), "secret key")),
  /** When set, the URL's app segment (`/v1/hooks/talkjs/<appId>`) must be one of these, comma-separated. */
  TALKJS_APP_ID: optional(list(Identifier, "app id")),
  /**
   * How old X-TalkJS-Timestamp may be. TalkJS retries once, shortly after the first attempt: five
   * minutes covers it and clock skew. At most MAX_EVENT_AGE_MS, like Easemob's (docs/design.md).
   */
  MAX_EVENT_AGE_SECONDS: optional(integer(1, MAX_EVENT_AGE_MS / 1000)).default(300),
});

export interface TalkjsConfig {
  secrets: string[];
  appIds?: string[];
  maxEventAgeSeconds: number;
}

/** The last millisecond of year 9999: later times have no ISO-8601 form. */
const MAX_TIME_MS = 253_402_300_799_999;
const Millis = z.number().int().nonnegative().max(MAX_TIME_MS, "is not a plausible time in milliseconds");

/** https://talkjs.com/docs/Reference/Webhooks/ (message.read): the envelope, the conversation, the message, and its reader. */
const MessageRead = z.looseObject({
  // The event's id and time: in TalkJS's examples, but not in its reference; not needed (the
  // receipt's id is the read itself, its time falls back to the signed X-TalkJS-Timestamp).
  id: Identifier.optional(),
  type: z.literal(READ_EVENT),
  createdAt: Millis.optional(),
  data: z.looseObject({
    conversation: z.looseObject({ id: Identifier }),
    message: z.looseObject({
      id: Identifier,
      conversationId: Identifier.optional(),
      senderId: Identifier.nullable().optional(),
      // Up to 300 user ids (TalkJS sends no message.read for larger conversations).
      readBy: z.array(Identifier).optional(),
    }),
    // The user who read the message.
    recipient: z.looseObject({ id: Identifier }),
  }),
});

/** TalkJS's signature: upper-case hex HMAC-SHA256 of `<timestamp>.<body>` under the secret key. Also how tests build real ones. */
export async function signTalkjs(secretKey: string, timestamp: string | number, body: Uint8Array | string): Promise<string> {
  const bodyBytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const prefix = new TextEncoder().encode(`${timestamp}.`);
  const signed = new Uint8Array(prefix.length + bodyBytes.length);
  signed.set(prefix);
  signed.set(bodyBytes, prefix.length);
  return (await hmacSha256Hex(secretKey, signed)).toUpperCase();
}

/** X-TalkJS-Timestamp in milliseconds: TalkJS's times are milliseconds; seconds are taken too (docs/providers/talkjs.md). */
export function talkjsTimestampMillis(timestamp: string): number {
  const value = Number(timestamp);
  return value >= MILLIS_FROM ? value : value * 1000;
}

export const talkjs: RegisteredProvider<TalkjsConfig, Envelope, typeof Settings> = {
  name: "talkjs",
  console: { path: "/v1/hooks/talkjs/<appId>", note: "your TalkJS app id, needed when TALKJS_APP_ID is set" },
  settings: Settings,
  samples: [{ label: "message.read", fixture: "talkjs-message.read" }],

  fresh(body, _sample, { conversation, reader, message, now }) {
    const data = body.data ?? {};
    return {
      ...body,
      id: `evt_${message}`,
      createdAt: now,
      data: {
        ...data,
        conversation: { ...data.conversation, id: conversation },
        message: { ...data.message, id: `msg_${message}`, conversationId: conversation, readBy: [reader] },
        recipient: { ...data.recipient, id: reader },
      },
    };
  },

  async sign(body, _sample, config, now) {
    const text = JSON.stringify(body);
    // TalkJS names no app in the body: the app is the URL's last segment.
    const app = config.appIds?.[0];
    return {
      path: `/v1/hooks/talkjs${app ? `/${encodeURIComponent(app)}` : ""}`,
      headers: { ...JSON_CONTENT, "x-talkjs-timestamp": String(now), "x-talkjs-signature": await signTalkjs(config.secrets[0] ?? "", now, text) },
      body: text,
    };
  },

  configure(settings) {
    if (!settings.TALKJS_SECRET_KEY) return unconfigured("TALKJS_SECRET_KEY", { TALKJS_APP_ID: settings.TALKJS_APP_ID });
    return {
      state: "enabled",
      config: {
        secrets: settings.TALKJS_SECRET_KEY,
        ...(settings.TALKJS_APP_ID ? { appIds: settings.TALKJS_APP_ID } : {}),
        maxEventAgeSeconds: settings.MAX_EVENT_AGE_SECONDS,
      },
    };
  },

  parse(raw) {
    // At most one segment: the app id.
    if (raw.path.length > 1) {
      return reject(404, "unknown_path", `no hook at this path: use ${raw.url.pathname.split("/").slice(0, 4).join("/")}[/<appId>]`);
    }
    const header = (name: string) => raw.headers.get(name)?.trim() || undefined;
    return {
      ok: true,
      value: {
        signature: header("x-talkjs-signature"),
        timestamp: header("x-talkjs-timestamp"),
        ...(raw.path[0] !== undefined ? { app: raw.path[0] } : {}),
        bytes: raw.bytes,
        body: raw.body,
      },
    };
  },

  async verify(envelope, config, now) {
    if (!envelope.signature) return { status: 401, code: "missing_signature", message: "the X-TalkJS-Signature header is missing" };
    if (!envelope.timestamp) return { status: 401, code: "missing_timestamp", message: "the X-TalkJS-Timestamp header is missing" };
    if (!/^\d{1,16}$/.test(envelope.timestamp)) {
      return { status: 401, code: "bad_timestamp", message: "X-TalkJS-Timestamp must be 1 to 16 digits (a Unix time)" };
    }
    // Over the bytes as received, prefixed by the timestamp exactly as sent.
    const expected = await Promise.all(config.secrets.map((secret) => signTalkjs(secret, envelope.timestamp ?? "", envelope.bytes)));
    if (!(await timingSafeEqualAny(envelope.signature.toUpperCase(), expected))) {
      return {
        status: 401,
        code: "bad_signature",
        message: 'X-TalkJS-Signature does not match HMAC-SHA256(TALKJS_SECRET_KEY, X-TalkJS-Timestamp + "." + body) for any configured key',
      };
    }
    const outside = outsideSignatureWindow("X-TalkJS-Timestamp", talkjsTimestampMillis(envelope.timestamp), config.maxEventAgeSeconds, now);
    if (outside) return outside;
    if (!config.appIds) return undefined;
    if (envelope.app === undefined) {
      return { status: 403, code: "missing_app_id", message: "the URL names no app (/v1/hooks/talkjs/<appId>): TALKJS_APP_ID is set" };
    }
    if (!config.appIds.includes(envelope.app))
      return { status: 403, code: "app_id_not_allowed", message: "the URL's app id is not one of those allowed by TALKJS_APP_ID" };
    return undefined;
  },

  async normalize(envelope, { receivedAt }): Promise<Parsed<Normalized>> {
    const event = parseEvent(envelope.body, "type", READ_EVENT, MessageRead);
    if (!event.ok) return event;
    if ("ignored" in event.value) return { ok: true, value: { kind: "ignored", event: event.value.ignored } };
    const { read, json } = event.value;
    const { data, createdAt } = read;
    // verify has checked that X-TalkJS-Timestamp is present and signed.
    const eventTime =
      createdAt !== undefined ? { ms: createdAt, field: "createdAt" } : { ms: talkjsTimestampMillis(envelope.timestamp ?? ""), field: "X-TalkJS-Timestamp" };
    if (!Millis.safeParse(eventTime.ms).success) return reject(400, "invalid_body", "field createdAt: is required when X-TalkJS-Timestamp is not a time");
    const conversationId = data.conversation.id;
    if (data.message.conversationId !== undefined && data.message.conversationId !== conversationId) {
      return reject(400, "invalid_body", "field data.message.conversationId: differs from data.conversation.id");
    }
    const app = envelope.app ?? TALKJS_DEFAULT_APP;
    if (!Identifier.safeParse(app).success) return reject(400, "invalid_app_id", "the URL's app id must be 1 to 128 characters of valid Unicode");
    const reader = data.recipient.id;

    const receipt: Receipt = {
      // TalkJS sends message.read at most once per member and message: that triple is the read,
      // whatever id a retry carries (docs/providers/talkjs.md, "Deduplication").
      id: await identityId("talkjs", [app, conversationId, data.message.id, reader]),
      provider: "talkjs",
      event: READ_EVENT,
      app,
      // Participants can join a TalkJS conversation: one key per conversation, whatever its size (docs/providers/talkjs.md).
      chat: "group",
      conversation: groupConversationKey("talkjs", app, conversationId),
      readers: [reader],
      group: conversationId,
      messages: [{ id: data.message.id }],
      readAt: isoFromMillis(eventTime.ms),
      receivedAt,
      raw: json,
    };
    // Both are signed: createdAt inside the body, X-TalkJS-Timestamp by the signature's prefix.
    return { ok: true, value: { kind: "receipt", receipt, eventTime } };
  },

  answer(outcome: Outcome): Answer {
    // TalkJS reads only the status (non-200 is retried once); the body is for people reading logs.
    if (outcome.ok) return { status: 200, body: { status: "ok", result: outcome.result } };
    return { status: outcome.status, body: { status: "error", code: outcome.code, message: outcome.message } };
  },
};

/**
 * Easemob (环信) and Agora Chat: `read_ack` (one-to-one and group) and `channel_ack`.
 * Signed `security = md5_hex(callId + secret + timestamp)`; any configured secret may have signed it
 * (one secret per callback rule, and rotation). The signature does not cover the body, so each
 * callId is claimed for the conversation of its first authentic callback (see `claim`).
 * Facts and sources: docs/providers/easemob.md.
 */
import { z } from "zod";
import { fromHex } from "../crypto/encoding";
import { md5, md5Hex } from "../crypto/md5";
import { timingSafeEqualBytes } from "../crypto/timing-safe";
import { groupConversationKey, MAX_EVENT_AGE_MS, singleConversationKey, type JsonObject, type Receipt } from "../receipt";
import { isoFromMillis } from "../time";
import { integer, list, optional } from "../settings";
import {
  Identifier,
  invalidBody,
  JSON_CONTENT,
  outsideSignatureWindow,
  parseJsonObject,
  reject,
  rejectExtraPath,
  type Answer,
  type Outcome,
  type RegisteredProvider,
} from "./provider";

/** Easemob reads at most 1,000 characters of an answer. */
const MAX_ANSWER_CHARS = 1000;

/** The signed envelope: enough to authenticate; the rest is validated once it is authentic. */
const Envelope = z.looseObject({
  callId: z.string().regex(/^[\x21-\x7e]{1,256}$/, "must be 1 to 256 printable ASCII characters"),
  // Signed as written: a JSON number, or (some regions) a numeric string.
  timestamp: z.union([z.number().int().nonnegative(), z.string().regex(/^\d{1,16}$/)]),
  security: z.string().regex(/^[0-9a-fA-F]{32}$/, "must be 32 hex characters (an MD5)"),
  chat_type: z.string().min(1),
});
/** The signed fields, and the whole body as received. */
type Envelope = z.infer<typeof Envelope> & { raw: JsonObject };

const ReadEvent = z.object({
  from: Identifier,
  to: Identifier,
  appkey: Identifier.optional(),
  group_id: Identifier.optional(),
  content_type: z.string().optional(),
  payload: z.looseObject({
    // Message ids are 18-digit numbers: as a JSON number they would already have lost digits.
    ack_message_id: z.union([Identifier, z.number().int().max(Number.MAX_SAFE_INTEGER).transform(String)]).optional(),
    type: z.string().optional(),
    msg_config: z.looseObject({ allow_group_ack: z.boolean().optional() }).optional(),
  }),
});

const Settings = z.object({
  /** One or more rule secrets, comma-separated. */
  EASEMOB_SECRET: optional(list(z.string(), "secret")),
  /**
   * Easemob retries a failed callback once, at once: five minutes covers it and clock skew. At most
   * MAX_EVENT_AGE_MS (47 h 55 min): a larger value would let a signature outlive the dedup window,
   * so it is malformed and turns Easemob off until fixed (docs/design.md, "Deduplication").
   */
  MAX_EVENT_AGE_SECONDS: optional(integer(1, MAX_EVENT_AGE_MS / 1000)).default(300),
});

export interface EasemobConfig {
  secrets: string[];
  maxEventAgeSeconds: number;
}

/** The signature Easemob sends: also how tests and the demo sender build real ones. */
export function signEasemob(callId: string, secret: string, timestamp: number | string): Promise<string> {
  return md5Hex(`${callId}${secret}${timestamp}`);
}

/** The signed fields of a sample body (its `security` is made here). */
const SignedFields = z.looseObject({ callId: z.string(), timestamp: z.union([z.number(), z.string()]) });

export const easemob: RegisteredProvider<EasemobConfig, Envelope, typeof Settings> = {
  name: "easemob",
  settings: Settings,
  samples: [
    { label: "read_ack (one-to-one)", fixture: "easemob-read_ack-single" },
    { label: "read_ack (group)", fixture: "easemob-read_ack-group" },
    { label: "channel_ack", fixture: "easemob-channel_ack" },
  ],

  fresh(body, _sample, { conversation, reader, message, now }) {
    // "<app key>_<message id>": a fresh callId, since the relay claims each one relay-wide.
    const callId = typeof body.callId === "string" ? body.callId : "";
    const app = callId.includes("_") ? callId.slice(0, callId.lastIndexOf("_")) : String(body.appkey ?? "app");
    const id = String(message);
    // `to` is the peer of a one-to-one read and the group of a group read (without group_id).
    return { ...body, callId: `${app}_${id}`, msg_id: id, from: reader, to: conversation, timestamp: now, payload: { ...body.payload, ack_message_id: id } };
  },

  async sign(body, _sample, config) {
    // The signature covers callId and timestamp as the body holds them; the first secret signs.
    const signed = SignedFields.parse(body);
    const security = await signEasemob(signed.callId, config.secrets[0] ?? "", signed.timestamp);
    return { path: "/v1/hooks/easemob", headers: { ...JSON_CONTENT }, body: JSON.stringify({ ...body, security }) };
  },

  configure(settings) {
    if (!settings.EASEMOB_SECRET) return { state: "disabled", missing: "EASEMOB_SECRET" };
    return { state: "enabled", config: { secrets: settings.EASEMOB_SECRET, maxEventAgeSeconds: settings.MAX_EVENT_AGE_SECONDS } };
  },

  parse(raw) {
    const extraPath = rejectExtraPath(raw);
    if (extraPath) return extraPath;
    const json = parseJsonObject(raw.body);
    if (!json.ok) return json;
    const envelope = Envelope.safeParse(json.value);
    if (!envelope.success) return invalidBody(envelope.error.issues);
    // `security` is not kept: with callId and timestamp it would let anyone who reads a stored
    // receipt reuse the callback's signature within MAX_EVENT_AGE_SECONDS.
    const { security: _signature, ...unsigned } = json.value;
    return { ok: true, value: { ...envelope.data, raw: unsigned } };
  },

  async verify(envelope, config, now) {
    // Digests compared as bytes, in constant time, against every configured secret.
    const given = fromHex(envelope.security) ?? new Uint8Array();
    const expected = await Promise.all(config.secrets.map((secret) => md5(`${envelope.callId}${secret}${envelope.timestamp}`)));
    if (!expected.map((digest) => timingSafeEqualBytes(given, digest)).includes(true)) {
      return {
        status: 401,
        code: "bad_signature",
        message: "security does not match md5(callId + secret + timestamp) for any configured EASEMOB_SECRET",
      };
    }
    return outsideSignatureWindow("timestamp", Number(envelope.timestamp), config.maxEventAgeSeconds, now);
  },

  // The signature covers callId and timestamp only: a captured one must not carry another body
  // into another conversation. The claim lasts as long as the timestamp passes the age check.
  claim(envelope, config) {
    return { key: `easemob:${envelope.callId}`, expiresAt: Number(envelope.timestamp) + config.maxEventAgeSeconds * 1000 };
  },

  async normalize(envelope, { receivedAt }) {
    const event = envelope.chat_type;
    if (event !== "read_ack" && event !== "channel_ack") return { ok: true, value: { kind: "ignored", event } };
    const parsed = ReadEvent.safeParse(envelope.raw);
    if (!parsed.success) return invalidBody(parsed.error.issues);
    const body = parsed.data;

    // `appkey` is missing in some regions' bodies; `callId` is "<app key>_<message id>".
    const separator = envelope.callId.lastIndexOf("_");
    const app = body.appkey ?? (separator > 0 ? envelope.callId.slice(0, separator) : undefined);
    if (!app) return reject(400, "invalid_body", "field appkey: missing, and callId does not start with the app key");

    const isGroup =
      event === "read_ack" && (body.group_id !== undefined || body.content_type === "chat:ack:read" || body.payload.msg_config?.allow_group_ack === true);
    const readAt = isoFromMillis(Number(envelope.timestamp));
    const messageId = body.payload.ack_message_id;
    const group = body.group_id ?? body.to;

    const receipt: Receipt = {
      id: `easemob:${envelope.callId}`,
      provider: "easemob",
      event,
      app,
      chat: isGroup ? "group" : "single",
      conversation: isGroup ? groupConversationKey("easemob", app, group) : singleConversationKey("easemob", app, body.from, body.to),
      readers: [body.from],
      ...(isGroup ? { group } : { peer: body.to }),
      messages: messageId === undefined ? [] : [{ id: messageId }],
      // channel_ack: the reader has read the whole conversation up to this moment.
      ...(event === "channel_ack" ? { upTo: { time: readAt } } : {}),
      readAt,
      receivedAt,
      raw: envelope.raw,
    };
    return { ok: true, value: { kind: "receipt", receipt, eventTime: { ms: Number(envelope.timestamp), field: "timestamp" } } };
  },

  answer(outcome: Outcome): Answer {
    // Easemob reads only the status; the body is for people reading logs.
    if (outcome.ok) return { status: 200, body: { status: "ok", result: outcome.result } };
    const message = outcome.message.slice(0, MAX_ANSWER_CHARS - 100);
    return { status: outcome.status, body: { status: "error", code: outcome.code, message } };
  },
};

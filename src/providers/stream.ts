/**
 * Stream Chat (getstream.io): `message.read`, "a channel or thread was marked as read".
 * Signed `X-Signature = hex(HMAC-SHA256(API secret, body))` over the uncompressed JSON; the app may
 * gzip the body (then it starts with the gzip magic `1f 8b`). The signature covers the whole body,
 * so no claim is needed. Stream signs no timestamp: retries are recognised by `X-Webhook-Id`.
 * Facts and sources: docs/providers/stream.md.
 */
import { z } from "zod";
import { hmacSha256Hex } from "../crypto/hash";
import { timingSafeEqualAny } from "../crypto/timing-safe";
import { groupConversationKey, type JsonObject, type Receipt } from "../receipt";
import { isoFromMillis } from "../time";
import { list, optional } from "../settings";
import {
  Identifier,
  identityId,
  JSON_CONTENT,
  parseEvent,
  reject,
  rejectExtraPath,
  requestIdOf,
  unconfigured,
  type Answer,
  type Normalized,
  type Outcome,
  type Parsed,
  type RegisteredProvider,
} from "./provider";

/** The app when a callback carries no `X-Api-Key` (docs/providers/stream.md, "Conversations"). */
const STREAM_DEFAULT_APP = "stream";
/** The same bound as the route's limit on the raw body (src/callback-routes.ts): a gzip body may not inflate past it. */
export const MAX_INFLATED_BYTES = 64 * 1024;
/** How much compressed input is inflated at a time, so that a gzip bomb never holds much memory. */
const INFLATE_SLICE_BYTES = 1024;
/** RFC 1952: every gzip member starts with these two bytes; JSON text never does. */
const GZIP_MAGIC = [0x1f, 0x8b] as const;
const READ_EVENT = "message.read";

/** The request's headers that authenticate and identify it, and its body once inflated. */
interface Envelope {
  signature?: string;
  apiKey?: string;
  webhookId?: string;
  /**
   * The bytes Stream signed: the body, inflated when it is gzip. A promise started by `parse`, so
   * that `verify` and `normalize` share one inflation; it never rejects.
   */
  signed: Promise<Parsed<Uint8Array>>;
}

const Settings = z.object({
  /** One or more app API secrets, comma-separated (several apps, or a rotation). */
  STREAM_API_SECRET: optional(list(z.string(), "secret")),
  /** When set, `X-Api-Key` must be one of these app keys, comma-separated. */
  STREAM_API_KEY: optional(list(z.string().regex(/^[\x21-\x7e]{1,128}$/, "must list printable ASCII keys of at most 128 characters"), "key")),
});

export interface StreamConfig {
  secrets: string[];
  apiKeys?: string[];
}

/** The last millisecond of year 9999: later times have no ISO-8601 form. */
const MAX_TIME_MS = 253_402_300_799_999;
/** Stream's times are RFC 3339 with up to nanoseconds; the receipt keeps milliseconds. */
const StreamTime = z.iso
  .datetime({ offset: true, error: "must be an RFC 3339 time" })
  .transform((text) => Date.parse(text))
  .pipe(z.number().int().nonnegative("is not a plausible time").max(MAX_TIME_MS, "is not a plausible time"))
  .transform(isoFromMillis);
const Count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** `<channel_type>:<channel_id>`. */
const Cid = Identifier.regex(/^[^:]+:.+$/, "must look like <channel_type>:<channel_id>");
/** `X-Webhook-Id`: a UUID in Stream's docs; anything printable and short is kept. */
const WebhookId = z.string().regex(/^[\x21-\x7e]{1,128}$/, "must be 1 to 128 printable ASCII characters");

/** https://getstream.io/chat/docs/react/webhook_events/ (message.read), fields as in Stream's MessageReadEvent model. */
const MessageRead = z.object({
  type: z.literal(READ_EVENT),
  created_at: StreamTime,
  cid: Cid.optional(),
  channel_type: Identifier.optional(),
  channel_id: Identifier.optional(),
  last_read_message_id: Identifier.optional(),
  team: Identifier.optional(),
  channel_member_count: Count.optional(),
  thread: z.looseObject({ parent_message_id: Identifier.optional() }).optional(),
  user: z.looseObject({
    id: Identifier,
    channel_last_read_at: StreamTime.optional(),
    channel_unread_count: Count.optional(),
    total_unread_count: Count.optional(),
  }),
});

/** Stream's signature: hex HMAC-SHA256 of the uncompressed body under the API secret. Also how tests build real ones. */
export function signStream(apiSecret: string, body: Uint8Array | string): Promise<string> {
  return hmacSha256Hex(apiSecret, body);
}

const isGzip = (bytes: Uint8Array) => bytes.length >= 2 && bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];

/**
 * The body Stream signed: a gzip body inflated (at most `limit` bytes, else 413; corrupt, 400), any
 * other body as it is. The input is fed a slice at a time and the output read as it comes, so
 * neither a gzip bomb nor a large body is ever held whole beyond the limit. Never rejects.
 */
export async function inflateIfGzip(bytes: Uint8Array, limit = MAX_INFLATED_BYTES): Promise<Parsed<Uint8Array>> {
  if (!isGzip(bytes)) return { ok: true, value: bytes };
  let offset = 0;
  const compressed = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (offset >= bytes.length) return controller.close();
        controller.enqueue(bytes.slice(offset, offset + INFLATE_SLICE_BYTES));
        offset += INFLATE_SLICE_BYTES;
      },
    },
    { highWaterMark: 0 },
  );
  const reader = compressed.pipeThrough(new DecompressionStream("gzip")).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => undefined);
        return reject(413, "body_too_large", `the gzip body inflates to over ${limit} bytes`);
      }
      chunks.push(value);
    }
  } catch {
    return reject(400, "invalid_gzip", "the body starts like gzip but does not inflate: it is corrupt or truncated");
  }
  const inflated = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    inflated.set(chunk, at);
    at += chunk.byteLength;
  }
  return { ok: true, value: inflated };
}

/** The gzip of a body, as Stream sends it when the app turns compression on. */
export async function gzip(body: string | Uint8Array): Promise<Uint8Array> {
  const compressed = new Response(body).body?.pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(compressed).arrayBuffer());
}

/** Strict UTF-8: a signed body that is not text is refused rather than silently repaired. */
function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return undefined;
  }
}

export const stream: RegisteredProvider<StreamConfig, Envelope, typeof Settings> = {
  name: "stream",
  settings: Settings,
  samples: [
    { label: "message.read", fixture: "stream-message.read" },
    { label: "message.read (gzip)", fixture: "stream-message.read", variant: "gzip" },
  ],

  fresh(body, _sample, { conversation, reader, message, now }) {
    const at = isoFromMillis(now);
    return {
      ...body,
      cid: `messaging:${conversation}`,
      channel_type: "messaging",
      channel_id: conversation,
      last_read_message_id: String(message),
      created_at: at,
      user: { ...body.user, id: reader, channel_last_read_at: at },
    };
  },

  async sign(body, sample, config) {
    const text = JSON.stringify(body);
    const apiKey = config.apiKeys?.[0];
    const headers: Record<string, string> = {
      ...JSON_CONTENT,
      // Over the uncompressed text, also when the body is sent gzipped.
      "x-signature": await signStream(config.secrets[0] ?? "", text),
      // Stream's retry resends the same X-Webhook-Id: the same body keeps its id.
      "x-webhook-id": await requestIdOf(text),
      "x-webhook-attempt": "1",
      ...(apiKey ? { "x-api-key": apiKey } : {}),
    };
    if (sample.variant !== "gzip") return { path: "/v1/hooks/stream", headers, body: text };
    return { path: "/v1/hooks/stream", headers: { ...headers, "content-encoding": "gzip" }, body: await gzip(text) };
  },

  configure(settings) {
    if (!settings.STREAM_API_SECRET) return unconfigured("STREAM_API_SECRET", { STREAM_API_KEY: settings.STREAM_API_KEY });
    return { state: "enabled", config: { secrets: settings.STREAM_API_SECRET, ...(settings.STREAM_API_KEY ? { apiKeys: settings.STREAM_API_KEY } : {}) } };
  },

  parse(raw) {
    const extraPath = rejectExtraPath(raw);
    if (extraPath) return extraPath;
    const header = (name: string) => raw.headers.get(name)?.trim() || undefined;
    return {
      ok: true,
      value: { signature: header("x-signature"), apiKey: header("x-api-key"), webhookId: header("x-webhook-id"), signed: inflateIfGzip(raw.bytes) },
    };
  },

  async verify(envelope, config) {
    if (!envelope.signature) return { status: 401, code: "missing_signature", message: "the X-Signature header is missing" };
    if (config.apiKeys) {
      if (!envelope.apiKey) return { status: 403, code: "missing_api_key", message: "the X-Api-Key header is missing: STREAM_API_KEY is set" };
      if (!config.apiKeys.includes(envelope.apiKey)) {
        return { status: 403, code: "api_key_not_allowed", message: "X-Api-Key is not one of those allowed by STREAM_API_KEY" };
      }
    }
    const signed = await envelope.signed;
    if (!signed.ok) return signed.rejection;
    const expected = await Promise.all(config.secrets.map((secret) => signStream(secret, signed.value)));
    if (!(await timingSafeEqualAny(envelope.signature.toLowerCase(), expected))) {
      return {
        status: 401,
        code: "bad_signature",
        message: "X-Signature does not match hmac_sha256(STREAM_API_SECRET, uncompressed body) for any configured secret",
      };
    }
    return undefined;
  },

  async normalize(envelope, { receivedAt }): Promise<Parsed<Normalized>> {
    const signed = await envelope.signed;
    if (!signed.ok) return signed;
    const text = decodeUtf8(signed.value);
    if (text === undefined) return reject(400, "invalid_utf8", "the request body is not valid UTF-8");
    const event = parseEvent(text, "type", READ_EVENT, MessageRead);
    if (!event.ok) return event;
    if ("ignored" in event.value) return { ok: true, value: { kind: "ignored", event: event.value.ignored } };
    const { read: body, json } = event.value;
    const cidOfParts = body.channel_type !== undefined && body.channel_id !== undefined ? `${body.channel_type}:${body.channel_id}` : undefined;
    if (body.cid !== undefined && cidOfParts !== undefined && body.cid !== cidOfParts) {
      return reject(400, "invalid_body", "field cid: differs from channel_type:channel_id");
    }
    const cid = body.cid ?? cidOfParts;
    if (cid === undefined) return reject(400, "invalid_body", "field cid: missing, and channel_type and channel_id are not both present");
    if (envelope.webhookId !== undefined && !WebhookId.safeParse(envelope.webhookId).success) {
      return reject(400, "invalid_webhook_id", "the X-Webhook-Id header must be 1 to 128 printable ASCII characters");
    }
    // X-Api-Key is not signed: docs/providers/stream.md says why it may still name the app.
    const app = envelope.apiKey ?? STREAM_DEFAULT_APP;
    if (!Identifier.safeParse(app).success) return reject(400, "invalid_api_key", "the X-Api-Key header must be 1 to 128 characters");

    const user = body.user;
    const raw: JsonObject = json;
    const receipt: Receipt = {
      id: envelope.webhookId
        ? `stream:${envelope.webhookId}`
        : await identityId("stream", [app, cid, user.id, body.created_at, body.last_read_message_id, body.thread?.parent_message_id]),
      provider: "stream",
      event: READ_EVENT,
      app,
      // Stream does not say whether a channel is one-to-one (docs/providers/stream.md, "Caveats").
      chat: "group",
      conversation: groupConversationKey("stream", app, cid),
      readers: [user.id],
      group: cid,
      messages: body.last_read_message_id === undefined ? [] : [{ id: body.last_read_message_id }],
      ...(user.channel_last_read_at !== undefined ? { upTo: { time: user.channel_last_read_at } } : {}),
      readAt: body.created_at,
      ...(user.total_unread_count !== undefined ? { unreadTotal: user.total_unread_count } : {}),
      receivedAt,
      raw,
    };
    // created_at is inside the signed body: a captured callback ages with it.
    return { ok: true, value: { kind: "receipt", receipt, eventTime: { ms: Date.parse(body.created_at), field: "created_at" } } };
  },

  answer(outcome: Outcome): Answer {
    // Stream reads only the status (any 2xx is success); the body is for people reading logs.
    if (outcome.ok) return { status: 200, body: { status: "ok", result: outcome.result } };
    return { status: outcome.status, body: { status: "error", code: outcome.code, message: outcome.message } };
  },
};

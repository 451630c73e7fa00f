/**
 * What WhatsApp, Messenger and Instagram share: Meta's webhook. A `GET` handshake (`hub.mode`,
 * `hub.verify_token`, `hub.challenge`) answered with the challenge as plain text; every `POST`
 * signed `X-Hub-Signature-256: sha256=<hex>` = HMAC-SHA256 of the raw body under the App Secret;
 * batched bodies (`object`, `entry[]`) that can carry many receipts for many conversations. Each
 * product's own file says what an item is and which items are read receipts.
 * Facts and sources: docs/providers/whatsapp.md, messenger.md, instagram.md.
 */
import { z } from "zod";
import { hmacSha256Hex } from "../crypto/hash";
import { timingSafeEqualAny } from "../crypto/timing-safe";
import { JsonObject as JsonObjectSchema, type JsonObject, type ProviderName, type Receipt } from "../receipt";
import { list, optional } from "../settings";
import {
  describeIssue,
  Identifier,
  invalidBody,
  JSON_CONTENT,
  parseJsonObject,
  reject,
  rejectExtraPath,
  unconfigured,
  type Answer,
  type EventTime,
  type Normalized,
  type Outcome,
  type Parsed,
  type ProviderSample,
  type RegisteredProvider,
  type SampleSeed,
  type SignedBody,
} from "./provider";

/** Items (WhatsApp statuses, Messenger/Instagram messaging events) one callback may carry: more is refused 413. */
export const MAX_META_ITEMS_PER_CALLBACK = 1000;
/** WhatsApp's documented largest webhook payload, 3 MB (docs/providers/whatsapp.md): a batch of up to 1,000 statuses. */
export const META_MAX_BODY_BYTES = 3 * 1024 * 1024;
/** The longest `hub.challenge` echoed back (Meta sends a short number). */
export const MAX_CHALLENGE_LENGTH = 256;

/** The signature header, and the body's bytes, not yet trusted or parsed. */
export type MetaEnvelope = SignedBody;

export interface MetaConfig {
  secrets: string[];
  verifyTokens: string[];
  /** When set, every business id a callback names (phone number, page, account) must be one of these. */
  allowed?: string[];
}

/** One read receipt of a batch, and the signed time it holds. */
export interface MetaReceipt {
  receipt: Receipt;
  eventTime: EventTime;
}

/** What a product makes of a signed, parsed body. */
export type MetaItems = { receipts: MetaReceipt[]; ignored: Record<string, number>; invalid: string[] };

export interface MetaProduct {
  name: ProviderName;
  /** The body's `object`: `whatsapp_business_account`, `page` or `instagram`. */
  object: string;
  /** The allow-list setting of the business ids (e.g. `WHATSAPP_PHONE_NUMBER_IDS`). */
  allowSetting: string;
  /** What the allow-list lists, for messages ("phone number id"). */
  allowWhat: string;
  /** How many items the body holds (statuses, messaging events), read leniently: bounds the work before validation. */
  countItems(json: JsonObject): number;
  /** The business ids the body names, read leniently (only strings), for the allow-list. */
  businessIds(json: JsonObject): string[];
  /** Strict validation of the body (its `object` already checked) and its read receipts. */
  receipts(json: JsonObject, receivedAt: string): Promise<Parsed<MetaItems>>;
  samples: readonly [ProviderSample, ...ProviderSample[]];
  /** A sample body made fresh (see `ProviderSamples.fresh`). */
  fresh(json: JsonObject, sample: ProviderSample, seed: SampleSeed): JsonObject;
  /** The body with every business id it names replaced by `id` (a sample aimed at an allow-listed one). */
  address(json: JsonObject, id: string): JsonObject;
}

/** `entry[]` of a sample body, each entry changed by `change`. */
export const mapEntries = (json: JsonObject, change: (entry: JsonObject) => JsonObject): JsonObject => ({
  ...json,
  entry: (Array.isArray(json.entry) ? json.entry : []).map(change),
});

/** Meta's signature: `sha256=` and lower-case hex HMAC-SHA256 of the body's bytes under the App Secret. Also how tests sign. */
export async function signMeta(appSecret: string, body: Uint8Array | string): Promise<string> {
  return `sha256=${await hmacSha256Hex(appSecret, body)}`;
}

const SIGNATURE = /^sha256=([0-9a-fA-F]{64})$/;

/** Arrays of a JSON value, leniently: [] for anything that is not one. */
export const arrayOf = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
/** A field of a JSON value, leniently. */
export const fieldOf = (value: unknown, field: string): unknown =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[field] : undefined;

/** A JSON value as an object to spread, leniently: {} for anything that is not one. */
export const objectOrEmpty = (value: unknown): JsonObject => {
  const object = JsonObjectSchema.safeParse(value);
  return object.success ? object.data : {};
};
/** `entry[]` leniently. */
export const entriesOf = (json: JsonObject): unknown[] => arrayOf(json.entry);

/** The last millisecond of year 9999: later times have no ISO-8601 form. */
export const MAX_TIME_MS = 253_402_300_799_999;
export const Millis = z.number().int().nonnegative().max(MAX_TIME_MS, "is not a plausible time in milliseconds");
/** Unix seconds as a string (WhatsApp's `timestamp`). */
export const SecondsText = z
  .string()
  .regex(/^\d{1,12}$/, "must be Unix seconds, as a string of digits")
  .refine((value) => Number(value) * 1000 <= MAX_TIME_MS, "is not a plausible time");

/** An id Meta sends as a string; Meta's ids are digits, but any well-formed text is kept. */
export const MetaId = Identifier;
export const Party = z.looseObject({ id: MetaId });
/** A message id (wamid, mid): Instagram's run past 128 characters. */
export const MessageId = z
  .string()
  .min(1)
  .max(512, "must be at most 512 characters")
  .refine((text) => !/[\uD800-\uDFFF]/u.test(text), "must be valid Unicode (it holds a lone surrogate)");

/** Counts one ignored item by its event name. */
export function countInto(ignored: Record<string, number>, event: string): void {
  ignored[event] = (ignored[event] ?? 0) + 1;
}

/** The `Provider` of one Meta product: settings, handshake, signature, allow-list, batch. */
export function metaProvider(product: MetaProduct) {
  const Settings = z.object({
    /** The App Secret(s), comma-separated: several apps, or a rotation. */
    META_APP_SECRET: optional(list(z.string(), "secret")),
    /** The verify token(s) typed into the App Dashboard beside the callback URL. */
    META_VERIFY_TOKEN: optional(list(z.string(), "token")),
    [product.allowSetting]: optional(list(Identifier, product.allowWhat)),
  });
  type Values = { META_APP_SECRET?: string[]; META_VERIFY_TOKEN?: string[] } & Record<string, string[] | undefined>;

  const provider: RegisteredProvider<MetaConfig, MetaEnvelope, typeof Settings> = {
    name: product.name,
    settings: Settings,
    samples: product.samples,
    fresh: product.fresh,
    maxBodyBytes: META_MAX_BODY_BYTES,
    console: { note: "with a verify token of META_VERIFY_TOKEN" },
    async sign(body, _sample, config) {
      const allowed = config.allowed?.[0];
      const text = JSON.stringify(allowed ? product.address(body, allowed) : body);
      return {
        path: `/v1/hooks/${product.name}`,
        headers: { ...JSON_CONTENT, "user-agent": "facebookexternalua", "x-hub-signature-256": await signMeta(config.secrets[0] ?? "", text) },
        body: text,
      };
    },

    configure(settings) {
      const values = settings as Values;
      const allowed = values[product.allowSetting];
      if (!values.META_APP_SECRET) {
        return unconfigured("META_APP_SECRET", { META_VERIFY_TOKEN: values.META_VERIFY_TOKEN, [product.allowSetting]: allowed });
      }
      // Meta subscribes a callback URL only once its handshake answered: a secret without a token is a half-done setup.
      if (!values.META_VERIFY_TOKEN) {
        return { state: "misconfigured", problems: [{ setting: "META_VERIFY_TOKEN", problem: "must be set when META_APP_SECRET is set" }] };
      }
      return {
        state: "enabled",
        config: { secrets: values.META_APP_SECRET, verifyTokens: values.META_VERIFY_TOKEN, ...(allowed ? { allowed } : {}) },
      };
    },

    /** `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: the challenge when the token is one configured. */
    async handshake(query, config) {
      const mode = query.get("hub.mode");
      const token = query.get("hub.verify_token");
      const challenge = query.get("hub.challenge");
      if (mode !== "subscribe") return reject(400, "bad_handshake", "a GET here is Meta's handshake: hub.mode must be subscribe");
      if (challenge === null || challenge.length === 0 || challenge.length > MAX_CHALLENGE_LENGTH || !/^[\x21-\x7e]+$/.test(challenge)) {
        return reject(400, "bad_handshake", `hub.challenge must be 1 to ${MAX_CHALLENGE_LENGTH} printable ASCII characters`);
      }
      if (token === null || token === "") return reject(403, "missing_verify_token", "hub.verify_token is missing");
      // Compared in constant time against every configured token.
      if (!(await timingSafeEqualAny(token, config.verifyTokens))) return reject(403, "bad_verify_token", "hub.verify_token is not one of META_VERIFY_TOKEN");
      return { ok: true, value: challenge };
    },

    parse(raw) {
      const extraPath = rejectExtraPath(raw);
      if (extraPath) return extraPath;
      const signature = raw.headers.get("x-hub-signature-256")?.trim() || undefined;
      return { ok: true, value: { signature, bytes: raw.bytes, body: raw.body } };
    },

    async verify(envelope, config) {
      if (!envelope.signature) return { status: 401, code: "missing_signature", message: "the X-Hub-Signature-256 header is missing" };
      const hex = SIGNATURE.exec(envelope.signature)?.[1];
      const expected = await Promise.all(config.secrets.map((secret) => hmacSha256Hex(secret, envelope.bytes)));
      // Compared even when malformed, so that the time taken says nothing about the header's shape.
      if (!(await timingSafeEqualAny((hex ?? envelope.signature).toLowerCase(), expected)) || hex === undefined) {
        return {
          status: 401,
          code: "bad_signature",
          message: "X-Hub-Signature-256 is not sha256=hex(hmac_sha256(META_APP_SECRET, body as received)) for any configured App Secret",
        };
      }
      if (!config.allowed) return undefined;
      // Authentic: now the body may be read for its business ids. One that is not JSON is normalize's 400.
      const json = parseJsonObject(envelope.body);
      if (!json.ok) return undefined;
      const allowed = config.allowed;
      const other = product.businessIds(json.value).find((id) => !allowed.includes(id));
      if (other !== undefined) {
        return { status: 403, code: "not_allowed", message: `the callback names a ${product.allowWhat} that ${product.allowSetting} does not list` };
      }
      return undefined;
    },

    async normalize(envelope, { receivedAt }): Promise<Parsed<Normalized>> {
      const json = parseJsonObject(envelope.body);
      if (!json.ok) return json;
      const object = z.looseObject({ object: z.literal(product.object), entry: z.array(z.unknown()) }).safeParse(json.value);
      if (!object.success) return invalidBody(object.error.issues);
      // Bounded before the items are validated one by one (the body limit bounds this count too).
      const items = product.countItems(json.value);
      if (items > MAX_META_ITEMS_PER_CALLBACK) {
        return reject(413, "too_many_events", `the callback holds ${items} events: at most ${MAX_META_ITEMS_PER_CALLBACK} per callback`);
      }
      const made = await product.receipts(json.value, receivedAt);
      if (!made.ok) return made;
      return { ok: true, value: { kind: "receipts", ...made.value } };
    },

    answer(outcome: Outcome): Answer {
      // Meta reads only the status (200, or it retries); the body is for people reading logs.
      if (outcome.ok) return { status: 200, body: { status: "ok", result: outcome.result } };
      return { status: outcome.status, body: { status: "error", code: outcome.code, message: outcome.message } };
    },
  };

  return provider;
}

type Issue = { path: readonly PropertyKey[]; message: string };
const issuesAt = (prefix: readonly PropertyKey[], issues: readonly Issue[]) => issues.map((issue) => ({ ...issue, path: [...prefix, ...issue.path] }));
/** 400 naming a field of the whole body: `entry.0.changes.1.value.statuses.2.id`. */
export function invalidAt(prefix: readonly PropertyKey[], issues: readonly Issue[]): { ok: false; rejection: import("./provider").Rejection } {
  return invalidBody(issuesAt(prefix, issues));
}
/**
 * What is wrong with one item (a status, a messaging event) of an otherwise well-formed batch,
 * naming its field. The item is skipped, not the batch: Meta would resend the whole batch for
 * days (WhatsApp) or unsubscribe the app after an hour of failures (Messenger, Instagram), and
 * every valid receipt in it would be lost with the bad one (docs/providers/whatsapp.md, "Batches").
 */
export const invalidItem = (prefix: readonly PropertyKey[], issues: readonly Issue[]): string => describeIssue(issuesAt(prefix, issues));

/*
 * Messenger and Instagram: `entry[].messaging[]`, each event one object naming `sender`,
 * `recipient` and `timestamp` beside the one field that says what it is (`read`, `message`,
 * `delivery`, ...). A read event is a receipt; any other is counted by that field's name.
 */

const MessagingEntry = z.looseObject({ id: MetaId, messaging: z.array(z.unknown()).optional() });
const Sender = z
  .looseObject({ id: MetaId.optional(), user_ref: MetaId.optional() })
  .refine((sender) => sender.id !== undefined || sender.user_ref !== undefined, {
    message: "must have an id (or a user_ref)",
  });
const ENVELOPE_FIELDS = new Set(["sender", "recipient", "timestamp"]);

/** What a messaging read event holds once validated. */
export interface MessagingRead<Read> {
  /** The page or professional account: the event's `recipient.id`. */
  account: string;
  /** The reader: `sender.id` (PSID, IGSID), or `sender.user_ref` (Messenger's chat plugin). */
  reader: string;
  timestamp: number;
  read: Read;
  /** The event in Meta's own shape, inside a one-event envelope: the receipt's `raw`. */
  raw: JsonObject;
}

export interface MessagingProduct<Read> {
  name: ProviderName;
  object: string;
  allowSetting: string;
  allowWhat: string;
  /** The read field's schema (Messenger `{ watermark }`, Instagram `{ mid }`). */
  read: z.ZodType<Read>;
  toReceipt(read: MessagingRead<Read>, receivedAt: string): Promise<Receipt>;
  samples: readonly [ProviderSample, ...ProviderSample[]];
  /** A fresh read field for a sample (Messenger a watermark, Instagram a message id). */
  freshRead(seed: SampleSeed): JsonObject;
}

/** The event's kind: its one field beside sender, recipient and timestamp (`message`, `delivery`, ...). */
function messagingKind(event: unknown): string {
  const fields = typeof event === "object" && event !== null && !Array.isArray(event) ? Object.keys(event) : [];
  const kind = fields.find((field) => !ENVELOPE_FIELDS.has(field));
  return `messaging.${kind ?? "other"}`;
}

export function messagingProvider<Read>(product: MessagingProduct<Read>) {
  const ReadEvent = z.looseObject({ sender: Sender, recipient: Party, timestamp: Millis, read: product.read });
  return metaProvider({
    name: product.name,
    object: product.object,
    allowSetting: product.allowSetting,
    allowWhat: product.allowWhat,
    samples: product.samples,
    // The user on the other side of the page or account is the conversation, and the reader.
    fresh: (json, _sample, seed) =>
      mapEntries(json, (entry) => ({
        ...entry,
        time: seed.now,
        messaging: arrayOf(entry.messaging).map((event) => ({
          ...objectOrEmpty(event),
          sender: { id: seed.conversation },
          timestamp: seed.now,
          read: product.freshRead(seed),
        })),
      })),
    address: (json, id) =>
      mapEntries(json, (entry) => ({
        ...entry,
        id,
        messaging: arrayOf(entry.messaging).map((event) => ({ ...objectOrEmpty(event), recipient: { id } })),
      })),
    countItems: (json) => entriesOf(json).reduce<number>((sum, entry) => sum + arrayOf(fieldOf(entry, "messaging")).length, 0),
    businessIds: (json) =>
      entriesOf(json)
        .flatMap((entry) => [
          fieldOf(entry, "id"),
          ...arrayOf(fieldOf(entry, "messaging"))
            .filter((event) => fieldOf(event, "read") !== undefined)
            .map((event) => fieldOf(fieldOf(event, "recipient"), "id")),
        ])
        .filter((id): id is string => typeof id === "string"),
    async receipts(json, receivedAt) {
      const receipts: MetaReceipt[] = [];
      const ignored: Record<string, number> = {};
      const invalid: string[] = [];
      const entries = arrayOf(json.entry);
      for (const [e, value] of entries.entries()) {
        const entry = MessagingEntry.safeParse(value);
        if (!entry.success) return invalidAt(["entry", e], entry.error.issues);
        // Other arrays of an entry (`standby`, `changes`): not read receipts of this app.
        for (const field of ["standby", "changes"]) {
          const others = arrayOf(fieldOf(entry.data, field)).length;
          if (others > 0) ignored[field] = (ignored[field] ?? 0) + others;
        }
        for (const [m, event] of (entry.data.messaging ?? []).entries()) {
          if (fieldOf(event, "read") === undefined) {
            countInto(ignored, messagingKind(event));
            continue;
          }
          const read = ReadEvent.safeParse(event);
          if (!read.success) {
            invalid.push(invalidItem(["entry", e, "messaging", m], read.error.issues));
            continue;
          }
          const sender = read.data.sender;
          const made: MessagingRead<Read> = {
            account: read.data.recipient.id,
            reader: (sender.id ?? sender.user_ref)!,
            timestamp: read.data.timestamp,
            read: read.data.read,
            raw: {
              object: product.object,
              entry: [{ id: entry.data.id, ...(entry.data.time !== undefined ? { time: entry.data.time } : {}), messaging: [event] }],
            },
          };
          receipts.push({
            receipt: await product.toReceipt(made, receivedAt),
            // Inside the signed body: the event's own time.
            eventTime: { ms: read.data.timestamp, field: `entry.${e}.messaging.${m}.timestamp` },
          });
        }
      }
      return { ok: true, value: { receipts, ignored, invalid } };
    },
  });
}

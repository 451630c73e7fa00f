/**
 * The one interface every provider implements. Everything here is pure: plain values in, plain
 * values out, no bindings, no clock (the caller passes `now`), so each provider is tested alone.
 */
import { z } from "zod";
import { sha256Hex } from "../crypto/hash";
import { JsonObject, MAX_FUTURE_SKEW_MS, type ProviderName, type Receipt } from "../receipt";
import type { ParsedGroup } from "../settings";

/** What reached `/v1/hooks/<provider>/...`, before anything was trusted. */
export interface RawCallback {
  url: URL;
  /** Decoded path segments after `/v1/hooks/<provider>`. */
  path: string[];
  /** The body as received, decoded as UTF-8 (signatures are computed over it, never a re-serialization). */
  body: string;
  /** The same body's bytes, for signatures over raw bytes and compressed bodies. */
  bytes: Uint8Array;
  headers: Headers;
}

/** A refusal: the HTTP status, a stable code, and a message safe to show the caller. */
export interface Rejection {
  status: 400 | 401 | 403 | 404 | 405 | 413 | 429 | 500 | 503;
  code: string;
  message: string;
  /** With 429 and 503: when to try again, sent as Retry-After. */
  retryAfterSeconds?: number;
}

export type Outcome = { ok: true; result: "accepted" | "duplicate" | "ignored" | "verified"; event: string; receiptId?: string } | ({ ok: false } & Rejection);

export interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; rejection: Rejection };

/**
 * The provider's own time of the event, where what authenticates the callback covers it: ingest
 * refuses the callback once it is older than MAX_EVENT_AGE_MS (src/receipt.ts), so that a captured
 * callback can never outlive the dedup window. `null` when no such time exists (docs/design.md, "Deduplication").
 */
export type EventTime = { ms: number; field: string } | null;

/**
 * `normalize` either makes a receipt, or says the authentic callback is some other event, or (a
 * batching provider: Meta) makes any number of receipts, each with its own event time, and counts
 * the items that were not read receipts by event name.
 */
export type Normalized =
  | { kind: "receipt"; receipt: Receipt; eventTime: EventTime }
  | { kind: "ignored"; event: string }
  | {
      kind: "receipts";
      receipts: { receipt: Receipt; eventTime: EventTime }[];
      ignored: Record<string, number>;
      /**
       * Items of a well-formed batch that are not valid (each naming its field): skipped, counted
       * as `invalid_item` and logged, so that one bad item does not make the provider resend, and
       * at last drop, the whole batch (docs/providers/whatsapp.md, "Batches").
       */
      invalid: string[];
    };

export type ProviderConfig<Config> =
  | { state: "enabled"; config: Config }
  /** Its settings are absent: `missing` names the setting(s) that would enable it. */
  | { state: "disabled"; missing: string }
  /** Its settings are set but wrong together (each alone was valid): the provider is off until fixed. */
  | { state: "misconfigured"; problems: ParsedGroup<unknown>["problems"] };

export interface NormalizeContext {
  receivedAt: string;
}

/**
 * The provider's state while the setting that enables it is unset: disabled, or misconfigured
 * when settings that only make sense beside it are set (a half-done setup says so).
 */
export function unconfigured(required: string, dependents: Record<string, unknown>): Exclude<ProviderConfig<never>, { state: "enabled" }> {
  const set = Object.keys(dependents).filter((name) => dependents[name] !== undefined);
  if (set.length === 0) return { state: "disabled", missing: required };
  return { state: "misconfigured", problems: [{ setting: required, problem: `must be set when ${set.join(" or ")} is set` }] };
}

/** A signed nonce that may be used for one conversation only (see `Provider.claim`). */
export interface Claim {
  /** Unique relay-wide, e.g. `easemob:<callId>`. */
  key: string;
  /** When a reuse of its signature would be refused as too old anyway (ms since the epoch): the claim may be forgotten then. */
  expiresAt: number;
}

/** A claim as ingest makes it: with the SHA-256 (hex) of the body's bytes, so that another body under the same nonce is a reused signature. */
export interface BodyClaim extends Claim {
  digest: string;
}

export interface Provider<Config, Envelope, Settings extends z.ZodObject = z.ZodObject> {
  name: ProviderName;
  /**
   * The provider's own settings (environment variables), each optional. A malformed one turns off
   * this provider alone (503 naming it); the others keep taking receipts.
   */
  settings: Settings;
  /** Makes the provider's config from its validated settings; disabled while what enables it is unset. */
  configure(values: z.infer<Settings>): ProviderConfig<Config>;
  /** Reads what authentication and routing need; must not fail on what `verify` should judge first. */
  parse(raw: RawCallback): Parsed<Envelope>;
  /** Authenticity and freshness; undefined when the callback is authentic. */
  verify(envelope: Envelope, config: Config, now: number): Promise<Rejection | undefined>;
  /** Strict validation of the read event and its mapping onto the normalized receipt. */
  normalize(envelope: Envelope, context: NormalizeContext): Promise<Parsed<Normalized>>;
  /**
   * For a provider whose signature covers a nonce but not the body (Easemob signs only callId and
   * timestamp): the nonce, which the relay binds to the body (its digest) and conversation of its
   * first authentic use, so that a captured signature cannot carry another body.
   */
  claim?(envelope: Envelope, config: Config): Claim;
  /**
   * For a provider that verifies its callback URL with a `GET` (Meta's `hub.challenge`): the text
   * to answer 200 with, or the refusal. Without it, a `GET` is answered 405.
   */
  handshake?(query: URLSearchParams, config: Config): Promise<Parsed<string>>;
  /** The provider's own answer shape for any outcome. */
  answer(outcome: Outcome): Answer;
  /** The largest body taken (413 past it); DEFAULT_MAX_BODY_BYTES unless the provider documents larger ones. */
  maxBodyBytes?: number;
  /**
   * What to paste in the provider's console, as `npm run deploy` prints it: the callback path when
   * it is more than `/v1/hooks/<name>` (with `<placeholders>`), and a note on where or how.
   */
  console?: { path?: string; note?: string };
}

/** The body limit of a callback: the five chat SDKs' read callbacks are a few KiB. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

/**
 * A sample callback of a provider: `test/fixtures/<fixture>.json` holds the provider's own
 * documented payload (test/fixtures/README.md names each one's source). Scripts read it from disk,
 * tests import it; the Worker never bundles it.
 */
export interface ProviderSample {
  /** What it is, e.g. `read_ack (one-to-one)`: scripts print `<provider> <label>`. */
  label: string;
  fixture: string;
  /** `gzip`: sent compressed (Stream); `batch`: several items of the fixture's one (WhatsApp's statuses). */
  variant?: "gzip" | "batch";
}

/**
 * What makes a sample fresh. The same conversation (and reader) is the same conversation at the
 * relay; a new `message` is a new callback, never a duplicate.
 */
export interface SampleSeed {
  /** The group, channel, or the user on the other side of a one-to-one chat. */
  conversation: string;
  /** Who read, where the conversation does not already name them. */
  reader: string;
  /** A positive safe integer, unique per callback: message ids and sequence numbers are made of it. */
  message: number;
  /**
   * ms since the epoch: the body's times, so that freshness checks pass. A read that names no
   * message (Sendbird's read_ts, Messenger's watermark, Tencent's MsgReport) is its time: a new
   * callback needs a new `now` too.
   */
  now: number;
}

/** A callback as the provider sends it. `path` may hold a secret (OpenIM's token, Tencent's Sign): never print it. */
export interface SignedCallback {
  path: string;
  headers: Record<string, string>;
  /** Text, or bytes when the sample is sent compressed. */
  body: string | Uint8Array;
}

/**
 * What a registered provider adds to the pipeline's interface, so that every script and test can
 * make fresh, correctly signed callbacks of it from the registry alone (docs/adding-a-provider.md).
 * Pure and Web Crypto only: it runs in workerd and in Node.
 */
export interface ProviderSamples<Config> {
  /** At least one; the first is the plainest read receipt. */
  samples: readonly [ProviderSample, ...ProviderSample[]];
  /** The sample's fixture body with the seed's conversation, reader, message and times. */
  fresh(body: JsonObject, sample: ProviderSample, seed: SampleSeed): JsonObject;
  /**
   * The request the provider would send with this body to a relay configured with `config`:
   * addressed to its first allowed app (query, header, path segment or the body's own field) and
   * signed with its first secret at `now`.
   */
  sign(body: JsonObject, sample: ProviderSample, config: Config, now: number): Promise<SignedCallback>;
}

export type RegisteredProvider<Config, Envelope, Settings extends z.ZodObject = z.ZodObject> = Provider<Config, Envelope, Settings> & ProviderSamples<Config>;

/** Every sample callback's own header: its body is JSON. */
export const JSON_CONTENT = { "content-type": "application/json" } as const;

/** A request id made of the body: a re-sent body keeps its id, as the provider's retry would (UUID-shaped). */
export async function requestIdOf(text: string): Promise<string> {
  const hex = await sha256Hex(text);
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20, 32)].join("-");
}

/** What a provider that signs the raw body (an HMAC header) reads before verifying: the header, and the body as received. */
export interface SignedBody {
  signature?: string;
  bytes: Uint8Array;
  body: string;
}

export const reject = (status: Rejection["status"], code: string, message: string): { ok: false; rejection: Rejection } => ({
  ok: false,
  rejection: { status, code, message },
});

/**
 * How deeply a body may nest. The providers' bodies nest four or five levels; a deeper one is
 * refused before parsing, since the receipt keeps the body and must cross to the conversation
 * object (whose serializer has its own, lower, limit).
 */
export const MAX_JSON_DEPTH = 32;

/** The deepest nesting of arrays and objects in JSON text (strings skipped); stops counting past `limit`. */
export function jsonDepth(text: string, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c)
        i++; // backslash: skip the escaped character
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) inString = true;
    else if (char === 0x7b || char === 0x5b) {
      depth++;
      if (depth > deepest) deepest = depth;
      if (deepest > limit) return deepest;
    } else if (char === 0x7d || char === 0x5d) depth--;
  }
  return deepest;
}

/**
 * A JSON event body named by one field (`type`, Sendbird's `category`): the read event validated
 * by `schema`, or the name of an event that is not the read (answered OK and counted), or a 400
 * naming the field. The name is read first, so that another event is never judged by the read's schema.
 */
export function parseEvent<T extends z.ZodType>(
  text: string,
  nameField: string,
  readEvent: string,
  schema: T,
): Parsed<{ read: z.infer<T>; json: JsonObject } | { ignored: string }> {
  const json = parseJsonObject(text);
  if (!json.ok) return json;
  const named = z.looseObject({ [nameField]: z.string().min(1, "must not be empty").max(128) }).safeParse(json.value);
  if (!named.success) return invalidBody(named.error.issues);
  const name = named.data[nameField];
  if (name !== readEvent) return { ok: true, value: { ignored: typeof name === "string" ? name : "" } };
  const parsed = schema.safeParse(json.value);
  if (!parsed.success) return invalidBody(parsed.error.issues);
  return { ok: true, value: { read: parsed.data, json: json.value } };
}

/**
 * A signed time outside its window (Easemob's `timestamp`, `X-TalkJS-Timestamp`): older than
 * `maxAgeSeconds` (MAX_EVENT_AGE_SECONDS), or more than MAX_FUTURE_SKEW_MS ahead: 401, since a
 * captured signature must not be usable for longer (docs/design.md, "Time").
 */
export function outsideSignatureWindow(field: string, timestamp: number, maxAgeSeconds: number, now: number): Rejection | undefined {
  if (now - timestamp > maxAgeSeconds * 1000) {
    return { status: 401, code: "expired", message: `${field} is more than MAX_EVENT_AGE_SECONDS (${maxAgeSeconds} s) old` };
  }
  if (timestamp - now > MAX_FUTURE_SKEW_MS) {
    return { status: 401, code: "from_the_future", message: `${field} is more than ${MAX_FUTURE_SKEW_MS / 60_000} minutes in the future` };
  }
  return undefined;
}

/** JSON.parse of a body that must be a JSON object; reports failure instead of throwing. */
export function parseJsonObject(text: string): Parsed<JsonObject> {
  if (text.trim() === "") return reject(400, "empty_body", "the request body is empty; expected a JSON object");
  if (jsonDepth(text) > MAX_JSON_DEPTH) return reject(400, "too_deep", `the request body nests more than ${MAX_JSON_DEPTH} levels deep`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return reject(400, "invalid_json", "the request body is not valid JSON");
  }
  const object = JsonObject.safeParse(value);
  if (!object.success) return reject(400, "invalid_body", "the request body must be a JSON object");
  return { ok: true, value: object.data };
}

/** Turns a zod failure into a 400 that names the first offending field. */
export function describeIssue(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  const issue = issues[0];
  if (!issue) return "the body does not have the expected shape";
  const field = issue.path.map(String).join(".");
  return field ? `field ${field}: ${issue.message}` : issue.message;
}

/** 404 for a provider whose URL takes no path segments after its name. */
export function rejectExtraPath(raw: RawCallback): { ok: false; rejection: Rejection } | undefined {
  if (raw.path.length === 0) return undefined;
  return reject(404, "unknown_path", `no hook at this path: use ${raw.url.pathname.split("/").slice(0, 4).join("/")}`);
}

/** Text that can be encoded: no unpaired UTF-16 surrogate (which `\ud800` in JSON can produce). */
export const wellFormed = (text: string) => !/[\uD800-\uDFFF]/u.test(text);

/** A user, group or app id: the providers' own limits are 32 to 64 characters. */
export const Identifier = z.string().min(1).max(128, "must be at most 128 characters").refine(wellFormed, "must be valid Unicode (it holds a lone surrogate)");

/**
 * Parses a body that must be a JSON object and, where it names its own command in `field`, must
 * name the one the URL routed it by (a mismatch means a misrouted or tampered callback).
 */
export function parseCommandBody(text: string, field: string, command: string, where: string): Parsed<JsonObject> {
  const json = parseJsonObject(text);
  if (!json.ok) return json;
  const named = json.value[field];
  if (named !== undefined && named !== command) return reject(400, "command_mismatch", `field ${field}: differs from ${where}`);
  return json;
}

/** 400 for a body that failed its schema, naming the first offending field. */
export function invalidBody(issues: readonly { path: readonly PropertyKey[]; message: string }[]): { ok: false; rejection: Rejection } {
  return reject(400, "invalid_body", describeIssue(issues));
}

/** Identity hash for providers without a callback id: stable across identical callbacks. */
export async function identityId(provider: ProviderName, parts: readonly unknown[]): Promise<string> {
  return `${provider}:${(await sha256Hex(JSON.stringify(parts))).slice(0, 32)}`;
}

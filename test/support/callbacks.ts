/// <reference types="vite/client" />
/** Builds real, signed provider callbacks from the providers' sample bodies, and sends them. */
import { exports } from "cloudflare:workers";
import easemobChannelAck from "../fixtures/easemob-channel_ack.json";
import easemobGroupReadAck from "../fixtures/easemob-read_ack-group.json";
import easemobSingleReadAck from "../fixtures/easemob-read_ack-single.json";
import openimGroupRead from "../fixtures/openim-callbackAfterGroupMsgReadCommand.json";
import openimSingleRead from "../fixtures/openim-callbackAfterSingleMsgReadCommand.json";
import tencentMsgReadReceipt from "../fixtures/tencent-C2C.CallbackAfterMsgReadReceipt.json";
import tencentMsgReport from "../fixtures/tencent-C2C.CallbackAfterMsgReport.json";
import tencentGroupReadReceipt from "../fixtures/tencent-Group.CallbackAfterReadReceipt.json";
import { signEasemob } from "../../src/providers/easemob";
import { signTencent } from "../../src/providers/tencent";
import { z } from "zod";
import { Receipt } from "../../src/receipt";
import { testSettings } from "./settings";

export const samples = {
  easemob: { single: easemobSingleReadAck, group: easemobGroupReadAck, channel: easemobChannelAck },
  tencent: { report: tencentMsgReport, group: tencentGroupReadReceipt, receipt: tencentMsgReadReceipt },
  openim: { single: openimSingleRead, group: openimGroupRead },
};

export const EASEMOB_SECRETS = testSettings.EASEMOB_SECRET.split(",");
export const TENCENT_APP = "1400000001";
export const TENCENT_TOKEN = testSettings.TENCENT_TOKEN;
export const OPENIM_TOKEN = testSettings.OPENIM_TOKEN;
export const ADMIN_TOKEN = testSettings.ADMIN_TOKEN;

/** A deep copy with overrides, so tests never mutate the shared samples. */
export function copy<T extends object>(sample: T, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...structuredClone(sample), ...overrides };
}

/** Easemob body with a fresh timestamp and a real signature. */
export async function signedEasemob(
  body: Record<string, unknown>,
  { secret = EASEMOB_SECRETS[0]!, timestamp = Date.now() }: { secret?: string; timestamp?: number } = {},
): Promise<Record<string, unknown>> {
  const callId = String(body.callId);
  return { ...body, timestamp, security: await signEasemob(callId, secret, timestamp) };
}

export async function tencentPath(
  command: string,
  { sdkAppId = TENCENT_APP, token = TENCENT_TOKEN as string | null, requestTime = Math.floor(Date.now() / 1000), platform = "iOS" } = {},
): Promise<string> {
  const query = new URLSearchParams({ SdkAppid: sdkAppId, CallbackCommand: command, contenttype: "json", ClientIP: "127.0.0.1", OptPlatform: platform });
  if (token !== null) {
    query.set("RequestTime", String(requestTime));
    query.set("Sign", await signTencent(token, requestTime));
  }
  return `/v1/hooks/tencent?${query}`;
}

export const openimPath = (command: string, token: string = OPENIM_TOKEN) => `/v1/hooks/openim/${token}/${command}`;

/**
 * A fresh client address per request unless a test sets one: failed authentications are limited
 * per address (CF-Connecting-IP), and tests must not share one another's budget.
 */
function withClientAddress(defaults: Record<string, string>, given: HeadersInit | undefined): Headers {
  const headers = new Headers({ "cf-connecting-ip": `2001:db8::${crypto.randomUUID().slice(0, 4)}:${crypto.randomUUID().slice(0, 4)}`, ...defaults });
  for (const [name, value] of new Headers(given)) headers.set(name, value);
  return headers;
}

export function send(path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
  const { json, headers, ...rest } = init;
  const body = json === undefined ? rest.body : JSON.stringify(json);
  return exports.default.fetch(
    new Request(`http://relay.test${path}`, {
      method: "POST",
      ...rest,
      headers: withClientAddress({ "content-type": "application/json" }, headers),
      ...(body !== undefined ? { body } : {}),
    }),
  );
}

export function api(path: string, init: RequestInit = {}, token: string | null = ADMIN_TOKEN): Promise<Response> {
  return exports.default.fetch(
    new Request(`http://relay.test${path}`, {
      ...init,
      headers: withClientAddress(token ? { authorization: `Bearer ${token}` } : {}, init.headers),
    }),
  );
}

/** The receipts the relay keeps of a conversation, from its object (none for a conversation never seen). */
export async function receiptsIn(conversation: string): Promise<Receipt[]> {
  const listed = await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
  if (listed.status === 404) return [];
  if (listed.status !== 200) throw new Error(`GET …/receipts answered ${listed.status}`);
  return z.object({ receipts: z.array(Receipt) }).parse(await listed.json()).receipts;
}

/** A unique string per call, to keep tests' conversations apart. */
export function unique(prefix: string): string {
  return `${prefix}${crypto.randomUUID().slice(0, 8)}`;
}

// Stream Chat and Sendbird: their samples, and requests signed as each provider signs them.
import sendbirdMessageRead from "../fixtures/sendbird-group_channel-message_read.json";
import sendbirdMessageSend from "../fixtures/sendbird-group_channel-message_send.json";
import streamMessageNew from "../fixtures/stream-message.new.json";
import streamMessageRead from "../fixtures/stream-message.read.json";
import { signSendbird } from "../../src/providers/sendbird";
import { gzip, signStream } from "../../src/providers/stream";

export const streamSamples = { read: streamMessageRead, other: streamMessageNew };
export const sendbirdSamples = { read: sendbirdMessageRead, other: sendbirdMessageSend };
export const STREAM_SECRETS = testSettings.STREAM_API_SECRET.split(",");
export const STREAM_API_KEY = testSettings.STREAM_API_KEY;
export const SENDBIRD_TOKENS = testSettings.SENDBIRD_API_TOKEN.split(",");
export const SENDBIRD_APP = testSettings.SENDBIRD_APP_ID.split(",")[0]!;

const utf8Bytes = (text: string) => new TextEncoder().encode(text);

/** The gzip of a body, as Stream sends it when the app turns compression on (the provider's own, which its `sign` uses). */
export { gzip } from "../../src/providers/stream";

export interface StreamRequestOptions {
  secret?: string;
  /** null: no X-Api-Key header. */
  apiKey?: string | null;
  /** null: no X-Webhook-Id header. */
  webhookId?: string | null;
  attempt?: number;
  /** Send the body gzipped (signed over the uncompressed text, as Stream does). */
  compress?: boolean;
}

/** A Stream webhook request for this body text: signed over the text, gzipped on request. */
export async function streamRequest(
  text: string,
  { secret = STREAM_SECRETS[0]!, apiKey = STREAM_API_KEY, webhookId = crypto.randomUUID(), attempt = 1, compress = false }: StreamRequestOptions = {},
): Promise<{ headers: Record<string, string>; body: Uint8Array }> {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-signature": await signStream(secret, text),
    "x-webhook-attempt": String(attempt),
  };
  if (apiKey !== null) headers["x-api-key"] = apiKey;
  if (webhookId !== null) headers["x-webhook-id"] = webhookId;
  if (compress) headers["content-encoding"] = "gzip";
  return { headers, body: compress ? await gzip(text) : utf8Bytes(text) };
}

export async function sendStream(body: unknown, options: StreamRequestOptions = {}): Promise<Response> {
  const request = await streamRequest(typeof body === "string" ? body : JSON.stringify(body), options);
  return send("/v1/hooks/stream", { headers: request.headers, body: request.body });
}

/** A Sendbird webhook request: signed over the body text's bytes exactly as they are sent. */
export async function sendbirdHeaders(text: string, token: string = SENDBIRD_TOKENS[0]!): Promise<Record<string, string>> {
  return { "content-type": "application/json", "user-agent": "SendBird", "x-sendbird-signature": await signSendbird(token, text) };
}

export async function sendSendbird(body: unknown, token?: string): Promise<Response> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return send("/v1/hooks/sendbird", { headers: await sendbirdHeaders(text, token), body: text });
}

// TalkJS: its sample, and requests signed as TalkJS signs them.
import talkjsMessageRead from "../fixtures/talkjs-message.read.json";
import { signTalkjs } from "../../src/providers/talkjs";

/** Another TalkJS event (`message.sent`) is the read sample with another type: authentic, not a receipt. */
export const talkjsSamples = { read: talkjsMessageRead, other: { ...talkjsMessageRead, type: "message.sent" } };
export const TALKJS_SECRETS = testSettings.TALKJS_SECRET_KEY.split(",");
export const TALKJS_APP = testSettings.TALKJS_APP_ID.split(",")[0]!;

/** A TalkJS webhook request's headers: `<timestamp>.<body text>` signed, upper-case hex; the timestamp in milliseconds. */
export async function talkjsHeaders(text: string, { secret = TALKJS_SECRETS[0]!, timestamp = Date.now() } = {}): Promise<Record<string, string>> {
  return {
    "content-type": "application/json",
    "x-talkjs-timestamp": String(timestamp),
    "x-talkjs-signature": await signTalkjs(secret, timestamp, text),
  };
}

export async function sendTalkjs(body: unknown, options: { secret?: string; timestamp?: number; app?: string | null } = {}): Promise<Response> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const app = options.app === undefined ? TALKJS_APP : options.app;
  return send(`/v1/hooks/talkjs${app === null ? "" : `/${encodeURIComponent(app)}`}`, { headers: await talkjsHeaders(text, options), body: text });
}

// Meta (WhatsApp, Messenger, Instagram): their samples, and requests signed as Meta signs them.
import instagramMessages from "../fixtures/instagram-messages.json";
import instagramMessagingSeen from "../fixtures/instagram-messaging_seen.json";
import messengerMessageDeliveries from "../fixtures/messenger-message_deliveries.json";
import messengerMessageReads from "../fixtures/messenger-message_reads.json";
import whatsappMessagesText from "../fixtures/whatsapp-messages-text.json";
import whatsappStatusesRead from "../fixtures/whatsapp-statuses-read.json";
import { signMeta } from "../../src/providers/meta";

export const metaSamples = {
  whatsapp: { read: whatsappStatusesRead, other: whatsappMessagesText },
  messenger: { read: messengerMessageReads, other: messengerMessageDeliveries },
  instagram: { read: instagramMessagingSeen, other: instagramMessages },
};
export const META_SECRETS = testSettings.META_APP_SECRET.split(",");
export const META_VERIFY_TOKENS = testSettings.META_VERIFY_TOKEN.split(",");
export const WHATSAPP_PHONE_NUMBER_ID = testSettings.WHATSAPP_PHONE_NUMBER_IDS.split(",")[0]!;
export const MESSENGER_PAGE_ID = testSettings.MESSENGER_PAGE_IDS;
export const INSTAGRAM_ACCOUNT_ID = testSettings.INSTAGRAM_ACCOUNT_IDS;

/** A Meta webhook request: `X-Hub-Signature-256` over the body text's bytes exactly as sent. */
export async function metaHeaders(text: string, secret: string = META_SECRETS[0]!): Promise<Record<string, string>> {
  return { "content-type": "application/json", "user-agent": "facebookexternalua", "x-hub-signature-256": await signMeta(secret, text) };
}

export async function sendMeta(provider: "whatsapp" | "messenger" | "instagram", body: unknown, secret?: string): Promise<Response> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return send(`/v1/hooks/${provider}`, { headers: await metaHeaders(text, secret), body: text });
}

/** A WhatsApp status in the sample's shape: `read` by `recipient` now, unless told otherwise. */
export function whatsappStatus(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const [status] = whatsappStatusesRead.entry[0]!.changes[0]!.value.statuses;
  return { ...status, id: `wamid.${unique("")}`, timestamp: String(Math.floor(Date.now() / 1000)), ...overrides };
}

/** A WhatsApp statuses webhook body with these statuses, for one business phone number. */
export function whatsappBody(statuses: unknown[], phoneNumberId: string = WHATSAPP_PHONE_NUMBER_ID): Record<string, unknown> {
  const sample = structuredClone(whatsappStatusesRead);
  const change = sample.entry[0]!.changes[0]!;
  return {
    ...sample,
    entry: [
      {
        ...sample.entry[0],
        changes: [{ ...change, value: { ...change.value, metadata: { ...change.value.metadata, phone_number_id: phoneNumberId }, statuses } }],
      },
    ],
  };
}

/** A Messenger or Instagram body with these messaging events. */
export function messagingBody(provider: "messenger" | "instagram", events: unknown[]): Record<string, unknown> {
  const sample = structuredClone(metaSamples[provider].read);
  return { ...sample, entry: [{ ...sample.entry[0], time: Date.now(), messaging: events }] };
}

// Every registered provider (src/providers/index.ts): its samples' fixtures, its config under the
// test settings, and fresh callbacks signed by its own members (`fresh`, `sign`).
import { registry } from "../../src/providers";
import type { RegisteredProvider, SampleSeed, SignedCallback } from "../../src/providers/provider";
import { JsonObject } from "../../src/receipt";
import { parseGroup } from "../../src/settings";

/** Every fixture by name (`test/fixtures/<name>.json`), as the registry's samples name them. */
export const fixtures: ReadonlyMap<string, JsonObject> = new Map(
  Object.entries(import.meta.glob("../fixtures/*.json", { eager: true, import: "default" })).map(([file, json]) => [
    file.replace(/^.*\/(.+)\.json$/, "$1"),
    JsonObject.parse(json),
  ]),
);

export type AnyProvider = RegisteredProvider<unknown, unknown>;

/** A registered provider by name. */
export function registered(name: string): AnyProvider {
  const provider = registry.find((candidate) => candidate.name === name);
  if (!provider) throw new Error(`no provider "${name}" in the registry (src/providers/index.ts)`);
  return provider;
}

/** What a provider's own `configure` makes of these settings; throws unless they enable it. */
export function configUnder(provider: AnyProvider, settings: Record<string, string> = testSettings): unknown {
  const parsed = parseGroup(provider.settings, settings);
  if (!parsed.values) throw new Error(`${provider.name}: ${parsed.problems.map((problem) => `${problem.setting} ${problem.problem}`).join("; ")}`);
  const configured = provider.configure(parsed.values);
  if (configured.state !== "enabled") throw new Error(`${provider.name} is ${configured.state} under these settings`);
  return configured.config;
}

let lastMessage = Date.now() * 1000;
/** A seed of conversations no other test uses, and a message never sent before. */
export const freshSeed = (overrides: Partial<SampleSeed> = {}): SampleSeed => ({
  conversation: unique("c"),
  reader: unique("r"),
  message: ++lastMessage,
  now: Date.now(),
  ...overrides,
});

/** A provider's sample (0: its plainest read receipt) made fresh and signed by its own members under `settings`. */
export async function signedSample(
  provider: AnyProvider,
  sampleIndex = 0,
  seed: SampleSeed = freshSeed(),
  settings: Record<string, string> = testSettings,
): Promise<SignedCallback> {
  const sample = provider.samples[sampleIndex];
  if (!sample) throw new Error(`${provider.name} has no sample ${sampleIndex}`);
  const fixture = fixtures.get(sample.fixture);
  if (!fixture) throw new Error(`${provider.name}: no fixture test/fixtures/${sample.fixture}.json`);
  return provider.sign(provider.fresh(structuredClone(fixture), sample, seed), sample, configUnder(provider, settings), seed.now);
}

/** Sends a signed callback through the worker (from a client address of its own, see `send`). */
export const sendCallback = (callback: SignedCallback): Promise<Response> => send(callback.path, { headers: callback.headers, body: callback.body });

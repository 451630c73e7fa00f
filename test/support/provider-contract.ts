/**
 * One adapter per registered provider, for the contract suite (test/providers/contract.test.ts):
 * how to make a live signed read receipt and its variants from the provider's own samples, and
 * how to read the provider's answer shape back. A provider without an entry fails the suite.
 */
import { z } from "zod";
import type { IngestDeps } from "../../src/ingest";
import type { RawCallback, SignedCallback } from "../../src/providers/provider";
import { groupConversationKey, singleConversationKey, type ProviderName, type Receipt, JsonObject } from "../../src/receipt";
import {
  type AnyProvider,
  copy,
  EASEMOB_SECRETS,
  openimPath,
  samples,
  send,
  SENDBIRD_APP,
  sendbirdHeaders,
  sendbirdSamples,
  signedEasemob,
  STREAM_API_KEY,
  streamRequest,
  streamSamples,
  TALKJS_APP,
  talkjsHeaders,
  talkjsSamples,
  TENCENT_APP,
  tencentPath,
  unique,
} from "./callbacks";
import {
  INSTAGRAM_ACCOUNT_ID,
  MESSENGER_PAGE_ID,
  metaHeaders,
  messagingBody,
  metaSamples,
  WHATSAPP_PHONE_NUMBER_ID,
  whatsappBody,
  whatsappStatus,
} from "./callbacks";

/** A request as the provider would send it. */
export interface Signed {
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** A live read receipt in a conversation of its own. */
export interface Live {
  body: Record<string, unknown>;
  signed: Signed;
  conversation: string;
}

/** An answer read back from the provider's own shape; `result` only where the shape says it. */
export type ReadAnswer = { ok: true; result?: string } | { ok: false; code: string; message: string };

type Body = Record<string, unknown>;

export interface ContractAdapter {
  receipt(): Promise<Live>;
  /** Signs a body as the provider does; `forged`: with a secret or token the relay does not hold. */
  sign(body: Body, options?: { forged?: boolean }): Promise<Signed>;
  /** An authentic event that is not a read receipt. */
  other(): Promise<Signed>;
  forged: { status: 401 | 403; code: string };
  /** A signed receipt made malformed, and the field its 400 names. */
  malformed: { field: string; edit(body: Body): Body };
  /** A lone surrogate put into an id, and the field its 400 names (absent where every id is an item's: see `invalidItem`). */
  loneSurrogate?: { field: string; edit(body: Body): Body };
  /**
   * A batch provider (Meta): a batch holding one valid receipt and one item made invalid (with a
   * lone surrogate in an id), and the field that names it. The item is skipped, the rest stored.
   */
  invalidItem?: { field: string; edit(body: Body): Body };
  /** Reads the provider's answer; throws (zod) when the body is not in the provider's shape. */
  read(status: number, json: unknown): ReadAnswer;
  /** The setting that enables the provider, and environments whose settings are wrong, with the setting each refusal names. */
  settings: { required: string; misconfigured: { env: Record<string, string>; names: string }[] };
}

const LONE = "\ud800";

/** `{ status: "ok" | "error", ... }`: Easemob, Stream and Sendbird answer alike. */
function readPlain(status: number, json: unknown): ReadAnswer {
  if (status === 200) return { ok: true, result: z.strictObject({ status: z.literal("ok"), result: z.string() }).parse(json).result };
  const { code, message } = z.strictObject({ status: z.literal("error"), code: z.string(), message: z.string() }).parse(json);
  return { ok: false, code, message };
}

const without = (body: Body, field: string): Body => {
  const { [field]: _dropped, ...rest } = body;
  return rest;
};
const objectOf = (value: unknown): Body => JsonObject.catch({}).parse(value);
const arrayOf = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
/** Each `entry[].changes[].value` of a WhatsApp body changed by `change`. */
const mapChanges = (body: Body, change: (value: Body) => Body): Body => ({
  ...body,
  entry: arrayOf(body.entry).map((entry) => ({
    ...objectOf(entry),
    changes: arrayOf(objectOf(entry).changes).map((item) => ({ ...objectOf(item), value: change(objectOf(objectOf(item).value)) })),
  })),
});

const easemob: ContractAdapter = {
  async receipt() {
    const group = unique("g");
    const body = copy(samples.easemob.group, { callId: `XXXX#XXXX_${unique("")}`, to: group, timestamp: Date.now() });
    return { body, signed: await this.sign(body), conversation: groupConversationKey("easemob", String(body.appkey), group) };
  },
  async sign(body, { forged = false } = {}) {
    // The signature covers callId and timestamp only: keep the body's timestamp so that a re-sign is the same bytes.
    const timestamp = typeof body.timestamp === "number" ? body.timestamp : Date.now();
    const signed = await signedEasemob(body, { secret: forged ? "not-the-secret" : EASEMOB_SECRETS[0], timestamp });
    return { path: "/v1/hooks/easemob", headers: { "content-type": "application/json" }, body: JSON.stringify(signed) };
  },
  async other() {
    return this.sign(copy(samples.easemob.single, { callId: `XXXX#XXXX_${unique("")}`, chat_type: "delivery_ack", timestamp: Date.now() }));
  },
  forged: { status: 401, code: "bad_signature" },
  malformed: { field: "from", edit: (body) => without(body, "from") },
  loneSurrogate: { field: "from", edit: (body) => ({ ...body, from: LONE }) },
  read: readPlain,
  settings: {
    required: "EASEMOB_SECRET",
    misconfigured: [
      { env: { EASEMOB_SECRET: "sekrit-one,,sekrit-two" }, names: "EASEMOB_SECRET" },
      { env: { EASEMOB_SECRET: "sekrit", MAX_EVENT_AGE_SECONDS: "ten" }, names: "MAX_EVENT_AGE_SECONDS" },
    ],
  },
};

const tencent: ContractAdapter = {
  async receipt() {
    const group = unique("@TGS#");
    const body = copy(samples.tencent.group, { GroupId: group, EventTime: String(Date.now()) });
    return { body, signed: await this.sign(body), conversation: groupConversationKey("tencent", TENCENT_APP, group) };
  },
  async sign(body, { forged = false } = {}) {
    const command = z.string().parse(body.CallbackCommand);
    const path = forged ? await tencentPath(command, { token: "not-the-token" }) : await tencentPath(command);
    return { path, headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  },
  async other() {
    return this.sign({ CallbackCommand: "C2C.CallbackAfterSendMsg" });
  },
  forged: { status: 401, code: "bad_signature" },
  malformed: { field: "GroupId", edit: (body) => without(body, "GroupId") },
  loneSurrogate: { field: "GroupId", edit: (body) => ({ ...body, GroupId: LONE }) },
  read(status, json) {
    if (status === 200) {
      z.strictObject({ ActionStatus: z.literal("OK"), ErrorInfo: z.literal(""), ErrorCode: z.literal(0) }).parse(json);
      return { ok: true };
    }
    const { ErrorInfo } = z.strictObject({ ActionStatus: z.literal("FAIL"), ErrorInfo: z.string(), ErrorCode: z.literal(1) }).parse(json);
    const at = ErrorInfo.indexOf(": ");
    return { ok: false, code: ErrorInfo.slice(0, at), message: ErrorInfo.slice(at + 2) };
  },
  settings: {
    required: "TENCENT_SDKAPPID",
    misconfigured: [
      { env: { TENCENT_TOKEN: "sekrit-token" }, names: "TENCENT_SDKAPPID" },
      { env: { TENCENT_SDKAPPID: "abc-sekrit" }, names: "TENCENT_SDKAPPID" },
    ],
  },
};

const OPENIM_SINGLE = "callbackAfterSingleMsgReadCommand";
const openim: ContractAdapter = {
  async receipt() {
    const reader = unique("reader");
    const peer = unique("peer");
    const body = copy(samples.openim.single, { conversationID: `si_${reader}_${peer}`, userID: reader });
    return { body, signed: await this.sign(body), conversation: singleConversationKey("openim", "openim", reader, peer) };
  },
  // OpenIM signs nothing: the token in the path is its authentication; operationID tells reads apart.
  async sign(body, { forged = false } = {}) {
    const command = typeof body.callbackCommand === "string" ? body.callbackCommand : OPENIM_SINGLE;
    const path = forged ? openimPath(command, "not-the-token-0123456789") : openimPath(command);
    return { path, headers: { "content-type": "application/json", operationID: unique("op-") }, body: JSON.stringify(body) };
  },
  async other() {
    return this.sign({ callbackCommand: "callbackAfterSendSingleMsgCommand" });
  },
  forged: { status: 401, code: "bad_token" },
  malformed: { field: "Seqs", edit: (body) => without(body, "Seqs") },
  loneSurrogate: { field: "userID", edit: (body) => ({ ...body, userID: LONE }) },
  read(status, json) {
    if (status === 200) {
      z.strictObject({ actionCode: z.literal(0), errCode: z.literal(0), errMsg: z.literal(""), errDlt: z.literal(""), nextCode: z.literal(0) }).parse(json);
      return { ok: true };
    }
    const answer = z.strictObject({
      actionCode: z.literal(1),
      errCode: z.literal(20000 + status),
      errMsg: z.string(),
      errDlt: z.string(),
      nextCode: z.literal(0),
    });
    const { errMsg, errDlt } = answer.parse(json);
    return { ok: false, code: errMsg, message: errDlt };
  },
  settings: {
    required: "OPENIM_TOKEN",
    misconfigured: [
      { env: { OPENIM_TOKEN: "short" }, names: "OPENIM_TOKEN" },
      { env: { OPENIM_TOKEN: "sekrit-token/with/slashes" }, names: "OPENIM_TOKEN" },
    ],
  },
};

const stream: ContractAdapter = {
  async receipt() {
    const cid = `messaging:${unique("ch-")}`;
    // Live: the sample's own created_at (2020) is long past the dedup window.
    const body = copy(streamSamples.read, {
      cid,
      channel_id: undefined,
      channel_type: undefined,
      created_at: new Date().toISOString(),
      user: { ...streamSamples.read.user, id: unique("reader-") },
    });
    return { body, signed: await this.sign(body), conversation: groupConversationKey("stream", STREAM_API_KEY, cid) };
  },
  async sign(body, { forged = false } = {}) {
    const { headers, body: bytes } = await streamRequest(JSON.stringify(body), forged ? { secret: "not-the-secret" } : {});
    return { path: "/v1/hooks/stream", headers, body: new TextDecoder().decode(bytes) };
  },
  async other() {
    return this.sign(copy(streamSamples.other));
  },
  forged: { status: 401, code: "bad_signature" },
  malformed: { field: "created_at", edit: (body) => without(body, "created_at") },
  loneSurrogate: { field: "user.id", edit: (body) => ({ ...body, user: { ...streamSamples.read.user, id: LONE } }) },
  read: readPlain,
  settings: {
    required: "STREAM_API_SECRET",
    misconfigured: [
      // A key without a secret: a half-done setup says so rather than being merely off.
      { env: { STREAM_API_KEY: "k" }, names: "STREAM_API_SECRET" },
      { env: { STREAM_API_SECRET: "sekrit-one,,sekrit-two" }, names: "STREAM_API_SECRET" },
    ],
  },
};

const sendbird: ContractAdapter = {
  async receipt() {
    const channelUrl = unique("room-");
    // Live: the sample's own read_ts (2018) is long past the dedup window.
    const body = copy(sendbirdSamples.read, {
      channel: { ...sendbirdSamples.read.channel, channel_url: channelUrl },
      read_updates: [{ ...sendbirdSamples.read.read_updates[0], read_ts: Date.now() }],
    });
    return { body, signed: await this.sign(body), conversation: groupConversationKey("sendbird", SENDBIRD_APP, channelUrl) };
  },
  async sign(body, { forged = false } = {}) {
    const text = JSON.stringify(body);
    return { path: "/v1/hooks/sendbird", headers: await sendbirdHeaders(text, forged ? "not-the-token" : undefined), body: text };
  },
  async other() {
    return this.sign(copy(sendbirdSamples.other));
  },
  forged: { status: 401, code: "bad_signature" },
  malformed: { field: "read_updates", edit: (body) => without(body, "read_updates") },
  loneSurrogate: {
    field: "read_updates.0.user_id",
    edit: (body) => ({ ...body, read_updates: [{ ...sendbirdSamples.read.read_updates[0], read_ts: Date.now(), user_id: LONE }] }),
  },
  read: readPlain,
  settings: {
    required: "SENDBIRD_API_TOKEN",
    misconfigured: [
      { env: { SENDBIRD_APP_ID: SENDBIRD_APP }, names: "SENDBIRD_API_TOKEN" },
      { env: { SENDBIRD_API_TOKEN: "sekrit-one,,sekrit-two" }, names: "SENDBIRD_API_TOKEN" },
    ],
  },
};

const talkjs: ContractAdapter = {
  async receipt() {
    const conversationId = unique("conv-");
    // Live: the sample's own createdAt (2019) is long past the dedup window.
    const body = copy(talkjsSamples.read, {
      id: `evt_${unique("")}`,
      createdAt: Date.now(),
      data: {
        ...talkjsSamples.read.data,
        conversation: { ...talkjsSamples.read.data.conversation, id: conversationId },
        message: { ...talkjsSamples.read.data.message, conversationId },
      },
    });
    return { body, signed: await this.sign(body), conversation: groupConversationKey("talkjs", TALKJS_APP, conversationId) };
  },
  async sign(body, { forged = false } = {}) {
    const text = JSON.stringify(body);
    // The same timestamp for the same body: a re-send is the same request, as TalkJS's retry would be.
    const timestamp = typeof body.createdAt === "number" ? body.createdAt : Date.now();
    return {
      path: `/v1/hooks/talkjs/${encodeURIComponent(TALKJS_APP)}`,
      headers: await talkjsHeaders(text, { timestamp, ...(forged ? { secret: "not-the-secret" } : {}) }),
      body: text,
    };
  },
  async other() {
    return this.sign(copy(talkjsSamples.other, { createdAt: Date.now() }));
  },
  forged: { status: 401, code: "bad_signature" },
  malformed: { field: "data", edit: (body) => without(body, "data") },
  loneSurrogate: {
    field: "data.recipient.id",
    edit: (body) => ({ ...body, data: { ...talkjsSamples.read.data, recipient: { ...talkjsSamples.read.data.recipient, id: LONE } } }),
  },
  read: readPlain,
  settings: {
    required: "TALKJS_SECRET_KEY",
    misconfigured: [
      { env: { TALKJS_APP_ID: TALKJS_APP }, names: "TALKJS_SECRET_KEY" },
      { env: { TALKJS_SECRET_KEY: "sekrit-one,,sekrit-two" }, names: "TALKJS_SECRET_KEY" },
    ],
  },
};

/** By provider name; the suite also fails at run time for a registered provider missing here. */
/** Meta's three products: signed alike (X-Hub-Signature-256 over the raw body), answered alike. */
function metaSign(provider: "whatsapp" | "messenger" | "instagram") {
  return async (body: Body, { forged = false } = {}): Promise<Signed> => {
    const text = JSON.stringify(body);
    return { path: `/v1/hooks/${provider}`, headers: await metaHeaders(text, forged ? "not-the-app-secret" : undefined), body: text };
  };
}
const META_SETTINGS = (allowSetting: string): ContractAdapter["settings"] => ({
  required: "META_APP_SECRET",
  misconfigured: [
    { env: { META_VERIFY_TOKEN: "sekrit-token" }, names: "META_APP_SECRET" },
    { env: { META_APP_SECRET: "sekrit-one" }, names: "META_VERIFY_TOKEN" },
    { env: { META_APP_SECRET: "sekrit-one,,sekrit-two", META_VERIFY_TOKEN: "t" }, names: "META_APP_SECRET" },
    { env: { META_APP_SECRET: "sekrit-one", META_VERIFY_TOKEN: "t", [allowSetting]: "a,,b" }, names: allowSetting },
  ],
});

const whatsapp: ContractAdapter = {
  async receipt() {
    const user = unique("1650555");
    const body = whatsappBody([whatsappStatus({ recipient_id: user })]);
    return {
      body,
      signed: await this.sign(body),
      conversation: singleConversationKey("whatsapp", WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_PHONE_NUMBER_ID, user),
    };
  },
  sign: metaSign("whatsapp"),
  async other() {
    return this.sign(structuredClone(metaSamples.whatsapp.other));
  },
  forged: { status: 401, code: "bad_signature" },
  malformed: {
    field: "entry.0.changes.0.value.metadata",
    edit: (body) => mapChanges(body, (value) => without(value, "metadata")),
  },
  loneSurrogate: { field: "entry.0.id", edit: (body) => ({ ...body, entry: arrayOf(body.entry).map((entry) => ({ ...objectOf(entry), id: LONE })) }) },
  invalidItem: {
    field: "entry.0.changes.0.value.statuses.1.recipient_id",
    edit: (body) => mapChanges(body, (value) => ({ ...value, statuses: [...arrayOf(value.statuses), whatsappStatus({ recipient_id: LONE })] })),
  },
  read: readPlain,
  settings: META_SETTINGS("WHATSAPP_PHONE_NUMBER_IDS"),
};

/** A Messenger or Instagram read event by a fresh user, now. */
function messagingAdapter(provider: "messenger" | "instagram", account: string): ContractAdapter {
  const readOf = (): Record<string, unknown> => (provider === "messenger" ? { watermark: Date.now() - 1000 } : { mid: `mid.${unique("")}` });
  const event = (sender: unknown) => ({ sender: { id: sender }, recipient: { id: account }, timestamp: Date.now(), read: readOf() });
  return {
    async receipt() {
      const user = unique("65432");
      const body = messagingBody(provider, [event(user)]);
      return { body, signed: await this.sign(body), conversation: singleConversationKey(provider, account, account, user) };
    },
    sign: metaSign(provider),
    async other() {
      return this.sign(structuredClone(metaSamples[provider].other));
    },
    forged: { status: 401, code: "bad_signature" },
    malformed: {
      field: "entry.0.messaging",
      edit: (body) => ({ ...body, entry: arrayOf(body.entry).map((entry) => ({ ...objectOf(entry), messaging: "none" })) }),
    },
    invalidItem: {
      field: "entry.0.messaging.1.sender.id",
      edit: (body) => ({
        ...body,
        entry: arrayOf(body.entry).map((entry) => ({ ...objectOf(entry), messaging: [...arrayOf(objectOf(entry).messaging), event(LONE)] })),
      }),
    },
    read: readPlain,
    settings: META_SETTINGS(provider === "messenger" ? "MESSENGER_PAGE_IDS" : "INSTAGRAM_ACCOUNT_IDS"),
  };
}
const messenger = messagingAdapter("messenger", MESSENGER_PAGE_ID);
const instagram = messagingAdapter("instagram", INSTAGRAM_ACCOUNT_ID);

const adapters = { easemob, tencent, openim, stream, sendbird, talkjs, whatsapp, messenger, instagram } satisfies Record<ProviderName, ContractAdapter>;
export const contractAdapters: ReadonlyMap<string, ContractAdapter> = new Map(Object.entries(adapters));

/** Sends a request through the worker (each from a client address of its own, see `send`). */
export const sendSigned = (signed: Signed, init: RequestInit = {}): Promise<Response> =>
  send(signed.path, { headers: signed.headers, body: signed.body, ...init });

/** The same request as the router hands it to the pipeline. */
export function rawOf(signed: Signed | SignedCallback): RawCallback {
  const url = new URL(`https://relay.test${signed.path}`);
  const path = url.pathname.split("/").slice(4).map(decodeURIComponent);
  const bytes = typeof signed.body === "string" ? new TextEncoder().encode(signed.body) : signed.body;
  return { url, path, body: new TextDecoder().decode(bytes), bytes, headers: new Headers(signed.headers) };
}

/** The receipts the provider's own parse and normalize make of a callback (a batch makes several): what the relay must store. */
export async function receiptsOf(provider: AnyProvider, callback: SignedCallback): Promise<Receipt[]> {
  const parsed = provider.parse(rawOf(callback));
  if (!parsed.ok) throw new Error(`${provider.name}: ${parsed.rejection.code}`);
  const normalized = await provider.normalize(parsed.value, { receivedAt: new Date().toISOString() });
  if (!normalized.ok) throw new Error(`${provider.name}: ${normalized.rejection.code}`);
  const made = normalized.value;
  if (made.kind === "ignored") return [];
  return made.kind === "receipts" ? made.receipts.map((item) => item.receipt) : [made.receipt];
}

/**
 * The settings with every secret (a name with SECRET or TOKEN, as scripts/check-config.mjs judges
 * them) replaced by one of the same shape that the relay does not hold.
 */
export const withWrongSecrets = (settings: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(settings).map(([name, value]) => [name, /SECRET|TOKEN/.test(name) ? `not-${value.split(",")[0]}` : value]));

/** Pipeline deps that keep what would be stored, and take every claim. */
export function recordingDeps(env: object): IngestDeps & { stored: Receipt[] } {
  const stored: Receipt[] = [];
  return {
    env,
    now: Date.now(),
    stored,
    store: async (receipt) => {
      stored.push(receipt);
      return "accepted";
    },
    claim: async () => "claimed",
    countAuthFailure: async () => ({ limited: false }),
  };
}

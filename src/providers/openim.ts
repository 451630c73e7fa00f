/**
 * OpenIM (open-im-server): `callbackAfterSingleMsgReadCommand`, `callbackAfterGroupMsgReadCommand`.
 * OpenIM signs nothing, so the webhook base URL carries a secret path segment:
 * `/v1/hooks/openim/<OPENIM_TOKEN>/<command>`. Facts and sources: docs/providers/openim.md.
 */
import { z } from "zod";
import { timingSafeEqual } from "../crypto/timing-safe";
import { readerConversationKey, singleConversationKey, type Receipt } from "../receipt";
import { optional } from "../settings";
import {
  Identifier,
  identityId,
  invalidBody,
  JSON_CONTENT,
  parseCommandBody,
  requestIdOf,
  reject,
  wellFormed,
  type Answer,
  type Normalized,
  type Outcome,
  type Parsed,
  type RegisteredProvider,
} from "./provider";

/** OpenIM has no app key; every OpenIM receipt carries this one. */
const OPENIM_APP = "openim";

interface Envelope {
  token?: string;
  command?: string;
  /** Path segments beyond `<token>/<command>`: OpenIM never sends any. */
  extra: number;
  /** OpenIM's per-operation trace id header: what tells two otherwise identical reads apart. */
  operationId?: string;
  body: string;
}

const Settings = z.object({
  /** The secret path segment of OpenIM's callback URL. */
  OPENIM_TOKEN: optional(
    z
      .string()
      .trim()
      .min(16, "must be at least 16 characters")
      .regex(/^[A-Za-z0-9._~-]+$/, "may hold only letters, digits and . _ ~ - (it is a URL path segment)"),
  ),
});

export interface OpenimConfig {
  token: string;
}

const UserId = Identifier;
const Seq = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const SingleRead = z
  .object({
    conversationID: z
      .string()
      .max(300)
      .regex(/^si_.+_.+$/, "must look like si_<userA>_<userB>")
      .refine(wellFormed, "must be valid Unicode (it holds a lone surrogate)"),
    userID: UserId,
    // The server sends `Seqs`; older builds and the docs say `seqs`.
    Seqs: z.array(Seq).optional(),
    seqs: z.array(Seq).optional(),
    contentType: z.number().int().optional(),
  })
  .refine((body) => body.Seqs !== undefined || body.seqs !== undefined, { path: ["Seqs"], message: "is required (or seqs)" });

const GroupRead = z.object({
  sendID: UserId,
  receiveID: UserId.optional(),
  // Named unread, but the server puts the reader's has-read seq here (as_read.go).
  unreadMsgNum: Seq,
  contentType: z.number().int().optional(),
});

const SINGLE = "callbackAfterSingleMsgReadCommand";
const GROUP = "callbackAfterGroupMsgReadCommand";

/**
 * OpenIM never retries, so its ids need not match across deliveries; they must not collide. The
 * group read names no group, so two groups' reads at the same seq would look alike: the request's
 * operationID tells them apart, and without one a fresh nonce does.
 */
function operationOf(envelope: Envelope): string {
  return envelope.operationId ?? `nonce:${crypto.randomUUID()}`;
}

/** `si_<a>_<b>` (old docs add `:0`); user ids may hold `_`, so the reader's own id anchors the split. */
function peerOf(conversationID: string, reader: string): string | undefined {
  const pair = conversationID.replace(/:\d+$/, "").slice("si_".length);
  if (pair.startsWith(`${reader}_`)) return pair.slice(reader.length + 1) || undefined;
  if (pair.endsWith(`_${reader}`)) return pair.slice(0, -(reader.length + 1)) || undefined;
  return undefined;
}

/** The command a sample body names: the URL's last segment. */
const SampleCommand = z.looseObject({ callbackCommand: z.string() });

export const openim: RegisteredProvider<OpenimConfig, Envelope, typeof Settings> = {
  name: "openim",
  console: { path: "/v1/hooks/openim/<OPENIM_TOKEN>", note: "in config/webhooks.yml; put the token in place of <OPENIM_TOKEN>" },
  settings: Settings,
  samples: [
    { label: SINGLE, fixture: `openim-${SINGLE}` },
    { label: GROUP, fixture: `openim-${GROUP}` },
  ],

  fresh(body, _sample, { conversation, reader, message }) {
    if (body.callbackCommand === GROUP) {
      // The group read names no group: its conversation is the reader's (see normalize).
      return { ...body, sendID: reader, receiveID: reader, unreadMsgNum: message };
    }
    return { ...body, conversationID: `si_${reader}_${conversation}`, userID: reader, Seqs: [message] };
  },

  async sign(body, _sample, config) {
    // OpenIM signs nothing: the token is the URL's secret segment. The same body keeps its operationID.
    const text = JSON.stringify(body);
    const command = SampleCommand.parse(body).callbackCommand;
    return {
      path: `/v1/hooks/openim/${encodeURIComponent(config.token)}/${encodeURIComponent(command)}`,
      headers: { ...JSON_CONTENT, operationID: `op-${await requestIdOf(text)}` },
      body: text,
    };
  },

  configure(settings) {
    if (!settings.OPENIM_TOKEN) return { state: "disabled", missing: "OPENIM_TOKEN" };
    return { state: "enabled", config: { token: settings.OPENIM_TOKEN } };
  },

  parse(raw) {
    const [token, command, ...extra] = raw.path;
    const operationId = raw.headers.get("operationID")?.slice(0, 128) || undefined;
    return { ok: true, value: { token, command, extra: extra.length, operationId, body: raw.body } };
  },

  async verify(envelope, config) {
    if (!envelope.token) {
      return { status: 401, code: "missing_token", message: "the URL has no token: OpenIM's webhook URL is /v1/hooks/openim/<OPENIM_TOKEN>" };
    }
    if (!(await timingSafeEqual(envelope.token, config.token))) {
      return { status: 401, code: "bad_token", message: "the token in the URL does not match OPENIM_TOKEN" };
    }
    return undefined;
  },

  async normalize(envelope, { receivedAt }): Promise<Parsed<Normalized>> {
    const command = envelope.command;
    if (!command || envelope.extra > 0) {
      return reject(404, "unknown_path", "expected /v1/hooks/openim/<OPENIM_TOKEN>/<callbackCommand>");
    }
    if (command !== SINGLE && command !== GROUP) return { ok: true, value: { kind: "ignored", event: command } };
    const json = parseCommandBody(envelope.body, "callbackCommand", command, "the command in the URL");
    if (!json.ok) return json;
    const base = { provider: "openim" as const, event: command, app: OPENIM_APP, readAt: receivedAt, receivedAt, raw: json.value };
    let receipt: Receipt;

    if (command === SINGLE) {
      const parsed = SingleRead.safeParse(json.value);
      if (!parsed.success) return invalidBody(parsed.error.issues);
      const body = parsed.data;
      const peer = peerOf(body.conversationID, body.userID);
      if (!peer) return reject(400, "invalid_body", "field conversationID: does not name userID as one of its two users");
      const seqs = [...new Set(body.Seqs ?? body.seqs ?? [])].sort((a, b) => a - b);
      receipt = {
        ...base,
        id: await identityId("openim", [command, operationOf(envelope), body.conversationID.replace(/:\d+$/, ""), body.userID, seqs]),
        chat: "single",
        conversation: singleConversationKey("openim", OPENIM_APP, body.userID, peer),
        readers: [body.userID],
        peer,
        messages: seqs.map((seq) => ({ seq })),
      };
    } else {
      const parsed = GroupRead.safeParse(json.value);
      if (!parsed.success) return invalidBody(parsed.error.issues);
      const body = parsed.data;
      receipt = {
        ...base,
        id: await identityId("openim", [command, operationOf(envelope), body.sendID, body.receiveID, body.unreadMsgNum]),
        chat: "group",
        // OpenIM does not say which group: one stream per reader keeps that reader's reads in order.
        conversation: readerConversationKey("openim", OPENIM_APP, body.sendID),
        readers: [body.sendID],
        messages: [],
        upTo: { seq: body.unreadMsgNum },
      };
    }
    // OpenIM sends no time (and signs nothing): nothing to age.
    return { ok: true, value: { kind: "receipt", receipt, eventTime: null } };
  },

  answer(outcome: Outcome): Answer {
    if (outcome.ok) return { status: 200, body: { actionCode: 0, errCode: 0, errMsg: "", errDlt: "", nextCode: 0 } };
    // OpenIM's custom error codes live in 20001..29999; the HTTP status is ours.
    return { status: outcome.status, body: { actionCode: 1, errCode: 20000 + outcome.status, errMsg: outcome.code, errDlt: outcome.message, nextCode: 0 } };
  },
};

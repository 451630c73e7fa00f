/**
 * Tencent Cloud Chat: `C2C.CallbackAfterMsgReport`, `Group.CallbackAfterReadReceipt`,
 * `C2C.CallbackAfterMsgReadReceipt`. Authenticity lives in the URL: SdkAppid must be allowed, and
 * with a console token set, `Sign = sha256_hex(token + RequestTime)` with RequestTime within 60 s.
 * `Sign` covers only the token and RequestTime, not the body: docs/providers/tencent.md says what
 * that means for an operator. Facts and sources: docs/providers/tencent.md.
 */
import { z } from "zod";
import { sha256Hex } from "../crypto/hash";
import { timingSafeEqual } from "../crypto/timing-safe";
import { groupConversationKey, singleConversationKey, type Receipt } from "../receipt";
import { isoFromMillis } from "../time";
import { list, optional } from "../settings";
import {
  Identifier,
  identityId,
  invalidBody,
  JSON_CONTENT,
  parseCommandBody,
  reject,
  rejectExtraPath,
  unconfigured,
  wellFormed,
  type Answer,
  type Normalized,
  type Outcome,
  type Parsed,
  type RegisteredProvider,
} from "./provider";

const MAX_REQUEST_SKEW_SECONDS = 60;

/** The URL's query (authentication and routing) and the body, not yet parsed. */
interface Envelope {
  sdkAppId?: string;
  command?: string;
  platform?: string;
  sign?: string;
  requestTime?: string;
  body: string;
}

const Settings = z.object({
  /** The allowed SdkAppid values, comma-separated. */
  TENCENT_SDKAPPID: optional(list(z.string().regex(/^\d+$/, "must list numeric SdkAppid values"), "SdkAppid")),
  /** The console's callback token: with it, every callback must carry a valid Sign. */
  TENCENT_TOKEN: optional(z.string().trim()),
});

export interface TencentConfig {
  sdkAppIds: string[];
  token?: string;
}

/** The last millisecond of year 9999: later times have no ISO-8601 form. */
const MAX_TIME_MS = 253_402_300_799_999;
/** EventTime is documented as a number and sent by some commands as a numeric string. */
const EventTime = z
  .union([
    z.number(),
    z
      .string()
      .regex(/^\d{1,15}$/, "must be milliseconds")
      .transform(Number),
  ])
  .pipe(z.number().int().nonnegative().max(MAX_TIME_MS, "is not a plausible time in milliseconds"));
const Account = Identifier;
const Count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const MsgReport = z.object({
  Report_Account: Account,
  Peer_Account: Account,
  LastReadTime: z
    .number()
    .int()
    .nonnegative()
    .max(Math.floor(MAX_TIME_MS / 1000), "is not a plausible time in seconds"),
  UnreadMsgNum: Count.optional(),
  EventTime: EventTime.optional(),
});

const GroupReadReceipt = z.object({
  GroupId: Identifier,
  Type: z.string().optional(),
  GroupMsgReceiptList: z
    .array(
      z.object({
        MsgSeq: Count,
        ReadNum: Count.optional(),
        UnreadNum: Count.optional(),
        ReadReceiptMembers: z.array(z.object({ Member_Account: Account })).optional(),
      }),
    )
    .min(1),
  EventTime: EventTime.optional(),
});

const MsgReadReceipt = z.object({
  Operator_Account: Account,
  Peer_Account: Account,
  C2CMsgInfo: z
    .array(
      z.object({
        From_Account: Account.optional(),
        To_Account: Account.optional(),
        MsgKey: z.string().min(1).max(256).refine(wellFormed, "must be valid Unicode (it holds a lone surrogate)"),
        MsgId: z.string().max(256).refine(wellFormed, "must be valid Unicode (it holds a lone surrogate)").optional(),
      }),
    )
    .min(1),
  EventTime: EventTime.optional(),
});

export const TENCENT_READ_COMMANDS = ["C2C.CallbackAfterMsgReport", "Group.CallbackAfterReadReceipt", "C2C.CallbackAfterMsgReadReceipt"] as const;

/** Tencent's optional callback signature: also how tests build real ones. */
export function signTencent(token: string, requestTime: number | string): Promise<string> {
  return sha256Hex(`${token}${requestTime}`);
}

/** The command a sample body names (Tencent names it in the query too, where the relay reads it). */
const SampleCommand = z.looseObject({ CallbackCommand: z.string() });

export const tencent: RegisteredProvider<TencentConfig, Envelope, typeof Settings> = {
  name: "tencent",
  console: { note: "Tencent appends its own query" },
  settings: Settings,
  samples: [
    { label: "C2C.CallbackAfterMsgReport", fixture: "tencent-C2C.CallbackAfterMsgReport" },
    { label: "Group.CallbackAfterReadReceipt", fixture: "tencent-Group.CallbackAfterReadReceipt" },
    { label: "C2C.CallbackAfterMsgReadReceipt", fixture: "tencent-C2C.CallbackAfterMsgReadReceipt" },
  ],

  fresh(body, _sample, { conversation, reader, message, now }) {
    // EventTime is sent as a number or a numeric string: kept as the fixture writes it.
    const EventTime = typeof body.EventTime === "string" ? String(now) : now;
    switch (body.CallbackCommand) {
      case "C2C.CallbackAfterMsgReport":
        return { ...body, Report_Account: reader, Peer_Account: conversation, LastReadTime: Math.floor(now / 1000), EventTime };
      case "Group.CallbackAfterReadReceipt": {
        const [item] = Array.isArray(body.GroupMsgReceiptList) ? body.GroupMsgReceiptList : [];
        const read = { ...item, MsgSeq: message, ReadReceiptMembers: [{ Member_Account: reader }] };
        return { ...body, GroupId: conversation, GroupMsgReceiptList: [read], EventTime };
      }
      default: {
        const [item] = Array.isArray(body.C2CMsgInfo) ? body.C2CMsgInfo : [];
        const read = { ...item, From_Account: conversation, To_Account: reader, MsgKey: `${message}_${Math.floor(now / 1000)}`, MsgId: String(message) };
        return { ...body, Operator_Account: reader, Peer_Account: conversation, C2CMsgInfo: [read], EventTime };
      }
    }
  },

  async sign(body, _sample, config, now) {
    // Tencent appends its query to the callback URL; Sign covers the token and RequestTime, not the body.
    const query = new URLSearchParams({
      SdkAppid: config.sdkAppIds[0] ?? "",
      CallbackCommand: SampleCommand.parse(body).CallbackCommand,
      contenttype: "json",
      ClientIP: "127.0.0.1",
      OptPlatform: "Web",
    });
    if (config.token !== undefined) {
      const requestTime = Math.floor(now / 1000);
      query.set("RequestTime", String(requestTime));
      query.set("Sign", await signTencent(config.token, requestTime));
    }
    return { path: `/v1/hooks/tencent?${query}`, headers: { ...JSON_CONTENT }, body: JSON.stringify(body) };
  },

  configure(settings) {
    if (!settings.TENCENT_SDKAPPID) return unconfigured("TENCENT_SDKAPPID", { TENCENT_TOKEN: settings.TENCENT_TOKEN });
    return { state: "enabled", config: { sdkAppIds: settings.TENCENT_SDKAPPID, token: settings.TENCENT_TOKEN } };
  },

  parse(raw) {
    const extraPath = rejectExtraPath(raw);
    if (extraPath) return extraPath;
    const query = (name: string) => raw.url.searchParams.get(name) ?? undefined;
    return {
      ok: true,
      value: {
        sdkAppId: query("SdkAppid"),
        command: query("CallbackCommand"),
        platform: query("OptPlatform"),
        sign: query("Sign"),
        requestTime: query("RequestTime"),
        body: raw.body,
      },
    };
  },

  async verify(envelope, config, now) {
    if (!envelope.sdkAppId) return { status: 403, code: "missing_sdkappid", message: "the query parameter SdkAppid is missing" };
    if (!config.sdkAppIds.includes(envelope.sdkAppId)) {
      return { status: 403, code: "sdkappid_not_allowed", message: "SdkAppid is not one of those allowed by TENCENT_SDKAPPID" };
    }
    if (config.token === undefined) return undefined;
    const { sign, requestTime } = envelope;
    if (!sign || !requestTime) {
      return { status: 401, code: "missing_sign", message: "Sign and RequestTime are required: callback authentication (TENCENT_TOKEN) is on" };
    }
    if (!/^\d{1,12}$/.test(requestTime)) return { status: 401, code: "bad_request_time", message: "RequestTime must be Unix seconds" };
    if (!(await timingSafeEqual(sign.toLowerCase(), await signTencent(config.token, requestTime)))) {
      return { status: 401, code: "bad_signature", message: "Sign does not match sha256(TENCENT_TOKEN + RequestTime)" };
    }
    if (Math.abs(now / 1000 - Number(requestTime)) > MAX_REQUEST_SKEW_SECONDS) {
      return { status: 401, code: "expired", message: `RequestTime is more than ${MAX_REQUEST_SKEW_SECONDS} s away from now` };
    }
    return undefined;
  },

  async normalize(envelope, { receivedAt }): Promise<Parsed<Normalized>> {
    const command = envelope.command;
    if (!command) return reject(400, "missing_command", "the query parameter CallbackCommand is missing");
    if (!TENCENT_READ_COMMANDS.some((read) => read === command)) return { ok: true, value: { kind: "ignored", event: command } };
    const json = parseCommandBody(envelope.body, "CallbackCommand", command, "the CallbackCommand query parameter");
    if (!json.ok) return json;

    const app = envelope.sdkAppId;
    if (!app) return reject(403, "missing_sdkappid", "the query parameter SdkAppid is missing");
    const base = {
      provider: "tencent" as const,
      event: command,
      app,
      receivedAt,
      raw: json.value,
      ...(envelope.platform ? { platform: envelope.platform } : {}),
    };
    const timeOf = (eventTime: number | undefined, fallback?: number) =>
      eventTime !== undefined ? isoFromMillis(eventTime) : fallback !== undefined ? isoFromMillis(fallback) : receivedAt;
    let receipt: Receipt;

    if (command === "C2C.CallbackAfterMsgReport") {
      const parsed = MsgReport.safeParse(json.value);
      if (!parsed.success) return invalidBody(parsed.error.issues);
      const body = parsed.data;
      receipt = {
        ...base,
        id: await identityId("tencent", [app, command, body.Report_Account, body.Peer_Account, body.LastReadTime, body.UnreadMsgNum, body.EventTime]),
        chat: "single",
        conversation: singleConversationKey("tencent", app, body.Report_Account, body.Peer_Account),
        readers: [body.Report_Account],
        peer: body.Peer_Account,
        messages: [],
        // LastReadTime: every message before it (Unix seconds) is read.
        upTo: { time: isoFromMillis(body.LastReadTime * 1000) },
        readAt: timeOf(body.EventTime, body.LastReadTime * 1000),
        ...(body.UnreadMsgNum !== undefined ? { unreadTotal: body.UnreadMsgNum } : {}),
      };
    } else if (command === "Group.CallbackAfterReadReceipt") {
      const parsed = GroupReadReceipt.safeParse(json.value);
      if (!parsed.success) return invalidBody(parsed.error.issues);
      const body = parsed.data;
      const messages = body.GroupMsgReceiptList.map((item) => ({
        seq: item.MsgSeq,
        ...(item.ReadNum !== undefined ? { readCount: item.ReadNum } : {}),
        ...(item.UnreadNum !== undefined ? { unreadCount: item.UnreadNum } : {}),
        ...(item.ReadReceiptMembers ? { readers: item.ReadReceiptMembers.map((member) => member.Member_Account) } : {}),
      }));
      receipt = {
        ...base,
        id: await identityId("tencent", [app, command, body.GroupId, body.EventTime, messages]),
        chat: "group",
        conversation: groupConversationKey("tencent", app, body.GroupId),
        readers: [...new Set(messages.flatMap((message) => message.readers ?? []))],
        group: body.GroupId,
        messages,
        readAt: timeOf(body.EventTime),
      };
    } else {
      const parsed = MsgReadReceipt.safeParse(json.value);
      if (!parsed.success) return invalidBody(parsed.error.issues);
      const body = parsed.data;
      receipt = {
        ...base,
        id: await identityId("tencent", [app, command, body.Operator_Account, body.Peer_Account, body.C2CMsgInfo.map((m) => m.MsgKey), body.EventTime]),
        chat: "single",
        conversation: singleConversationKey("tencent", app, body.Operator_Account, body.Peer_Account),
        readers: [body.Operator_Account],
        peer: body.Peer_Account,
        // MsgKey is what Tencent's one-to-one message APIs take; MsgId stays in raw.
        messages: body.C2CMsgInfo.map((message) => ({ id: message.MsgKey })),
        readAt: timeOf(body.EventTime),
      };
    }
    // Sign covers RequestTime only, checked to 60 s above, so a captured callback is dead long before
    // the dedup window ends; EventTime is unsigned, and an old one proves nothing (docs/providers/tencent.md).
    return { ok: true, value: { kind: "receipt", receipt, eventTime: null } };
  },

  answer(outcome: Outcome): Answer {
    if (outcome.ok) return { status: 200, body: { ActionStatus: "OK", ErrorInfo: "", ErrorCode: 0 } };
    return { status: outcome.status, body: { ActionStatus: "FAIL", ErrorInfo: `${outcome.code}: ${outcome.message}`, ErrorCode: 1 } };
  },
};

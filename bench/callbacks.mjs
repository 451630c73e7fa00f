// Settings and callbacks. Settings: fresh secrets, passed to workerd as bindings (wrangler.toml is
// not read). Callbacks: every one fresh and correctly signed (scripts/send-samples.mjs, scripts/soak.mjs).
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { root } from "../scripts/dev-vars.mjs";
import { options } from "./options.mjs";

const hex = (bytes) => randomBytes(bytes).toString("hex");
export const SECRETS = {
  EASEMOB_SECRET: `bench-easemob-${hex(8)}`,
  TENCENT_SDKAPPID: "1400000001",
  TENCENT_TOKEN: `bench-tencent-${hex(8)}`,
  OPENIM_TOKEN: `bench-openim-${hex(12)}`,
  STREAM_API_SECRET: `bench-stream-${hex(12)}`,
  SENDBIRD_API_TOKEN: `bench-sendbird-${hex(12)}`,
};
/** The defaults of wrangler.toml's [vars] and the README, spelled out. */
const BASE_SETTINGS = {
  ...SECRETS,
  MAX_EVENT_AGE_SECONDS: "300",
  RECENT_LIMIT: "100",
  FORWARD_RETRY_SCHEDULE: "5,30,120,600,1800,3600,7200,14400,28800,43200",
  FORWARD_TIMEOUT_MS: "10000",
  SNAPSHOT_INTERVAL_SECONDS: "60",
  FORWARD_BATCH_MAX: "1",
};
const FORWARD_SECRET = `whsec_${randomBytes(32).toString("base64")}`;
export const held = (extra = {}) => ({ ...BASE_SETTINGS, LOG_LEVEL: options["log-level"], ...extra });
export const forwardingTo = (origin, extra = {}) => ({ ...BASE_SETTINGS, LOG_LEVEL: options["log-level"], ORIGIN_URL: origin.url, FORWARD_SECRET, ...extra });
export const without = (settings, name) => Object.fromEntries(Object.entries(settings).filter(([key]) => key !== name));

const fixture = (name) => JSON.parse(readFileSync(join(root, "test/fixtures", `${name}.json`), "utf8"));
const FIXTURES = {
  easemob: fixture("easemob-read_ack-single"),
  tencent: fixture("tencent-C2C.CallbackAfterMsgReadReceipt"),
  tencentGroup: fixture("tencent-Group.CallbackAfterReadReceipt"),
  openim: fixture("openim-callbackAfterSingleMsgReadCommand"),
  stream: fixture("stream-message.read"),
  sendbird: fixture("sendbird-group_channel-message_read"),
};
export const RUN = hex(3);
let sequence = 0;
const md5 = (text) => createHash("md5").update(text).digest("hex");
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const hmac = (key, text) => createHmac("sha256", key).update(text).digest("hex");
const JSON_HEADERS = Object.freeze({ "content-type": "application/json" });

/** Tencent signs the query (SdkAppid, RequestTime and a Sign over the token), not the body. */
function tencentCallback(body) {
  const requestTime = String(Math.floor(Date.now() / 1000));
  const query = new URLSearchParams({
    SdkAppid: SECRETS.TENCENT_SDKAPPID,
    CallbackCommand: body.CallbackCommand,
    contenttype: "json",
    ClientIP: "127.0.0.1",
    OptPlatform: "Web",
    RequestTime: requestTime,
    Sign: sha256(`${SECRETS.TENCENT_TOKEN}${requestTime}`),
  });
  return { path: `/v1/hooks/tencent?${query}`, headers: JSON_HEADERS, body: JSON.stringify(body) };
}

/** `conversations` bounds how many conversations the callbacks spread over. */
export const generators = {
  easemob({ conversations, sign = true, fixedAt } = {}) {
    const n = fixedAt === undefined ? ++sequence : 0;
    const body = structuredClone(FIXTURES.easemob);
    body.appkey = "bench#app";
    body.callId = `bench#app_${RUN}${fixedAt === undefined ? n : "fixed"}`;
    body.timestamp = fixedAt ?? Date.now();
    body.security = sign ? md5(`${body.callId}${SECRETS.EASEMOB_SECRET}${body.timestamp}`) : "0".repeat(32);
    body.payload.ack_message_id = `${RUN}${n}`;
    body.msg_id = `${n}`;
    Object.assign(body, { from: `u${RUN}${n % conversations}`, to: "peer" });
    return { path: "/v1/hooks/easemob", headers: JSON_HEADERS, body: JSON.stringify(body) };
  },
  tencent({ conversations }) {
    const n = ++sequence;
    const body = structuredClone(FIXTURES.tencent);
    Object.assign(body, { Operator_Account: `u${RUN}${n % conversations}`, Peer_Account: "peer", EventTime: Date.now() });
    body.C2CMsgInfo = [{ From_Account: "peer", To_Account: body.Operator_Account, MsgKey: `${RUN}_${n}`, MsgId: `${RUN}-${n}` }];
    return tencentCallback(body);
  },
  /** A group read burst: every callback one more member of one group reading message 1 (Tencent never retries). */
  tencentGroup({ group }) {
    const n = ++sequence;
    const body = structuredClone(FIXTURES.tencentGroup);
    body.GroupId = group;
    body.EventTime = String(Date.now());
    body.GroupMsgReceiptList = [{ MsgSeq: 1, ReadNum: n, UnreadNum: 0, ReadReceiptMembers: [{ Member_Account: `m${RUN}-${n}` }] }];
    return tencentCallback(body);
  },
  openim({ conversations }) {
    const n = ++sequence;
    const body = structuredClone(FIXTURES.openim);
    const user = `u${RUN}${n % conversations}`;
    Object.assign(body, { conversationID: `si_${user}_peer`, userID: user, Seqs: [n] });
    return {
      path: `/v1/hooks/openim/${SECRETS.OPENIM_TOKEN}/${body.callbackCommand}`,
      headers: { ...JSON_HEADERS, operationID: `bench-${RUN}-${n}` },
      body: JSON.stringify(body),
    };
  },
  stream({ conversations }) {
    const n = ++sequence;
    const body = structuredClone(FIXTURES.stream);
    const channel = `c${RUN}${n % conversations}`;
    Object.assign(body, { cid: `messaging:${channel}`, channel_id: channel, created_at: new Date().toISOString() });
    body.user.channel_last_read_at = body.created_at;
    const text = JSON.stringify(body);
    const headers = { ...JSON_HEADERS, "x-signature": hmac(SECRETS.STREAM_API_SECRET, text), "x-webhook-id": randomUUID(), "x-webhook-attempt": "1" };
    return { path: "/v1/hooks/stream", headers, body: text };
  },
  sendbird({ conversations }) {
    const n = ++sequence;
    const body = structuredClone(FIXTURES.sendbird);
    delete body.app_id;
    body.channel.channel_url = `sendbird_group_channel_${RUN}_${n % conversations}`;
    body.read_updates[0].user_id = `u${RUN}${n}`;
    body.read_updates[0].read_ts = Date.now();
    // Sendbird writes "/" as "\/" and signs the bytes it sends.
    const text = JSON.stringify(body).replaceAll("/", "\\/");
    return {
      path: "/v1/hooks/sendbird",
      headers: { ...JSON_HEADERS, "user-agent": "SendBird", "x-sendbird-signature": hmac(SECRETS.SENDBIRD_API_TOKEN, text) },
      body: text,
    };
  },
};

/** A different client address per request, so that a refusal is a 401 and not the limiter's 429. */
export const randomAddress = () => `10.${randomBytes(3).join(".")}`;

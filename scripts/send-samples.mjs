#!/usr/bin/env node
// Sends every provider's sample read receipt to a running relay, signed with the settings in
// .dev.vars, and prints each answer. Usage: npm run send-samples [-- http://127.0.0.1:8787]
import { createHash, createHmac } from "node:crypto";
import { gzipSync } from "node:zlib";
import { readFileSync } from "node:fs";
import { loadDevVars, root } from "./dev-vars.mjs";

const vars = loadDevVars();
const relay = process.argv[2] ?? process.env.RELAY_URL ?? "http://127.0.0.1:8787";
const fixture = (name) => JSON.parse(readFileSync(`${root}test/fixtures/${name}.json`, "utf8"));
const first = (list) => (list ?? "").split(",")[0]?.trim();
let sequence = 0;
/** A fresh message-id-like number, so that every run sends new callbacks (the same one twice is a duplicate). */
const freshId = () => `${Date.now()}${String(sequence++).padStart(3, "0")}`;

/** Posts a body (an object as JSON; text or bytes as they are, for Stream's gzip and Sendbird's escaped slashes) and prints the answer. */
async function post(label, path, body, headers = {}) {
  let response;
  try {
    response = await fetch(`${relay}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
    });
  } catch (error) {
    console.error(`cannot reach the relay at ${relay} (${error.cause?.code ?? error.message}): is \`npm run dev\` running?`);
    process.exit(1);
  }
  console.log(`${response.status} ${label.padEnd(48)} ${await response.text()}`);
}

const easemobSecret = first(vars.EASEMOB_SECRET);
if (easemobSecret) {
  for (const [label, name] of [
    ["easemob read_ack (one-to-one)", "easemob-read_ack-single"],
    ["easemob read_ack (group)", "easemob-read_ack-group"],
    ["easemob channel_ack", "easemob-channel_ack"],
  ]) {
    const body = fixture(name);
    body.callId = body.callId.replace(/_[^_]*$/, `_${freshId()}`); // "<app key>_<message id>"
    body.timestamp = Date.now();
    body.security = createHash("md5").update(`${body.callId}${easemobSecret}${body.timestamp}`).digest("hex");
    await post(label, "/v1/hooks/easemob", body);
  }
}

const sdkAppId = first(vars.TENCENT_SDKAPPID);
if (sdkAppId) {
  for (const command of ["C2C.CallbackAfterMsgReport", "Group.CallbackAfterReadReceipt", "C2C.CallbackAfterMsgReadReceipt"]) {
    const query = new URLSearchParams({ SdkAppid: sdkAppId, CallbackCommand: command, contenttype: "json", ClientIP: "127.0.0.1", OptPlatform: "Web" });
    if (vars.TENCENT_TOKEN) {
      const requestTime = String(Math.floor(Date.now() / 1000));
      query.set("RequestTime", requestTime);
      query.set("Sign", createHash("sha256").update(`${vars.TENCENT_TOKEN}${requestTime}`).digest("hex"));
    }
    const body = fixture(`tencent-${command}`);
    body.EventTime = Date.now();
    await post(`tencent ${command}`, `/v1/hooks/tencent?${query}`, body);
  }
}

if (first(vars.OPENIM_TOKEN)) {
  for (const command of ["callbackAfterSingleMsgReadCommand", "callbackAfterGroupMsgReadCommand"]) {
    const body = fixture(`openim-${command}`);
    if (body.Seqs) body.Seqs = [Date.now() % 100000];
    else body.unreadMsgNum = Date.now() % 100000;
    await post(`openim ${command}`, `/v1/hooks/openim/${vars.OPENIM_TOKEN}/${command}`, body, { operationID: `op-${freshId()}` });
  }
}

const streamSecret = first(vars.STREAM_API_SECRET);
if (streamSecret) {
  for (const compress of [false, true]) {
    const body = fixture("stream-message.read");
    body.created_at = new Date().toISOString();
    body.user.channel_last_read_at = body.created_at;
    const text = JSON.stringify(body);
    const headers = {
      // Over the uncompressed JSON, also when the body is sent gzipped.
      "x-signature": createHmac("sha256", streamSecret).update(text).digest("hex"),
      "x-webhook-id": crypto.randomUUID(),
      "x-webhook-attempt": "1",
      ...(first(vars.STREAM_API_KEY) ? { "x-api-key": first(vars.STREAM_API_KEY) } : {}),
      ...(compress ? { "content-encoding": "gzip" } : {}),
    };
    await post(`stream message.read${compress ? " (gzip)" : ""}`, "/v1/hooks/stream", compress ? gzipSync(text) : text, headers);
  }
}

const sendbirdToken = first(vars.SENDBIRD_API_TOKEN);
if (sendbirdToken) {
  const body = fixture("sendbird-group_channel-message_read");
  body.app_id = first(vars.SENDBIRD_APP_ID) || body.app_id;
  body.read_updates[0].read_ts = Date.now();
  // Sendbird writes "/" as "\/" and signs the bytes it sends.
  const text = JSON.stringify(body).replaceAll("/", "\\/");
  const signature = createHmac("sha256", sendbirdToken).update(text).digest("hex");
  await post("sendbird group_channel:message_read", "/v1/hooks/sendbird", text, { "user-agent": "SendBird", "x-sendbird-signature": signature });
}

const skipped = [
  ["easemob", "EASEMOB_SECRET"],
  ["tencent", "TENCENT_SDKAPPID"],
  ["openim", "OPENIM_TOKEN"],
  ["stream", "STREAM_API_SECRET"],
  ["sendbird", "SENDBIRD_API_TOKEN"],
].filter(([, setting]) => !first(vars[setting]));
for (const [provider, setting] of skipped) console.log(`skipped ${provider}: set ${setting} in .dev.vars`);

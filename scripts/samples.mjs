// Shared by send-samples.mjs, smoke.mjs and check-config.mjs: each provider's sample read
// receipt, signed as the provider signs it, and the relay's own modules (settings schemas,
// providers) bundled for Node, so that scripts judge settings and receipts exactly as the relay does.
import { createHash, createHmac } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export const root = fileURLToPath(new URL("..", import.meta.url));

const fixture = (name) => JSON.parse(readFileSync(`${root}test/fixtures/${name}.json`, "utf8"));
/** The first of a comma-separated list (secrets, app ids). */
export const first = (list) => (list ?? "").split(",")[0]?.trim();
let sequence = 0;
/** A fresh message-id-like number, so that every run sends new callbacks (the same one twice is a duplicate). */
const freshId = () => `${Date.now()}${String(sequence++).padStart(3, "0")}`;

/** Each provider and the setting that turns it on (the samples of a provider whose setting is unset are not built). */
export const enablingSettings = {
  easemob: "EASEMOB_SECRET",
  tencent: "TENCENT_SDKAPPID",
  openim: "OPENIM_TOKEN",
  stream: "STREAM_API_SECRET",
  sendbird: "SENDBIRD_API_TOKEN",
  talkjs: "TALKJS_SECRET_KEY",
  whatsapp: "META_APP_SECRET",
  messenger: "META_APP_SECRET",
  instagram: "META_APP_SECRET",
};

/** Reads KEY=value lines (the .dev.vars format); undefined when the file does not exist. */
export function readVarsFile(path) {
  if (!existsSync(path)) return undefined;
  /** @type {Record<string, string>} */
  const vars = {};
  for (const line of readFileSync(path, "utf8").split(/\r?\n/)) {
    const match = /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (match && match[1] && match[2] !== undefined) vars[match[1]] = match[2].replace(/^"(.*)"$/, "$1");
  }
  return vars;
}

/**
 * @typedef {{ provider: string, label: string, path: string, body: string | Uint8Array, headers: Record<string, string>, text: string }} Sample
 * `path` holds OpenIM's token or Tencent's Sign: never print it. `text` is the JSON text before any compression.
 */

/**
 * Every enabled provider's samples, freshly signed with `vars` (settings by name), in a fixed
 * order: the first sample of each provider is its plainest read receipt.
 * @param {Record<string, string | undefined>} vars
 * @returns {Sample[]}
 */
export function buildSamples(vars) {
  /** @type {Sample[]} */
  const samples = [];
  const add = (provider, label, path, body, headers = {}) => {
    const text = typeof body === "string" ? body : JSON.stringify(body);
    samples.push({ provider, label, path, body: text, headers: { "content-type": "application/json", ...headers }, text });
    return samples[samples.length - 1];
  };

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
      add("easemob", label, "/v1/hooks/easemob", body);
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
      add("tencent", `tencent ${command}`, `/v1/hooks/tencent?${query}`, body);
    }
  }

  const openimToken = vars.OPENIM_TOKEN?.trim();
  if (openimToken) {
    for (const command of ["callbackAfterSingleMsgReadCommand", "callbackAfterGroupMsgReadCommand"]) {
      const body = fixture(`openim-${command}`);
      if (body.Seqs) body.Seqs = [Date.now() % 100000];
      else body.unreadMsgNum = Date.now() % 100000;
      add("openim", `openim ${command}`, `/v1/hooks/openim/${encodeURIComponent(openimToken)}/${command}`, body, { operationID: `op-${freshId()}` });
    }
  }

  const streamSecret = first(vars.STREAM_API_SECRET);
  if (streamSecret) {
    for (const compress of [false, true]) {
      const body = fixture("stream-message.read");
      body.created_at = new Date().toISOString();
      body.user.channel_last_read_at = body.created_at;
      const text = JSON.stringify(body);
      const sample = add("stream", `stream message.read${compress ? " (gzip)" : ""}`, "/v1/hooks/stream", text, {
        // Over the uncompressed JSON, also when the body is sent gzipped.
        "x-signature": createHmac("sha256", streamSecret).update(text).digest("hex"),
        "x-webhook-id": crypto.randomUUID(),
        "x-webhook-attempt": "1",
        ...(first(vars.STREAM_API_KEY) ? { "x-api-key": first(vars.STREAM_API_KEY) } : {}),
        ...(compress ? { "content-encoding": "gzip" } : {}),
      });
      if (compress) sample.body = gzipSync(text);
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
    add("sendbird", "sendbird group_channel:message_read", "/v1/hooks/sendbird", text, { "user-agent": "SendBird", "x-sendbird-signature": signature });
  }

  const talkjsKey = first(vars.TALKJS_SECRET_KEY);
  if (talkjsKey) {
    const body = fixture("talkjs-message.read");
    body.createdAt = Date.now();
    body.id = `evt_${freshId()}`;
    body.data.message.id = `msg_${freshId()}`;
    const text = JSON.stringify(body);
    const timestamp = String(Date.now());
    // Upper-case hex HMAC-SHA256 of "<timestamp>.<body>"; the app, when set, is the URL's last segment.
    const signature = createHmac("sha256", talkjsKey).update(`${timestamp}.${text}`).digest("hex").toUpperCase();
    const app = first(vars.TALKJS_APP_ID);
    add("talkjs", "talkjs message.read", `/v1/hooks/talkjs${app ? `/${encodeURIComponent(app)}` : ""}`, text, {
      "x-talkjs-timestamp": timestamp,
      "x-talkjs-signature": signature,
    });
  }
  const metaSecret = first(vars.META_APP_SECRET);
  if (metaSecret) {
    // Meta signs the bytes it sends: "sha256=" and hex HMAC-SHA256 under the App Secret.
    const metaHeaders = (text) => ({
      "user-agent": "facebookexternalua",
      "x-hub-signature-256": `sha256=${createHmac("sha256", metaSecret).update(text).digest("hex")}`,
    });
    // WhatsApp: the issue's batch, 3 read statuses for 2 users, 1 delivered and 1 sent (3 receipts, 2 conversations).
    const whatsapp = fixture("whatsapp-statuses-read");
    const value = whatsapp.entry[0].changes[0].value;
    value.metadata.phone_number_id = first(vars.WHATSAPP_PHONE_NUMBER_IDS) || value.metadata.phone_number_id;
    const seconds = String(Math.floor(Date.now() / 1000));
    const status = (recipient, name = "read") => ({
      ...value.statuses[0],
      id: `wamid.demo${freshId()}`,
      status: name,
      timestamp: seconds,
      recipient_id: recipient,
    });
    value.statuses = [status("16505551234"), status("16505551234"), status("16505551235"), status("16505551235", "delivered"), status("16505551234", "sent")];
    const whatsappText = JSON.stringify(whatsapp);
    add("whatsapp", "whatsapp statuses (3 read, 1 delivered, 1 sent)", "/v1/hooks/whatsapp", whatsappText, metaHeaders(whatsappText));

    for (const [provider, fixtureName, allowList] of [
      ["messenger", "messenger-message_reads", "MESSENGER_PAGE_IDS"],
      ["instagram", "instagram-messaging_seen", "INSTAGRAM_ACCOUNT_IDS"],
    ]) {
      const body = fixture(fixtureName);
      const account = first(vars[allowList]) || body.entry[0].id;
      const event = body.entry[0].messaging[0];
      body.entry[0].id = account;
      body.entry[0].time = Date.now();
      event.recipient.id = account;
      event.timestamp = Date.now();
      if (event.read.watermark !== undefined) event.read.watermark = Date.now() - 1000;
      else event.read.mid = `mid.demo${freshId()}`;
      const text = JSON.stringify(body);
      add(provider, `${provider} ${provider === "messenger" ? "message_reads" : "messaging_seen"}`, `/v1/hooks/${provider}`, text, metaHeaders(text));
    }
  }
  return samples;
}

/**
 * Posts a sample to the relay. Resolves the HTTP status and the answer's text; rejects when the
 * relay cannot be reached or does not answer within `timeoutMs`.
 * @param {string} relay the relay's origin, e.g. http://127.0.0.1:8787
 * @param {Sample} sample
 */
export async function postSample(relay, sample, timeoutMs = 15_000) {
  const response = await fetch(new URL(sample.path, relay), {
    method: "POST",
    headers: sample.headers,
    body: sample.body,
    redirect: "manual",
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, text: await response.text() };
}

let relayModules;

/**
 * The relay's settings schemas and providers, bundled from src/ with esbuild for Node (the
 * scripts stay plain JavaScript; Node 20 cannot import TypeScript). Only modules free of
 * `cloudflare:` imports may be pulled in: the bundle fails if one is.
 * @returns {Promise<{ parseSettings: Function, parseGroup: Function, describeProblems: Function, providers: Record<string, any> }>}
 */
export async function loadRelay() {
  if (relayModules) return relayModules;
  const { build } = await import("esbuild");
  const files = readdirSync(`${root}src/providers`).filter((name) => name.endsWith(".ts") && name !== "provider.ts" && name !== "index.ts");
  const contents = [
    `export { parseSettings, parseGroup, describeProblems } from "./src/settings.ts";`,
    `export { parseDestinations } from "./src/destinations/config.ts";`,
    ...files.map((name, i) => `export * as provider${i} from "./src/providers/${name}";`),
  ].join("\n");
  const result = await build({
    stdin: { contents, resolveDir: root, sourcefile: "relay-modules.ts", loader: "ts" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    write: false,
    metafile: true,
    external: ["cloudflare:*"],
    logLevel: "silent",
  });
  const workerOnly = Object.values(result.metafile.outputs).flatMap((output) => output.imports.filter((entry) => entry.path.startsWith("cloudflare:")));
  if (workerOnly.length > 0)
    throw new Error(
      `the settings and providers modules import ${workerOnly.map((entry) => entry.path).join(", ")}: they must stay free of Worker-only modules`,
    );
  const code = result.outputFiles[0].text;
  const modules = await import(`data:text/javascript;base64,${Buffer.from(code).toString("base64")}`);
  /** @type {Record<string, any>} */
  const providers = {};
  for (const [name, value] of Object.entries(modules)) {
    if (!name.startsWith("provider")) continue;
    for (const exported of Object.values(value)) {
      // A provider object: its name, its settings schema, and the pipeline's functions.
      if (
        exported &&
        typeof exported === "object" &&
        typeof exported.name === "string" &&
        exported.settings?.shape &&
        typeof exported.normalize === "function"
      ) {
        providers[exported.name] = exported;
      }
    }
  }
  relayModules = {
    parseSettings: modules.parseSettings,
    parseGroup: modules.parseGroup,
    describeProblems: modules.describeProblems,
    parseDestinations: modules.parseDestinations,
    providers,
  };
  return relayModules;
}

/**
 * What the relay makes of a sample, computed with the relay's own provider code: the receipt's id
 * and conversation key, or why it is not a receipt.
 * @param {Sample} sample
 * @returns {Promise<{ id: string, conversation: string } | { error: string }>}
 */
export async function expectedReceipt(sample) {
  const { providers } = await loadRelay();
  const provider = providers[sample.provider];
  if (!provider) return { error: `no provider ${sample.provider} in src/providers` };
  const url = new URL(sample.path, "http://relay.invalid");
  const path = url.pathname.split("/").slice(4).filter(Boolean).map(decodeURIComponent);
  const bytes = typeof sample.body === "string" ? new TextEncoder().encode(sample.body) : new Uint8Array(sample.body);
  const raw = { url, path, body: new TextDecoder().decode(bytes), bytes, headers: new Headers(sample.headers) };
  const parsed = provider.parse(raw);
  if (!parsed.ok) return { error: `${parsed.rejection.code}: ${parsed.rejection.message}` };
  const normalized = await provider.normalize(parsed.value, { receivedAt: new Date().toISOString() });
  if (!normalized.ok) return { error: `${normalized.rejection.code}: ${normalized.rejection.message}` };
  // A Meta batch: the first of its receipts stands for the sample.
  if (normalized.value.kind === "receipts") {
    const [made] = normalized.value.receipts;
    if (!made) return { error: "no read receipt in the batch" };
    return { id: made.receipt.id, conversation: made.receipt.conversation };
  }
  if (normalized.value.kind !== "receipt") return { error: `not a read receipt (${normalized.value.event})` };
  return { id: normalized.value.receipt.id, conversation: normalized.value.receipt.conversation };
}

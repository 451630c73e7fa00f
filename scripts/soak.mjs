#!/usr/bin/env node
// Bounded soak on 127.0.0.1 only, under `wrangler dev`: signed Easemob, Tencent and OpenIM callbacks over many
// conversations, an origin that answers 503 in scripted windows, and one crash and restart of the
// relay midway. Prints accepted / delivered / lost / duplicated / out-of-order and exits 1 when
// anything was lost, reordered or badly signed. Stops by itself and kills its children on exit.
//   node scripts/soak.mjs [--callbacks 2000] [--conversations 50] [--concurrency 8] [--timeout 300]
//                         [--outage-every 20] [--outage-for 5]
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { Webhook } from "standardwebhooks";
import { root } from "./dev-vars.mjs";

// ---------------------------------------------------------------------------------------------
// Options

const OPTIONS = {
  callbacks: { value: 2000, min: 1, max: 100_000, help: "callbacks to send, all providers together" },
  conversations: { value: 50, min: 1, max: 10_000, help: "conversations to spread them over" },
  concurrency: { value: 8, min: 1, max: 64, help: "callbacks in flight at once (one per conversation at most)" },
  timeout: { value: 300, min: 10, max: 3600, help: "seconds to wait, after sending, for every accepted receipt" },
  "outage-every": { value: 20, min: 2, max: 3600, help: "the origin fails once every this many seconds" },
  "outage-for": { value: 5, min: 0, max: 40, help: "seconds each origin outage lasts (answers 503)" },
};

function parseOptions(argv) {
  const values = Object.fromEntries(Object.entries(OPTIONS).map(([name, option]) => [name, option.value]));
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, "");
    if (argv[i] === "--help" || argv[i] === "-h") {
      console.log("usage: node scripts/soak.mjs [options]");
      for (const [option, { value, help }] of Object.entries(OPTIONS)) console.log(`  --${option.padEnd(14)} ${help} (default ${value})`);
      process.exit(0);
    }
    const option = OPTIONS[name];
    const value = Number(argv[i + 1]);
    if (!argv[i].startsWith("--") || !option || !Number.isInteger(value) || value < option.min || value > option.max) {
      console.error(`soak: bad option ${argv[i]} ${argv[i + 1] ?? ""}: see --help (each takes an integer within its bounds)`);
      process.exit(2);
    }
    values[name] = value;
    i++;
  }
  if (values["outage-for"] >= values["outage-every"]) {
    console.error("soak: --outage-for must be shorter than --outage-every");
    process.exit(2);
  }
  return values;
}

const options = parseOptions(process.argv.slice(2));
/** Retry steps short enough that an outage window never exhausts them (their sum is 53 s). */
const RETRY_SCHEDULE = "1,2,2,3,5,5,5,10,10,10";
const ATTEMPTS_PER_CALLBACK = 6;
const REQUEST_TIMEOUT_MS = 15_000;
const STARTUP_TIMEOUT_MS = 90_000;
/** Every phase is bounded on its own; this is the backstop should one of them hang. */
const HARD_DEADLINE_MS = (2 * STARTUP_TIMEOUT_MS + 2 * options.timeout * 1000 + 60_000) | 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const hex = (bytes) => randomBytes(bytes).toString("hex");
const md5 = (text) => createHash("md5").update(text).digest("hex");
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const elapsed = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

/** Fresh settings: nothing from .dev.vars, so the soak signs with what the relay checks. */
const settings = {
  EASEMOB_SECRET: `soak-easemob-${hex(8)}`,
  TENCENT_SDKAPPID: "1400099999",
  TENCENT_TOKEN: `soak-tencent-${hex(8)}`,
  OPENIM_TOKEN: `soak-openim-${hex(12)}`,
  FORWARD_SECRET: `whsec_${randomBytes(32).toString("base64")}`,
  FORWARD_RETRY_SCHEDULE: RETRY_SCHEDULE,
  FORWARD_TIMEOUT_MS: "5000",
  ADMIN_TOKEN: `soak-admin-${hex(12)}`,
};
/** Tells this run's ids from any other's. */
const RUN = hex(3);

// ---------------------------------------------------------------------------------------------
// Children and cleanup

const wranglerBin = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
const state = mkdtempSync(`${tmpdir()}/receipt-relay-soak-`);
const wranglerLog = createWriteStream(`${state}/wrangler.log`);
/** The running wrangler (leader of its own process group, so that workerd goes with it). */
let relay;
let origin;

function killRelayGroup(signal) {
  if (!relay || relay.exitCode !== null || relay.signalCode !== null) return;
  try {
    process.kill(-relay.pid, signal);
  } catch {}
}

async function stopRelay(signal) {
  if (!relay || relay.exitCode !== null || relay.signalCode !== null) return;
  const exited = new Promise((resolve) => relay.once("exit", resolve));
  killRelayGroup(signal);
  const gone = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
  if (!gone) {
    killRelayGroup("SIGKILL");
    await Promise.race([exited, sleep(5_000)]);
  }
}

let cleanedUp = false;
function cleanupNow() {
  if (cleanedUp) return;
  cleanedUp = true;
  killRelayGroup("SIGKILL");
  origin?.close();
  origin?.closeAllConnections?.();
  rmSync(state, { recursive: true, force: true });
}
process.on("exit", cleanupNow);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    console.log(`soak: ${signal}, stopping`);
    cleanupNow();
    process.exit(130);
  });
}
setTimeout(() => {
  console.error("soak: hard deadline passed, stopping");
  process.exit(2);
}, HARD_DEADLINE_MS).unref();

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The origin: verifies every delivery, fails in windows, records arrival order

const webhook = new Webhook(settings.FORWARD_SECRET);
const originStats = { outageAnswers: 0, badSignatures: 0, unidentified: 0 };
/** Every 2xx-answered delivery in arrival order. */
const deliveries = [];

/** When the first scripted outage starts (set as sending starts); one starts every `outage-every` seconds after. */
let firstOutageAt = Infinity;
function inOutage(now) {
  const seconds = (now - firstOutageAt) / 1000;
  return seconds >= 0 && seconds % options["outage-every"] < options["outage-for"];
}

function startOrigin(port) {
  const server = createServer((request, response) => {
    const chunks = [];
    let size = 0;
    request.on("data", (chunk) => {
      size += chunk.length;
      if (size <= 1_000_000) chunks.push(chunk);
    });
    request.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(["webhook-id", "webhook-timestamp", "webhook-signature"].map((name) => [name, String(request.headers[name] ?? "")]));
      let event;
      try {
        event = webhook.verify(body, headers);
      } catch {
        originStats.badSignatures++;
        response.writeHead(401).end();
        return;
      }
      if (inOutage(Date.now())) {
        originStats.outageAnswers++;
        response.writeHead(503, { "retry-after": "1" }).end("scripted outage");
        return;
      }
      const receipt = event?.data;
      const soakId = receipt?.raw?.soakId;
      if (typeof soakId !== "string") originStats.unidentified++;
      deliveries.push({ webhookId: headers["webhook-id"], soakId, conversation: receipt?.conversation });
      response.writeHead(204).end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

// ---------------------------------------------------------------------------------------------
// The relay under wrangler dev

async function startRelay(port, inspectorPort, originUrl) {
  const vars = Object.entries({ ...settings, ORIGIN_URL: originUrl }).flatMap(([name, value]) => ["--var", `${name}:${value}`]);
  relay = spawn(
    process.execPath,
    [
      wranglerBin,
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(inspectorPort),
      "--persist-to",
      state,
      "--show-interactive-dev-session=false",
      ...vars,
    ],
    { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" } },
  );
  relay.stdout.pipe(wranglerLog, { end: false });
  relay.stderr.pipe(wranglerLog, { end: false });
  const startedAt = Date.now();
  while (Date.now() - startedAt < STARTUP_TIMEOUT_MS) {
    if (relay.exitCode !== null || relay.signalCode !== null) break;
    try {
      const health = await (await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) })).json();
      const ready = ["easemob", "tencent", "openim"].every((name) => health?.providers?.[name]?.state === "enabled");
      if (ready && health?.forwarding?.state === "on") return;
      if (health?.providers) throw new Error(`the relay is up but not ready: ${JSON.stringify(health).slice(0, 400)}`);
    } catch (error) {
      if (String(error?.message).startsWith("the relay is up")) throw error;
    }
    await sleep(250);
  }
  throw new Error(`wrangler dev did not become healthy within ${STARTUP_TIMEOUT_MS / 1000} s`);
}

// ---------------------------------------------------------------------------------------------
// Callbacks: real signatures, one conversation per slot, a soakId in every body (kept in receipt.raw)

const fixture = (name) => JSON.parse(readFileSync(`${root}test/fixtures/${name}.json`, "utf8"));
const fixtures = {
  easemobSingle: fixture("easemob-read_ack-single"),
  easemobGroup: fixture("easemob-read_ack-group"),
  easemobChannel: fixture("easemob-channel_ack"),
  tencentReport: fixture("tencent-C2C.CallbackAfterMsgReport"),
  tencentGroup: fixture("tencent-Group.CallbackAfterReadReceipt"),
  tencentReceipt: fixture("tencent-C2C.CallbackAfterMsgReadReceipt"),
  openimSingle: fixture("openim-callbackAfterSingleMsgReadCommand"),
  openimGroup: fixture("openim-callbackAfterGroupMsgReadCommand"),
};
const KINDS = Object.keys(fixtures);
const providerOf = (kind) => (kind.startsWith("easemob") ? "easemob" : kind.startsWith("tencent") ? "tencent" : "openim");

/**
 * Callback `n` for conversation `slot`: a function that makes each attempt's request, since
 * Tencent signs the request time; Easemob and OpenIM resend the same body, as they do.
 */
function makeCallback(n, slot) {
  const kind = KINDS[slot % KINDS.length];
  const body = structuredClone(fixtures[kind]);
  const [userA, userB, group, reader] = [`soak${RUN}a${slot}`, `soak${RUN}b${slot}`, `soak${RUN}g${slot}`, `soak${RUN}r${n % 3}`];
  const soakId = `${RUN}:${n}`;
  body.soakId = soakId;
  const eventTime = Date.now() + n;
  if (kind.startsWith("easemob")) {
    // Every Easemob callback gets a fresh callId: the relay claims callIds relay-wide.
    body.callId = `${body.appkey}_${RUN}${String(n).padStart(7, "0")}`;
    body.timestamp = Date.now();
    body.security = md5(`${body.callId}${settings.EASEMOB_SECRET}${body.timestamp}`);
    body.payload.ack_message_id = `${RUN}${n}`;
    if (kind === "easemobGroup") Object.assign(body, { from: reader, to: group });
    else Object.assign(body, { from: userA, to: userB });
    const text = JSON.stringify(body);
    return { n, slot, kind, soakId, request: () => ({ path: "/v1/hooks/easemob", text, headers: {} }) };
  }
  if (kind.startsWith("tencent")) {
    if (kind === "tencentReport")
      Object.assign(body, { Report_Account: userA, Peer_Account: userB, LastReadTime: Math.floor(eventTime / 1000), UnreadMsgNum: n, EventTime: eventTime });
    else if (kind === "tencentGroup") {
      Object.assign(body, { GroupId: group, EventTime: eventTime });
      body.GroupMsgReceiptList = [{ MsgSeq: n + 1, ReadNum: 1, UnreadNum: 0, ReadReceiptMembers: [{ Member_Account: reader }] }];
    } else {
      Object.assign(body, { Operator_Account: userA, Peer_Account: userB, EventTime: eventTime });
      body.C2CMsgInfo = [{ From_Account: userB, To_Account: userA, MsgKey: `${RUN}_${n}`, MsgId: `${RUN}-${n}` }];
    }
    const text = JSON.stringify(body);
    return {
      n,
      slot,
      kind,
      soakId,
      request: () => {
        const requestTime = String(Math.floor(Date.now() / 1000));
        const query = new URLSearchParams({
          SdkAppid: settings.TENCENT_SDKAPPID,
          CallbackCommand: body.CallbackCommand,
          contenttype: "json",
          ClientIP: "127.0.0.1",
          OptPlatform: "Web",
          RequestTime: requestTime,
          Sign: sha256(`${settings.TENCENT_TOKEN}${requestTime}`),
        });
        return { path: `/v1/hooks/tencent?${query}`, text, headers: {} };
      },
    };
  }
  if (kind === "openimSingle") Object.assign(body, { conversationID: `si_${userA}_${userB}`, userID: userA, Seqs: [n + 1] });
  else Object.assign(body, { sendID: userA, receiveID: userA, unreadMsgNum: n + 1 });
  const text = JSON.stringify(body);
  const headers = { operationID: `soak-${RUN}-${n}` };
  return { n, slot, kind, soakId, request: () => ({ path: `/v1/hooks/openim/${settings.OPENIM_TOKEN}/${body.callbackCommand}`, text, headers }) };
}

// ---------------------------------------------------------------------------------------------
// Sending: one lane per `concurrency`, each conversation on one lane, so per-conversation order is exact

/** Closed (a pending promise) while the relay restarts: no attempt starts then. */
let relayGate = Promise.resolve();
const answers = new Map();
/** soakIds in acceptance order, per conversation slot. */
const acceptedBySlot = new Map();
const acceptedIds = new Map();
let networkErrors = 0;

const countAnswer = (label) => answers.set(label, (answers.get(label) ?? 0) + 1);

async function send(relayUrl, callback) {
  for (let attempt = 1; attempt <= ATTEMPTS_PER_CALLBACK; attempt++) {
    await relayGate;
    const { path, text, headers } = callback.request();
    let status;
    try {
      const response = await fetch(`${relayUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: text,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      status = response.status;
      await response.arrayBuffer();
    } catch {
      networkErrors++;
    }
    if (status !== undefined) countAnswer(`${status}`);
    if (status !== undefined && status >= 200 && status < 300) return true;
    // 4xx other than 429 will not change on a retry; 5xx, 429 and network errors may.
    if (status !== undefined && status < 500 && status !== 429) return false;
    await sleep(Math.min(2000, 250 * attempt));
  }
  return false;
}

/** Sends a lane's callbacks in order, each made when its turn comes (so that its timestamps are fresh). */
async function runLane(relayUrl, planned, sendUntil, onSent) {
  for (const { n, slot } of planned) {
    if (Date.now() > sendUntil) return;
    const callback = makeCallback(n, slot);
    if (await send(relayUrl, callback)) {
      const list = acceptedBySlot.get(slot) ?? [];
      list.push(callback.soakId);
      acceptedBySlot.set(slot, list);
      acceptedIds.set(callback.soakId, callback);
    }
    await onSent();
  }
}

/** The end of wrangler's log, to show why something failed (the log goes with the state directory). */
function tailOfLog(lines) {
  try {
    return readFileSync(`${state}/wrangler.log`, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

// ---------------------------------------------------------------------------------------------
// The run

const startedAt = Date.now();
let exitCode = 2;
try {
  const [originPort, relayPort, inspectorPort] = [await freePort(), await freePort(), await freePort()];
  const originUrl = `http://127.0.0.1:${originPort}/receipts`;
  const relayUrl = `http://127.0.0.1:${relayPort}`;
  origin = await startOrigin(originPort);
  await startRelay(relayPort, inspectorPort, originUrl);
  console.log(
    `soak: relay ${relayUrl} (wrangler dev, state in ${state}), origin ${originUrl} failing ${options["outage-for"]} s of every ${options["outage-every"]} s; ` +
      `${options.callbacks} callbacks over ${options.conversations} conversations, ${options.concurrency} in flight, retry steps ${RETRY_SCHEDULE}`,
  );

  // The first outage comes 2 s into sending, so that even a short run meets one.
  firstOutageAt = Date.now() + 2000;
  const planned = Array.from({ length: options.callbacks }, (_, n) => ({ n, slot: n % options.conversations }));
  const lanes = Array.from({ length: options.concurrency }, (_, lane) => planned.filter(({ slot }) => slot % options.concurrency === lane));
  // Sending is bounded too: a relay that hangs cannot keep the soak going.
  const sendUntil = Date.now() + options.timeout * 1000 + STARTUP_TIMEOUT_MS;
  const restartAfter = Math.ceil(options.callbacks / 2);
  let sent = 0;
  let restart;
  let downFor = "";
  const onSent = async () => {
    sent++;
    if (sent % 500 === 0) console.log(`soak: ${sent} of ${options.callbacks} callbacks answered (${elapsed(startedAt)})`);
    if (sent !== restartAfter) return;
    // Crash, not shutdown: the whole wrangler process group is killed with callbacks in flight.
    let reopen;
    relayGate = new Promise((resolve) => (reopen = resolve));
    restart = (async () => {
      const downAt = Date.now();
      console.log(`soak: killing the relay (SIGKILL) after ${sent} callbacks, with callbacks in flight and deliveries pending`);
      await stopRelay("SIGKILL");
      await startRelay(relayPort, inspectorPort, originUrl);
      downFor = elapsed(downAt);
      console.log(`soak: relay restarted from its persisted state after ${downFor}`);
    })().finally(reopen);
  };
  await Promise.all(lanes.map((lane) => runLane(relayUrl, lane, sendUntil, onSent)));
  await restart;
  console.log(`soak: all callbacks answered after ${elapsed(startedAt)}; waiting up to ${options.timeout} s for deliveries`);

  // Wait, bounded, until every accepted receipt has reached the origin; then a short grace for late duplicates.
  const waitUntil = Date.now() + options.timeout * 1000;
  const deliveredIds = () => new Set(deliveries.map((delivery) => delivery.soakId));
  let lastReport = Date.now();
  while (Date.now() < waitUntil) {
    const delivered = deliveredIds();
    const missing = [...acceptedIds.keys()].filter((id) => !delivered.has(id)).length;
    if (missing === 0) break;
    if (Date.now() - lastReport >= 10_000) {
      console.log(`soak: ${missing} accepted receipts not delivered yet (${elapsed(startedAt)})`);
      lastReport = Date.now();
    }
    await sleep(500);
  }
  await sleep(3000);

  // Tally.
  const delivered = deliveredIds();
  const lost = [...acceptedIds.keys()].filter((id) => !delivered.has(id));
  const seenWebhookIds = new Set();
  let duplicated = 0;
  for (const delivery of deliveries) {
    if (seenWebhookIds.has(delivery.webhookId)) duplicated++;
    seenWebhookIds.add(delivery.webhookId);
  }
  const seenSoakIds = new Set();
  let sameCallbackTwice = 0;
  for (const delivery of deliveries) {
    if (seenSoakIds.has(delivery.soakId)) sameCallbackTwice++;
    seenSoakIds.add(delivery.soakId);
  }
  const notAccepted = [...delivered].filter((id) => id !== undefined && !acceptedIds.has(id)).length;
  // Out of order: a receipt delivered after one its conversation accepted later (first deliveries only).
  let outOfOrder = 0;
  const acceptedIndex = new Map([...acceptedBySlot.values()].flatMap((ids) => ids.map((id, index) => [id, index])));
  const latestBySlot = new Map();
  const firstDelivery = new Set();
  const examples = [];
  for (const delivery of deliveries) {
    const callback = acceptedIds.get(delivery.soakId);
    if (!callback || firstDelivery.has(delivery.soakId)) continue;
    firstDelivery.add(delivery.soakId);
    const index = acceptedIndex.get(delivery.soakId);
    const latest = latestBySlot.get(callback.slot) ?? -1;
    if (index < latest) {
      outOfOrder++;
      if (examples.length < 3) examples.push(`${delivery.conversation}: accepted #${index} delivered after #${latest}`);
    } else latestBySlot.set(callback.slot, index);
  }
  const byProvider = {};
  for (const { slot } of planned) {
    const provider = providerOf(KINDS[slot % KINDS.length]);
    byProvider[provider] = (byProvider[provider] ?? 0) + 1;
  }

  const answerText = [...answers.entries()].map(([status, count]) => `${status}×${count}`).join(", ");
  console.log(
    `soak: sent ${sent} of ${options.callbacks} callbacks (${Object.entries(byProvider)
      .map(([name, count]) => `${name} ${count}`)
      .join(", ")}) over ${options.conversations} conversations; relay restarted once (down ${downFor || "n/a"})`,
  );
  console.log(
    `soak: relay answers ${answerText || "none"}; ${networkErrors} attempts failed on the network; origin answered 503 to ${originStats.outageAnswers} deliveries in outage windows; ${originStats.badSignatures} bad signatures; ${originStats.unidentified} deliveries without a soakId`,
  );
  console.log(
    `soak: accepted ${acceptedIds.size}, delivered ${[...delivered].filter((id) => acceptedIds.has(id)).length}, lost ${lost.length}, duplicated ${duplicated}, out-of-order ${outOfOrder}` +
      ` (delivered though never acknowledged: ${notAccepted}; same callback delivered under two webhook-ids: ${Math.max(0, sameCallbackTwice - duplicated)}) in ${elapsed(startedAt)}`,
  );
  for (const example of examples) console.log(`soak:   out of order: ${example}`);
  if (lost.length > 0) console.log(`soak:   lost, e.g.: ${lost.slice(0, 5).join(" ")}`);
  const failed = lost.length > 0 || outOfOrder > 0 || originStats.badSignatures > 0 || acceptedIds.size === 0;
  exitCode = failed ? 1 : 0;
  if (failed) console.log(`soak: the end of wrangler's log:\n${tailOfLog(20)}`);
  console.log(failed ? "soak: FAIL" : "soak: PASS (nothing lost, nothing out of order, every delivery correctly signed)");
} catch (error) {
  console.error(`soak: ${error instanceof Error ? error.message : error}\nsoak: the end of wrangler's log:\n${tailOfLog(20)}`);
  exitCode = 2;
} finally {
  await stopRelay("SIGINT");
  cleanupNow();
  process.exit(exitCode);
}

#!/usr/bin/env node
// Benchmark on 127.0.0.1 only. The relay (bundled with a meter: bench/metered-worker.ts) and a no-op
// worker (bench/noop-worker.ts) run in workerd directly through Miniflare's API (the Miniflare that
// the pinned wrangler ships), not under `wrangler dev`, whose proxy and per-line logging cost more
// than the relay. Each scenario alternates no-op and relay runs (ABBA) and reports medians; the meter
// gives rows read/written, KV writes, object requests and alarms per receipt, priced with the dated
// table below. Writes bench/results.json and bench/results.svg. Stops by itself; cleans up on exit.
//   node scripts/bench.mjs [--seconds 5] [--connections 8] [--pairs 3] [--quick] [--only <regex>] ...
//   node scripts/bench.mjs --help
import { execFileSync } from "node:child_process";
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { root } from "./dev-vars.mjs";

// ---------------------------------------------------------------------------------------------
// Prices: Workers Paid list prices in USD, beyond the included monthly amounts, checked 2026-12-03.
//   Workers requests $0.30/M: https://developers.cloudflare.com/workers/platform/pricing/
//   Durable Objects requests $0.15/M ("includes HTTP requests, RPC sessions, WebSocket messages and
//   alarm invocations"; every RPC method call is one request); SQLite rows read $0.001/M, rows written
//   $1.00/M: https://developers.cloudflare.com/durable-objects/platform/pricing/
//   KV writes (and deletes) $5.00/M, reads $0.50/M: https://developers.cloudflare.com/kv/platform/pricing/
//   Analytics Engine data points written $0.25/M: https://developers.cloudflare.com/analytics/analytics-engine/pricing/
//   Queues $0.40/M operations, each 64 KB written, read or deleted one operation, so 3 per message
//   delivered once: https://developers.cloudflare.com/queues/platform/pricing/ (the accept queue).
// Not counted: CPU time (Workers: $0.02 per million CPU ms; cpu_us below is local workerd CPU, not
// billed CPU), Durable Object duration (GB-s, wall-clock while active) and stored GB-months.
// A `setAlarm()` is priced as one row written (the alarm is a row of the object's SQLite storage):
// it is reported apart (alarms_set_per_receipt) so that it can be left out.
export const PRICES = {
  checked: "2026-12-03",
  workerRequests: 0.3,
  objectRequests: 0.15,
  rowsWritten: 1.0,
  rowsRead: 0.001,
  kvWrites: 5.0,
  kvReads: 0.5,
  analyticsPoints: 0.25,
  queueOperations: 0.4,
};

// ---------------------------------------------------------------------------------------------
// Options

const OPTIONS = {
  seconds: { value: 5, min: 1, max: 120, help: "seconds per load run" },
  connections: { value: 8, min: 1, max: 256, help: "concurrent connections per load run" },
  pairs: { value: 3, min: 1, max: 20, help: "ABBA pairs (no-op, relay) per scenario" },
  "hot-seconds": { value: 10, min: 2, max: 300, help: "seconds of load on the hot conversation" },
  "quiet-seconds": { value: 65, min: 5, max: 600, help: "measured window of the quiet storage cases (> the 60 s snapshot interval)" },
  "quiet-conversations": { value: 100, min: 1, max: 5000, help: "conversations in the quiet storage cases" },
  "quiet-spacing": { value: 3, min: 1, max: 60, help: "seconds between two receipts of one quiet conversation" },
  "burst-seconds": { value: 10, min: 1, max: 60, help: "seconds of each load run of the burst into one conversation" },
  "burst-connections": { value: 32, min: 1, max: 256, help: "concurrent connections of the burst into one conversation" },
  "burst-pairs": { value: 1, min: 1, max: 10, help: "no-op/relay pairs of the burst into one conversation" },
};
const LOG_LEVELS = ["debug", "info", "warn", "error"];
const FLAGS = {
  quick: "smoke run: 1 pair of 2 s runs, 5 s hot load, 12 s quiet window (its KV figure is then not steady state)",
};

function parseOptions(argv) {
  const values = Object.fromEntries(Object.entries(OPTIONS).map(([name, option]) => [name, option.value]));
  values.quick = false;
  values.only = undefined;
  values["log-level"] = "warn";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") {
      console.log("usage: node scripts/bench.mjs [options]   (npm run bench -- [options])");
      for (const [name, { value, help }] of Object.entries(OPTIONS)) console.log(`  --${name.padEnd(20)} ${help} (default ${value})`);
      for (const [name, help] of Object.entries(FLAGS)) console.log(`  --${name.padEnd(20)} ${help}`);
      console.log(`  --${"only".padEnd(20)} run only the scenarios whose id matches this regex (ids: ${SCENARIO_IDS.join(", ")})`);
      console.log(`  --${"log-level".padEnd(20)} the relay's LOG_LEVEL: ${LOG_LEVELS.join(", ")} (default warn, as deployed)`);
      process.exit(0);
    }
    const name = arg.replace(/^--/, "");
    if (name in FLAGS) {
      values[name] = true;
      continue;
    }
    if (name === "log-level") {
      values[name] = argv[++i];
      if (!LOG_LEVELS.includes(values[name])) fail(`bad --log-level: one of ${LOG_LEVELS.join(", ")}`);
      continue;
    }
    if (name === "only") {
      try {
        values.only = new RegExp(argv[++i] ?? "");
      } catch {
        fail(`bad --only regex`);
      }
      continue;
    }
    const option = OPTIONS[name];
    const value = Number(argv[i + 1]);
    if (!arg.startsWith("--") || !option || !Number.isInteger(value) || value < option.min || value > option.max) {
      fail(`bad option ${arg} ${argv[i + 1] ?? ""}: see --help (each takes an integer within its bounds)`);
    }
    values[name] = value;
    i++;
  }
  if (values.quick) {
    const given = (name) => argv.includes(`--${name}`);
    if (!given("seconds")) values.seconds = 2;
    if (!given("pairs")) values.pairs = 1;
    if (!given("hot-seconds")) values["hot-seconds"] = 5;
    if (!given("quiet-seconds")) values["quiet-seconds"] = 12;
    if (!given("quiet-conversations")) values["quiet-conversations"] = 40;
    if (!given("burst-seconds")) values["burst-seconds"] = 5;
  }
  return values;
}

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Settings: fresh secrets, passed to workerd as bindings (wrangler.toml is not read)

const hex = (bytes) => randomBytes(bytes).toString("hex");
const SECRETS = {
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
const held = (extra = {}) => ({ ...BASE_SETTINGS, LOG_LEVEL: options["log-level"], ...extra });
const forwardingTo = (origin, extra = {}) => ({ ...BASE_SETTINGS, LOG_LEVEL: options["log-level"], ORIGIN_URL: origin.url, FORWARD_SECRET, ...extra });
const without = (settings, name) => Object.fromEntries(Object.entries(settings).filter(([key]) => key !== name));

// ---------------------------------------------------------------------------------------------
// Callbacks: every one fresh and correctly signed (scripts/send-samples.mjs, scripts/soak.mjs)

const fixture = (name) => JSON.parse(readFileSync(join(root, "test/fixtures", `${name}.json`), "utf8"));
const FIXTURES = {
  easemob: fixture("easemob-read_ack-single"),
  tencent: fixture("tencent-C2C.CallbackAfterMsgReadReceipt"),
  tencentGroup: fixture("tencent-Group.CallbackAfterReadReceipt"),
  openim: fixture("openim-callbackAfterSingleMsgReadCommand"),
  stream: fixture("stream-message.read"),
  sendbird: fixture("sendbird-group_channel-message_read"),
};
const RUN = hex(3);
let sequence = 0;
const md5 = (text) => createHash("md5").update(text).digest("hex");
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const hmac = (key, text) => createHmac("sha256", key).update(text).digest("hex");
const JSON_HEADERS = Object.freeze({ "content-type": "application/json" });

/** `conversations` bounds how many conversations the callbacks spread over. */
const generators = {
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
  },
  /** A group read burst: every callback one more member of one group reading message 1 (Tencent never retries). */
  tencentGroup({ group }) {
    const n = ++sequence;
    const body = structuredClone(FIXTURES.tencentGroup);
    body.GroupId = group;
    body.EventTime = String(Date.now());
    body.GroupMsgReceiptList = [{ MsgSeq: 1, ReadNum: n, UnreadNum: 0, ReadReceiptMembers: [{ Member_Account: `m${RUN}-${n}` }] }];
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
const randomAddress = () => `10.${randomBytes(3).join(".")}`;

// ---------------------------------------------------------------------------------------------
// Scenarios

const SCENARIOS = [
  {
    id: "disabled",
    name: "provider disabled (503)",
    settings: () => without(held(), "EASEMOB_SECRET"),
    request: () => generators.easemob({ conversations: 1000 }),
  },
  {
    id: "refused",
    name: "refused: bad signature (401)",
    settings: () => held(),
    request: () => {
      const request = generators.easemob({ conversations: 1000, sign: false });
      return { ...request, headers: { ...request.headers, "cf-connecting-ip": randomAddress() } };
    },
  },
  {
    id: "duplicate",
    name: "duplicate (the same callback again)",
    settings: () => held(),
    setup: () => ({ fixedAt: Date.now() }),
    request: (state) => generators.easemob({ conversations: 1, fixedAt: state.fixedAt }),
  },
  { id: "accepted_1", name: "accepted, 1 conversation (held)", settings: () => held(), request: () => generators.easemob({ conversations: 1 }) },
  {
    id: "accepted_1000",
    name: "accepted, 1,000 conversations (held)",
    prime: 1000,
    settings: () => held(),
    request: () => generators.easemob({ conversations: 1000 }),
  },
  {
    id: "forwarded_1",
    name: "accepted + forwarded, 1 conversation",
    forwarded: true,
    settings: ({ origin }) => forwardingTo(origin),
    request: () => generators.easemob({ conversations: 1 }),
  },
  {
    id: "forwarded_1000",
    name: "accepted + forwarded, 1,000 conversations",
    forwarded: true,
    prime: 1000,
    settings: ({ origin }) => forwardingTo(origin),
    request: () => generators.easemob({ conversations: 1000 }),
  },
  ...["tencent", "openim", "stream", "sendbird"].map((provider) => ({
    id: `${provider}_1000`,
    name: `${provider}: accepted, 1,000 conversations (held)`,
    prime: 1000,
    settings: () => held(),
    request: () => generators[provider]({ conversations: 1000 }),
  })),
];
const SCENARIO_IDS = [...SCENARIOS.map((scenario) => scenario.id), "hot", "quiet", "burst"];

// ---------------------------------------------------------------------------------------------
// Processes, temp dirs and cleanup

const options = parseOptions(process.argv.slice(2));
const HOST = "127.0.0.1";
const COMPATIBILITY_DATE = "2026-04-20"; // wrangler.toml's; it sets no compatibility_flags
const COMPATIBILITY_FLAGS = [];
// The Miniflare that the pinned wrangler runs (`wrangler dev` and the tests use it): its workerd is
// the one that wrangler.toml's compatibility date is pinned against.
const wranglerRequire = createRequire(createRequire(import.meta.url).resolve("wrangler/package.json"));
const { Miniflare } = wranglerRequire("miniflare");
const MINIFLARE_VERSION = JSON.parse(readFileSync(wranglerRequire.resolve("miniflare/package.json"), "utf8")).version;
const ESBUILD = join(root, "node_modules/.bin/esbuild");

const temp = mkdtempSync(join(tmpdir(), "receipt-relay-bench-"));
const instances = new Set();
const servers = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let cleanedUp = false;
function killChildrenNow() {
  for (const instance of instances) {
    try {
      if (instance.pid) process.kill(instance.pid, "SIGKILL");
    } catch {}
  }
  for (const server of servers) {
    server.closeAllConnections?.();
    server.close();
  }
}
function cleanupNow() {
  if (cleanedUp) return;
  cleanedUp = true;
  killChildrenNow();
  rmSync(temp, { recursive: true, force: true });
}
async function cleanup() {
  for (const instance of [...instances]) await instance.dispose();
  cleanupNow();
}
process.on("exit", cleanupNow);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    console.error(`bench: ${signal}, stopping`);
    cleanupNow();
    process.exit(130);
  });
}

/** The backstop, should a phase hang: every phase is bounded on its own. */
const plannedSeconds =
  SCENARIOS.length * (options.pairs * 2 * (options.seconds + 20) + 40) +
  2 * (options["hot-seconds"] + 60) +
  options["quiet-seconds"] +
  options["burst-pairs"] * 2 * (options["burst-seconds"] + 40) +
  240;
setTimeout(() => {
  console.error("bench: hard deadline passed, stopping");
  process.exit(2);
}, plannedSeconds * 1000).unref();

// ---------------------------------------------------------------------------------------------
// Building and starting workers

function bundle(entry, name) {
  const outdir = join(temp, `build-${name}`);
  mkdirSync(outdir, { recursive: true });
  // As wrangler bundles src/index.ts (conditions workerd, worker, browser; ESM; cloudflare:* external).
  execFileSync(
    ESBUILD,
    [
      join(root, entry),
      "--bundle",
      "--format=esm",
      "--platform=neutral",
      "--target=es2022",
      "--conditions=workerd,worker,browser",
      "--main-fields=browser,module,main",
      "--external:cloudflare:*",
      "--external:node:*",
      "--log-level=warning",
      `--outfile=${join(outdir, "worker.js")}`,
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  return join(outdir, "worker.js");
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** /proc/<pid>/stat: [comm, ppid, utime+stime ticks]. */
function procStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = text.lastIndexOf(")");
    const comm = text.slice(text.indexOf("(") + 1, close);
    const fields = text.slice(close + 2).split(" ");
    return { comm, ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}
function workerdChildren() {
  const pids = new Set();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry);
    if (stat && stat.ppid === process.pid && stat.comm.startsWith("workerd")) pids.add(Number(entry));
  }
  return pids;
}
/** CPU µs the process has used so far (user + system, all threads). */
const cpuMicros = (pid) => ((procStat(pid)?.ticks ?? NaN) * 1e6) / CLOCK_TICKS;

let instanceCount = 0;
/** wrangler.toml's accept queue and its consumer (Miniflare runs both in workerd). */
const ACCEPT_QUEUE = "receipt-relay-accept";

async function startWorker(scriptPath, { relay = false, settings = {}, acceptQueue = false } = {}) {
  const name = `${relay ? "relay" : "noop"}-${++instanceCount}`;
  const state = join(temp, name);
  const before = workerdChildren();
  const logs = { errors: 0, warnings: 0, samples: [] };
  const mf = new Miniflare({
    host: HOST,
    port: 0,
    modules: true,
    scriptPath,
    modulesRoot: join(scriptPath, ".."),
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    // Tests set CF-Connecting-IP themselves (the refused scenario varies it).
    stripCfConnectingIp: false,
    handleStructuredLogs: ({ level, message }) => {
      if (level === "error") logs.errors++;
      else if (level === "warn") logs.warnings++;
      else return;
      if (logs.samples.length < 5 && !logs.samples.some((sample) => sample.slice(0, 60) === String(message).slice(0, 60))) {
        logs.samples.push(`${level}: ${String(message).slice(0, 300)}`);
      }
    },
    ...(relay
      ? {
          durableObjects: { CONVERSATION: { className: "Conversation", useSQLite: true }, CLAIMS: { className: "CallbackClaims", useSQLite: true } },
          kvNamespaces: ["RECEIPTS_KV"],
          ratelimits: { AUTH_FAILURES: { simple: { limit: 20, period: 60 } } },
          // wrangler.toml's optional metrics dataset (local: accepted and dropped).
          analyticsEngineDatasets: { METRICS: { dataset: "receipt_relay" } },
          bindings: settings,
          ...(acceptQueue
            ? {
                queueProducers: { ACCEPT_QUEUE: { queueName: ACCEPT_QUEUE } },
                queueConsumers: { [ACCEPT_QUEUE]: { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 10 } },
              }
            : {}),
          // In workerd, on disk.
          durableObjectsPersist: join(state, "do"),
          kvPersist: join(state, "kv"),
        }
      : {}),
  });
  const instance = {
    name,
    mf,
    logs,
    pid: undefined,
    url: undefined,
    async dispose() {
      if (!instances.has(instance)) return;
      instances.delete(instance);
      await Promise.race([mf.dispose().catch(() => undefined), sleep(10_000)]);
      try {
        if (instance.pid) process.kill(instance.pid, "SIGKILL");
      } catch {}
      rmSync(state, { recursive: true, force: true });
    },
  };
  instances.add(instance);
  const url = await Promise.race([mf.ready, sleep(60_000).then(() => undefined)]);
  if (!url) throw new Error(`${name}: workerd did not start within 60 s`);
  instance.url = String(url).replace(/\/$/, "");
  const started = [...workerdChildren()].filter((pid) => !before.has(pid));
  instance.pid = started.length === 1 ? started[0] : undefined;
  if (!instance.pid) console.warn(`bench: could not tell ${name}'s workerd process apart (${started.length} new): no CPU figures`);
  return instance;
}

async function meter(instance) {
  const response = await fetch(`${instance.url}/__meter`, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`/__meter answered ${response.status}`);
  return response.json();
}
async function resetMeter(instance) {
  await fetch(`${instance.url}/__meter/reset`, { method: "POST", signal: AbortSignal.timeout(10_000) });
}

// ---------------------------------------------------------------------------------------------
// Origins: count receipts (a batch counts its data.length), answer 204, optionally after a delay

function startOrigin(delayMs = 0) {
  const origin = {
    url: "",
    receipts: 0,
    deliveries: 0,
    /** While true, every delivery is answered 503 (an outage, to build a backlog). */
    failing: false,
    /** When the first delivery after the last reset was answered 2xx. */
    firstOkAt: 0,
    reset() {
      origin.receipts = 0;
      origin.deliveries = 0;
      origin.firstOkAt = 0;
    },
  };
  const server = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      let count = 1;
      try {
        const event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        if (event?.type === "receipt.read.batch" && Array.isArray(event.data)) count = event.data.length;
      } catch {}
      const answer = () => {
        if (origin.failing) {
          response.writeHead(503).end();
          return;
        }
        origin.receipts += count;
        origin.deliveries++;
        if (!origin.firstOkAt) origin.firstOkAt = Date.now();
        response.writeHead(204).end();
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 30_000;
  servers.add(server);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, HOST, () => {
      origin.url = `http://${HOST}:${server.address().port}/receipts`;
      resolve(origin);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Load and settling

function load(instance, makeRequest, seconds, { connections = options.connections, amount } = {}) {
  return new Promise((resolve, reject) => {
    const run = autocannon(
      {
        url: instance.url,
        method: "POST",
        connections,
        // With `amount`, autocannon stops after that many requests (the duration is then ignored):
        // bounded by the caller's timer instead.
        ...(amount ? { amount } : { duration: seconds }),
        timeout: 20,
        // Fresh headers each time: autocannon writes content-length into the object it is given.
        requests: [
          {
            setupRequest: (request) => {
              const made = makeRequest();
              return { ...request, method: "POST", path: made.path, headers: { ...made.headers }, body: made.body };
            },
          },
        ],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    run.on("error", () => undefined);
  });
}

/** One load run, with the workerd process's CPU time across it. */
async function measuredRun(instance, makeRequest, seconds, connections = options.connections) {
  const cpuBefore = instance.pid ? cpuMicros(instance.pid) : NaN;
  const result = await load(instance, makeRequest, seconds, { connections });
  const cpuAfter = instance.pid ? cpuMicros(instance.pid) : NaN;
  const requests = result.requests.total;
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests,
    cpuUs: requests > 0 ? (cpuAfter - cpuBefore) / requests : NaN,
    status: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => [code, count])),
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

const meterSignature = (m) =>
  JSON.stringify([m.conversation.objectRequests, m.conversation.setAlarm, m.conversation.kvPuts, m.conversation.rowsWritten, m.claims.objectRequests]);
const acceptedOf = (m) => m.accepted?.accepted ?? 0;

/**
 * Waits (bounded) until alarms and KV writes have settled: the meter's counters unchanged over two
 * polls and, with an origin, every receipt accepted since the last reset forwarded.
 */
async function settle(instance, origin, maxMs) {
  const startedAt = Date.now();
  let last = "";
  let stableSince = 0;
  let m = await meter(instance);
  while (Date.now() - startedAt < maxMs) {
    const signature = meterSignature(m);
    const delivered = !origin || origin.receipts >= acceptedOf(m);
    if (signature === last && delivered) {
      if (Date.now() - stableSince >= 1000) return { settled: true, ms: Date.now() - startedAt, meter: m };
    } else {
      last = signature;
      stableSince = Date.now();
    }
    await sleep(250);
    m = await meter(instance);
  }
  return { settled: false, ms: Date.now() - startedAt, meter: m };
}

/** A promise bounded in time: past the deadline the phase fails rather than hanging. */
function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

const median = (values) => {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const round = (value, digits = 2) => (Number.isFinite(value) ? Number(value.toFixed(digits)) : null);
const sumStatus = (runs) => {
  const total = {};
  for (const run of runs) for (const [code, count] of Object.entries(run.status)) total[code] = (total[code] ?? 0) + count;
  return total;
};

/** Per accepted receipt (or per callback when nothing was accepted), from a meter reading. */
function perReceipt(m, originReceipts) {
  const accepted = acceptedOf(m);
  const callbacks = m.workerRequests;
  const per = accepted > 0 ? accepted : callbacks;
  const c = m.conversation;
  const alarmRuns = c.requestsByMethod.alarm ?? 0;
  return {
    basis: accepted > 0 ? "accepted receipt" : "callback",
    callbacks,
    accepted,
    duplicates: m.accepted?.duplicate ?? 0,
    forwarded: originReceipts,
    worker_requests_per_receipt: round(callbacks / per, 3),
    rows_written_per_receipt: round(c.rowsWritten / per, 2),
    rows_read_per_receipt: round(c.rowsRead / per, 2),
    kv_puts_per_receipt: round((c.kvPuts + c.kvDeletes) / per, 3),
    object_requests_per_receipt: round(c.objectRequests / per, 3),
    alarm_runs_per_receipt: round(alarmRuns / per, 3),
    alarms_set_per_receipt: round(c.setAlarm / per, 3),
    sql_statements_per_receipt: round(c.sqlStatements / per, 1),
    d1_rows_written_per_receipt: c.d1Statements > 0 ? round(c.d1RowsWritten / per, 2) : undefined,
    analytics_points_per_receipt: round((c.analyticsPoints + m.claims.analyticsPoints + (m.worker?.analyticsPoints ?? 0)) / per, 3),
    // The accept queue: write, read and delete per message sent (each up to 64 KB).
    queue_operations_per_receipt: m.worker?.queueSends ? round((3 * m.worker.queueSends) / per, 3) : undefined,
    worker_kv_puts_per_receipt: m.worker?.kvPuts ? round(m.worker.kvPuts / per, 3) : undefined,
    requests_by_method: c.requestsByMethod,
    claims: {
      rows_written_per_callback: round(m.claims.rowsWritten / Math.max(callbacks, 1), 2),
      rows_read_per_callback: round(m.claims.rowsRead / Math.max(callbacks, 1), 2),
      object_requests_per_callback: round(m.claims.objectRequests / Math.max(callbacks, 1), 3),
    },
    errors_in_objects: c.errors + m.claims.errors,
  };
}

/** USD per million receipts, from per-receipt figures (claims excluded: see the claims note). */
function usdPerMillion(p, { alarmsAsRows = true } = {}) {
  const rowsWritten = p.rows_written_per_receipt + (alarmsAsRows ? p.alarms_set_per_receipt : 0);
  return round(
    p.worker_requests_per_receipt * PRICES.workerRequests +
      p.object_requests_per_receipt * PRICES.objectRequests +
      rowsWritten * PRICES.rowsWritten +
      p.rows_read_per_receipt * PRICES.rowsRead +
      p.kv_puts_per_receipt * PRICES.kvWrites +
      (p.d1_rows_written_per_receipt ?? 0) * PRICES.rowsWritten +
      (p.analytics_points_per_receipt ?? 0) * PRICES.analyticsPoints +
      (p.queue_operations_per_receipt ?? 0) * PRICES.queueOperations,
    3,
  );
}

// ---------------------------------------------------------------------------------------------
// Phases

async function runScenario(scenario, noop, relayScript, origin) {
  const settings = scenario.settings({ origin });
  const relay = await startWorker(relayScript, { relay: true, settings });
  try {
    const state = scenario.setup?.() ?? {};
    const makeRequest = () => scenario.request(state);
    // Warm both (and, for the duplicate, store the callback once; with many conversations, create
    // each one first, so that runs measure existing conversations); then start counting.
    await load(noop, makeRequest, 1);
    if (scenario.prime) await withDeadline(load(relay, makeRequest, 0, { amount: scenario.prime }), 120_000, "priming");
    else await load(relay, makeRequest, 1);
    await settle(relay, scenario.forwarded ? origin : undefined, 30_000);
    await resetMeter(relay);
    origin?.reset();
    const runs = { noop: [], relay: [] };
    let settleMs = 0;
    let unsettled = 0;
    for (let pair = 0; pair < options.pairs; pair++) {
      const order = pair % 2 === 0 ? ["noop", "relay"] : ["relay", "noop"];
      for (const which of order) {
        const instance = which === "noop" ? noop : relay;
        const run = await measuredRun(instance, makeRequest, options.seconds);
        if (which === "relay") {
          // Alarms and deliveries settle before the next run (their CPU is not in cpu_us).
          const settled = await settle(relay, scenario.forwarded ? origin : undefined, scenario.forwarded ? 120_000 : 20_000);
          settleMs += settled.ms;
          if (!settled.settled) unsettled++;
        }
        runs[which].push(run);
      }
    }
    const final = await settle(relay, scenario.forwarded ? origin : undefined, 20_000);
    const storage = perReceipt(final.meter, scenario.forwarded ? origin.receipts : 0);
    const ratios = runs.relay.map((run, i) => run.rps / runs.noop[i].rps);
    const result = {
      id: scenario.id,
      name: scenario.name,
      noop_rps: round(median(runs.noop.map((run) => run.rps)), 0),
      relay_rps: round(median(runs.relay.map((run) => run.rps)), 0),
      ratio: round(median(ratios), 3),
      p50_ms: round(median(runs.relay.map((run) => run.p50)), 1),
      p99_ms: round(median(runs.relay.map((run) => run.p99)), 1),
      cpu_us: round(median(runs.relay.map((run) => run.cpuUs)), 0),
      noop_p50_ms: round(median(runs.noop.map((run) => run.p50)), 1),
      noop_p99_ms: round(median(runs.noop.map((run) => run.p99)), 1),
      noop_cpu_us: round(median(runs.noop.map((run) => run.cpuUs)), 0),
      pair_ratios: ratios.map((ratio) => round(ratio, 3)),
      relay_status: sumStatus(runs.relay),
      relay_errors: runs.relay.reduce((sum, run) => sum + run.errors + run.timeouts, 0),
      settle_ms: settleMs,
      unsettled_runs: unsettled + (final.settled ? 0 : 1),
      storage,
      usd_per_million: storage.accepted > 0 ? usdPerMillion(storage) : undefined,
      relay_log: { errors: relay.logs.errors, warnings: relay.logs.warnings, samples: relay.logs.samples },
    };
    return result;
  } finally {
    await relay.dispose();
  }
}

/** A hot conversation forwarding to an origin 50 ms away: receipts forwarded per second, and the backlog. */
async function runHot(relayScript, slowOrigin, batchMax) {
  const relay = await startWorker(relayScript, { relay: true, settings: forwardingTo(slowOrigin, { FORWARD_BATCH_MAX: String(batchMax) }) });
  try {
    await resetMeter(relay);
    slowOrigin.reset();
    const seconds = options["hot-seconds"];
    const makeRequest = () => generators.easemob({ conversations: 1 });
    const startedAt = Date.now();
    const samples = [];
    const loading = load(relay, makeRequest, seconds);
    let done = false;
    loading.finally(() => (done = true)).catch(() => undefined);
    while (!done && Date.now() - startedAt < (seconds + 30) * 1000) {
      await sleep(1000);
      const m = await meter(relay);
      samples.push({ t: (Date.now() - startedAt) / 1000, accepted: acceptedOf(m), forwarded: slowOrigin.receipts });
    }
    const result = await loading;
    const end = { t: (Date.now() - startedAt) / 1000, accepted: acceptedOf(await meter(relay)), forwarded: slowOrigin.receipts };
    samples.push(end);
    // The window skips the first 2 s (the alarm chain starting up).
    const from = samples.find((sample) => sample.t >= 2) ?? samples[0];
    const window = end.t - from.t;
    const mid = samples[Math.floor(samples.length / 2)];
    // Then a bounded drain: how long the backlog takes to go, if it goes within 30 s.
    const drainStartedAt = Date.now();
    while (Date.now() - drainStartedAt < 30_000 && slowOrigin.receipts < end.accepted) await sleep(250);
    const drained = slowOrigin.receipts >= end.accepted;
    const drainedIn = drained ? round((Date.now() - drainStartedAt) / 1000, 1) : null;
    const capacity = await forwardingCapacity(relay, slowOrigin, makeRequest, seconds);
    return {
      name: `hot conversation, origin 50 ms away, FORWARD_BATCH_MAX=${batchMax}`,
      batch_max: batchMax,
      accepted_rps: round(end.accepted / end.t, 0),
      forwarded_rps: round(window > 0 ? (end.forwarded - from.forwarded) / window : NaN, 0),
      window_s: round(window, 1),
      backlog_mid: mid.accepted - mid.forwarded,
      backlog_end: end.accepted - end.forwarded,
      backlog_growing: end.accepted - end.forwarded > mid.accepted - mid.forwarded + batchMax,
      drained_within_s: drainedIn,
      capacity_backlog: capacity.backlog,
      capacity_rps: capacity.rps,
      relay_p50_ms: result.latency.p50,
      relay_p99_ms: result.latency.p99,
      deliveries: slowOrigin.deliveries,
      receipts_per_delivery: round(slowOrigin.receipts / Math.max(slowOrigin.deliveries, 1), 2),
      relay_log: { errors: relay.logs.errors, warnings: relay.logs.warnings, samples: relay.logs.samples },
    };
  } finally {
    await relay.dispose();
  }
}

/**
 * What the conversation can forward, apart from how fast this machine can accept into it: the
 * origin fails while a backlog builds (the head waits its retry step), then recovers; the rate is
 * the backlog over the time from the first 2xx to the last receipt delivered (bounded to 60 s).
 */
async function forwardingCapacity(relay, origin, makeRequest, seconds) {
  origin.failing = true;
  await load(relay, makeRequest, seconds);
  const accepted = acceptedOf(await meter(relay));
  const backlog = accepted - origin.receipts;
  const delivered = origin.receipts;
  origin.reset();
  origin.failing = false;
  const startedAt = Date.now();
  while (Date.now() - startedAt < 60_000 && origin.receipts < backlog) await sleep(50);
  const doneAt = Date.now();
  const rps = origin.receipts >= backlog && origin.firstOkAt ? round(backlog / Math.max((doneAt - origin.firstOkAt) / 1000, 0.001), 0) : null;
  origin.receipts += delivered;
  return { backlog, rps };
}

/**
 * Quiet conversations: each receives one receipt every `quiet-spacing` seconds, so that each alarm
 * runs on its own. A first round creates the conversations (and publishes their first snapshots);
 * the measured window starts after it, then deliveries and alarms settle.
 */
async function runQuiet(relay, origin, label) {
  try {
    const conversations = options["quiet-conversations"];
    const spacingMs = options["quiet-spacing"] * 1000;
    let slot = 0;
    let networkErrors = 0;
    const send = async () => {
      const n = slot++;
      const body = generators.easemob({ conversations: 1 });
      // One conversation per slot: rewrite the sender (the conversation key) to the slot's.
      const json = JSON.parse(body.body);
      json.from = `q${RUN}${n % conversations}`;
      for (let attempt = 1; ; attempt++) {
        try {
          const headers = { ...body.headers };
          const response = await fetch(`${relay.url}${body.path}`, {
            method: "POST",
            headers,
            body: JSON.stringify(json),
            signal: AbortSignal.timeout(20_000),
          });
          await response.arrayBuffer();
          return response.status;
        } catch (error) {
          networkErrors++;
          if (attempt >= 3) return `network error (${error?.cause?.code ?? error?.message})`;
          await sleep(200);
        }
      }
    };
    const round1 = [];
    for (let i = 0; i < conversations; i += 8) round1.push(...(await Promise.all(Array.from({ length: Math.min(8, conversations - i) }, () => send()))));
    if (round1.some((status) => status !== 200)) throw new Error(`${label}: first round answered ${[...new Set(round1)].join(", ")}`);
    await settle(relay, origin, 60_000);
    await resetMeter(relay);
    origin?.reset();
    const windowMs = options["quiet-seconds"] * 1000;
    const startedAt = Date.now();
    const inFlight = [];
    const statuses = {};
    for (let i = 0; Date.now() - startedAt < windowMs; i++) {
      const due = startedAt + (i * spacingMs) / conversations;
      if (due - startedAt >= windowMs) break;
      await sleep(Math.max(0, due - Date.now()));
      inFlight.push(send().then((status) => (statuses[status] = (statuses[status] ?? 0) + 1)));
    }
    await Promise.all(inFlight);
    const settled = await settle(relay, origin, 120_000);
    const storage = perReceipt(settled.meter, origin ? origin.receipts : 0);
    return {
      ...storage,
      window_s: options["quiet-seconds"],
      conversations,
      spacing_s: options["quiet-spacing"],
      statuses,
      network_errors: networkErrors,
      settled: settled.settled,
    };
  } finally {
    await relay.dispose();
  }
}

/** What the metered worker reads back from a conversation: its stored receipts, counted. */
async function storedIn(instance, conversation) {
  const response = await fetch(`${instance.url}/__meter/stored?conversation=${encodeURIComponent(conversation)}`, { signal: AbortSignal.timeout(30_000) });
  if (!response.ok) throw new Error(`/__meter/stored answered ${response.status}`);
  return response.json();
}

/**
 * A large group's read burst (docs/design.md, "A burst into one conversation"): Tencent group read
 * receipts, one member each, into one conversation from `burst-connections` connections, beside
 * the no-op worker for the ratio. Tencent never retries, so a receipt answered 200 must be stored.
 * Afterwards (the accept queue drained) the conversation's receipts are read back from its object:
 * each one answered 200 stored, none twice, in strictly increasing sequence numbers.
 */
async function runBurst(relayScript, noop) {
  const group = `@TGS#burst${RUN}`;
  const conversation = ["tencent", SECRETS.TENCENT_SDKAPPID, "g", group].map(encodeURIComponent).join(":");
  const relay = await startWorker(relayScript, { relay: true, settings: held(), acceptQueue: true });
  try {
    const makeRequest = () => generators.tencentGroup({ group });
    const seconds = options["burst-seconds"];
    const connections = options["burst-connections"];
    // Warm both; the conversation exists before the burst (its first receipt creates its tables).
    await load(noop, makeRequest, 1, { connections });
    await load(relay, makeRequest, 0, { connections: 1, amount: 20 });
    await settle(relay, undefined, 10_000);
    const before = await storedIn(relay, conversation);
    await resetMeter(relay);
    const runs = { noop: [], relay: [] };
    for (let pair = 0; pair < options["burst-pairs"]; pair++) {
      const order = pair % 2 === 0 ? ["noop", "relay"] : ["relay", "noop"];
      for (const which of order) runs[which].push(await measuredRun(which === "noop" ? noop : relay, makeRequest, seconds, connections));
    }
    const answered200 = runs.relay.reduce((sum, run) => sum + (run.status["200"] ?? 0), 0);
    // Receipts that went through the accept queue are stored when it drains: wait for them (bounded).
    const drainStartedAt = Date.now();
    let after = await storedIn(relay, conversation);
    while (Date.now() - drainStartedAt < 30_000 && after.count - before.count < answered200) {
      await sleep(250);
      after = await storedIn(relay, conversation);
    }
    const drainedInMs = Date.now() - drainStartedAt;
    const settled = await settle(relay, undefined, 20_000);
    const m = settled.meter;
    const storage = perReceipt(m, 0);
    const stored = after.count - before.count;
    const ratios = runs.relay.map((run, i) => run.rps / runs.noop[i].rps);
    const acceptedRps = runs.relay.map((run) => (run.status["200"] ?? 0) / seconds);
    return {
      id: "burst",
      name: "burst into one conversation (Tencent group reads, held)",
      connections,
      seconds_per_run: seconds,
      noop_rps: round(median(runs.noop.map((run) => run.rps)), 0),
      relay_rps: round(median(runs.relay.map((run) => run.rps)), 0),
      accepted_rps: round(median(acceptedRps), 0),
      ratio: round(median(ratios), 3),
      accepted_ratio: round(median(acceptedRps.map((rps, i) => rps / runs.noop[i].rps)), 3),
      p50_ms: round(median(runs.relay.map((run) => run.p50)), 1),
      p99_ms: round(median(runs.relay.map((run) => run.p99)), 1),
      noop_p99_ms: round(median(runs.noop.map((run) => run.p99)), 1),
      cpu_us: round(median(runs.relay.map((run) => run.cpuUs)), 0),
      relay_status: sumStatus(runs.relay),
      relay_errors: runs.relay.reduce((sum, run) => sum + run.errors + run.timeouts, 0),
      answered_200: answered200,
      stored,
      stored_unique: after.unique - before.unique,
      stored_in_order: after.ordered,
      lost: Math.max(0, answered200 - stored),
      duplicated: after.count - after.unique,
      queued: m.worker.queueSends ?? 0,
      usd_per_million: usdPerMillion(storage),
      queue_batches: m.worker.queueBatches ?? 0,
      drained_in_ms: drainedInMs,
      storage,
      relay_log: { errors: relay.logs.errors, warnings: relay.logs.warnings, samples: relay.logs.samples },
    };
  } finally {
    await relay.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Output

const burstColumns = [
  ["connections", (b) => b.connections],
  ["no-op req/s", (b) => b.noop_rps],
  ["accepted/s", (b) => b.accepted_rps],
  ["ratio", (b) => b.accepted_ratio?.toFixed(2)],
  ["p50 ms", (b) => b.p50_ms],
  ["p99 ms", (b) => b.p99_ms],
  [
    "answers",
    (b) =>
      Object.entries(b.relay_status)
        .map(([code, count]) => `${code}×${count}`)
        .join(" "),
  ],
  ["stored", (b) => b.stored],
  ["lost", (b) => b.lost],
  ["duplicated", (b) => b.duplicated],
  ["queued", (b) => b.queued],
  ["obj req", (b) => b.storage.object_requests_per_receipt],
  ["rows w", (b) => b.storage.rows_written_per_receipt],
  ["SQL stmts", (b) => b.storage.sql_statements_per_receipt],
];

function printTable(rows, columns) {
  const widths = columns.map(([title, get]) => Math.max(title.length, ...rows.map((row) => String(get(row) ?? "–").length)));
  const line = (cells) => cells.map((cell, i) => String(cell ?? "–")[i === 0 ? "padEnd" : "padStart"](widths[i])).join("  ");
  console.log(line(columns.map(([title]) => title)));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const row of rows) console.log(line(columns.map(([, get]) => get(row))));
}

function markdownTable(rows, columns) {
  const out = [`| ${columns.map(([title]) => title).join(" | ")} |`, `|${columns.map((_, i) => (i === 0 ? " --- " : " ---: ")).join("|")}|`];
  for (const row of rows) out.push(`| ${columns.map(([, get]) => get(row) ?? "–").join(" | ")} |`);
  return out.join("\n");
}

const escapeXml = (text) => String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

/** A hand-written SVG: relay/no-op ratio per scenario, and $ per million receipts per storage case. */
function svgChart(scenarios, costs, meta) {
  const width = 760;
  const left = 290;
  const barWidth = width - left - 70;
  const rowHeight = 22;
  const parts = [];
  let y = 40;
  parts.push(`<text x="16" y="24" font-size="15" font-weight="bold">receipt-relay benchmark: relay ÷ no-op throughput in workerd (${escapeXml(meta)})</text>`);
  const maxRatio = Math.max(1, ...scenarios.map((s) => s.ratio ?? 0));
  const scale = (value, max) => (Math.max(0, value) / max) * barWidth;
  const targetLine = (value, max, label, top, bottom) =>
    `<line x1="${left + scale(value, max)}" y1="${top}" x2="${left + scale(value, max)}" y2="${bottom}" stroke="#c0392b" stroke-dasharray="4 3"/>` +
    `<text x="${left + scale(value, max) + 3}" y="${top + 10}" font-size="10" fill="#c0392b">${escapeXml(label)}</text>`;
  const top = y;
  for (const s of scenarios) {
    const value = s.ratio ?? 0;
    parts.push(`<text x="${left - 8}" y="${y + 15}" font-size="12" text-anchor="end">${escapeXml(s.name)}</text>`);
    parts.push(`<rect x="${left}" y="${y + 4}" width="${scale(value, maxRatio).toFixed(1)}" height="${rowHeight - 8}" fill="#2e86c1"/>`);
    parts.push(`<text x="${left + scale(value, maxRatio) + 4}" y="${y + 15}" font-size="11">${value.toFixed(2)}</text>`);
    y += rowHeight;
  }
  parts.push(targetLine(0.35, maxRatio, "0.35", top - 8, y));
  parts.push(targetLine(0.7, maxRatio, "0.7", top - 8, y));
  y += 30;
  parts.push(
    `<text x="16" y="${y}" font-size="15" font-weight="bold">USD per million receipts (Workers Paid list prices, ${PRICES.checked}; target ≤ $6)</text>`,
  );
  y += 12;
  const entries = Object.entries(costs).filter(([, value]) => Number.isFinite(value));
  const maxCost = Math.max(8, ...entries.map(([, value]) => value));
  const costTop = y;
  for (const [name, value] of entries) {
    parts.push(`<text x="${left - 8}" y="${y + 15}" font-size="12" text-anchor="end">${escapeXml(name)}</text>`);
    parts.push(
      `<rect x="${left}" y="${y + 4}" width="${scale(value, maxCost).toFixed(1)}" height="${rowHeight - 8}" fill="${value <= 6 ? "#27ae60" : "#e67e22"}"/>`,
    );
    parts.push(`<text x="${left + scale(value, maxCost) + 4}" y="${y + 15}" font-size="11">$${value.toFixed(2)}</text>`);
    y += rowHeight;
  }
  parts.push(targetLine(6, maxCost, "$6", costTop - 4, y));
  y += 16;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join("\n")}\n</svg>\n`;
}

/** The previous bench/results.json with what a `--only` run measured in place of its parts. */
function mergedResults(fresh, ran) {
  let previous = {};
  try {
    previous = JSON.parse(readFileSync(join(root, "bench/results.json"), "utf8"));
  } catch {
    return fresh;
  }
  const merged = { ...previous, environment: fresh.environment, prices_usd_per_million: fresh.prices_usd_per_million };
  const byId = new Map((previous.scenarios ?? []).map((scenario) => [scenario.id, scenario]));
  for (const scenario of fresh.scenarios) byId.set(scenario.id, scenario);
  merged.scenarios = [...byId.values()];
  if (ran.hot) merged.hot_conversation = fresh.hot_conversation;
  if (ran.quiet || fresh.storage["busy conversation, forwarded"]) {
    for (const key of ["storage", "usd_per_million", "usd_per_million_if_set_alarm_is_free"]) merged[key] = { ...previous[key], ...fresh[key] };
  }
  if (ran.burst) merged.burst_one_conversation = fresh.burst_one_conversation;
  const freshTargets = new Set(fresh.targets.map((target) => target.target));
  merged.targets = [...(previous.targets ?? []).filter((target) => !freshTargets.has(target.target)), ...fresh.targets];
  merged.partial_runs = [
    ...(previous.partial_runs ?? []),
    { at: fresh.generated_at, only: String(options.only), options: fresh.options, duration_s: fresh.duration_s },
  ].slice(-10);
  return merged;
}

/** Public RPC methods of the objects (from their source) that the metered worker does not count. */
function unmeteredRpc(metered) {
  const missing = [];
  for (const [kind, file] of [
    ["conversation", "src/conversation/object.ts"],
    ["claims", "src/claims/object.ts"],
  ]) {
    let source = "";
    try {
      source = readFileSync(join(root, file), "utf8");
    } catch {
      continue;
    }
    for (const match of source.matchAll(/^ {2}(?:override\s+)?(?:async\s+)?([A-Za-z_]\w*)\s*\(/gm)) {
      const name = match[1];
      if (["constructor", "if", "for", "while", "switch", "return"].includes(name)) continue;
      if (!metered[kind]?.includes(name)) missing.push(`${kind}.${name}`);
    }
  }
  return missing;
}

// ---------------------------------------------------------------------------------------------
// The run

const wanted = (id) => !options.only || options.only.test(id);
let exitCode = 0;
try {
  const startedAt = Date.now();
  const relayScript = bundle("bench/metered-worker.ts", "relay");
  const noopScript = bundle("bench/noop-worker.ts", "noop");
  const origin = await startOrigin(0);
  const slowOrigin = await startOrigin(50);
  const noop = await startWorker(noopScript);

  // Which RPC methods does the meter see? (The conversation object is being redesigned.)
  {
    const probe = await startWorker(relayScript, { relay: true, settings: held() });
    const missing = unmeteredRpc((await meter(probe)).metered);
    await probe.dispose();
    if (missing.length > 0) console.warn(`bench: public methods not metered as object requests: ${missing.join(", ")} (add them to bench/metered-worker.ts)`);
  }

  console.log(
    `bench: workerd via Miniflare ${MINIFLARE_VERSION} on ${HOST}, ${cpus().length} CPUs, node ${process.version}; ` +
      `${options.pairs} ABBA pair(s) of ${options.seconds} s runs, ${options.connections} connections${options.quick ? " (--quick)" : ""}\n`,
  );

  const scenarios = [];
  for (const scenario of SCENARIOS) {
    if (!wanted(scenario.id)) continue;
    process.stdout.write(`bench: ${scenario.name} ... `);
    const result = await runScenario(scenario, noop, relayScript, origin);
    console.log(`${result.relay_rps} vs ${result.noop_rps} req/s (ratio ${result.ratio})`);
    scenarios.push(result);
  }

  const hot = [];
  if (wanted("hot")) {
    for (const batchMax of [1, 100]) {
      process.stdout.write(`bench: hot conversation, FORWARD_BATCH_MAX=${batchMax} ... `);
      const result = await runHot(relayScript, slowOrigin, batchMax);
      console.log(`${result.forwarded_rps} receipts/s forwarded, backlog ${result.backlog_end}`);
      hot.push(result);
    }
  }

  const storage = {};
  if (wanted("quiet")) {
    console.log(
      `bench: quiet conversations (${options["quiet-conversations"]} conversations, one receipt each every ${options["quiet-spacing"]} s, ${options["quiet-seconds"]} s window), forwarded and held side by side ...`,
    );
    const quietOrigin = await startOrigin(0);
    // Started one after the other (so that each workerd process is told apart), then run side by side.
    const forwardedRelay = await startWorker(relayScript, { relay: true, settings: forwardingTo(quietOrigin) });
    const heldRelay = await startWorker(relayScript, { relay: true, settings: held() });
    const [forwarded, quietHeld] = await Promise.all([runQuiet(forwardedRelay, quietOrigin, "quiet forwarded"), runQuiet(heldRelay, undefined, "quiet held")]);
    storage["quiet conversation, forwarded"] = forwarded;
    storage["quiet, held"] = quietHeld;
  }
  let burst;
  if (wanted("burst")) {
    process.stdout.write(`bench: burst into one conversation, ${options["burst-connections"]} connections ... `);
    burst = await runBurst(relayScript, noop);
    console.log(
      `${burst.accepted_rps} accepted/s vs no-op ${burst.noop_rps} req/s (ratio ${burst.accepted_ratio}), p99 ${burst.p99_ms} ms; ` +
        `${burst.stored} stored of ${burst.answered_200} answered 200 (lost ${burst.lost}, duplicated ${burst.duplicated}, queued ${burst.queued})`,
    );
  }
  const busy = scenarios.find((scenario) => scenario.id === "forwarded_1");
  if (busy) storage["busy conversation, forwarded"] = { ...busy.storage, note: "the 'accepted + forwarded, 1 conversation' runs, after deliveries settled" };
  const usd = Object.fromEntries(Object.entries(storage).map(([name, figures]) => [name, usdPerMillion(figures)]));
  const usdWithoutAlarmRows = Object.fromEntries(Object.entries(storage).map(([name, figures]) => [name, usdPerMillion(figures, { alarmsAsRows: false })]));

  const easemob =
    scenarios.find((scenario) => scenario.id === "accepted_1000") ?? scenarios.find((scenario) => scenario.storage.claims.object_requests_per_callback > 0);
  const claimsNote = easemob
    ? {
        from: easemob.name,
        ...easemob.storage.claims,
        usd_per_million_callbacks: round(
          easemob.storage.claims.object_requests_per_callback * PRICES.objectRequests +
            easemob.storage.claims.rows_written_per_callback * PRICES.rowsWritten +
            easemob.storage.claims.rows_read_per_callback * PRICES.rowsRead,
          3,
        ),
        note: "Easemob callbacks only: each claims its callId in a CallbackClaims object (1 object request, ~1 row written), on top of the figures above",
      }
    : undefined;

  const quiet = storage["quiet conversation, forwarded"];
  const targets = [
    busy && ["rows written per forwarded receipt, busy conversation ≤ 6", busy.storage.rows_written_per_receipt, (v) => v <= 6],
    quiet && ["rows written per forwarded receipt, quiet conversation ≤ 8", quiet.rows_written_per_receipt, (v) => v <= 8],
    quiet && ["KV puts per receipt, quiet conversation, default interval ≤ 0.1", quiet.kv_puts_per_receipt, (v) => v <= 0.1],
    quiet && ["object requests per quiet forwarded receipt ≤ 2", quiet.object_requests_per_receipt, (v) => v <= 2],
    quiet && ["USD per million receipts, quiet and forwarded ≤ 6", usd["quiet conversation, forwarded"], (v) => v <= 6],
    hot[1] && [
      "hot conversation, FORWARD_BATCH_MAX=100, origin 50 ms: forwarding capacity ≥ 1,000 receipts/s",
      hot[1].capacity_rps,
      (v) => v !== null && v >= 1000,
    ],
    hot[1] && ["hot conversation, FORWARD_BATCH_MAX=100: backlog not growing", hot[1].backlog_growing ? "growing" : "bounded", (v) => v === "bounded"],
    scenarios.find((s) => s.id === "accepted_1") && [
      "accepted into one conversation: relay/no-op ≥ 0.35",
      scenarios.find((s) => s.id === "accepted_1").ratio,
      (v) => v >= 0.35,
    ],
    scenarios.find((s) => s.id === "refused") && ["refused: relay/no-op ≥ 0.7", scenarios.find((s) => s.id === "refused").ratio, (v) => v >= 0.7],
    burst && ["burst into one conversation: accepted ≥ 1,000/s", burst.accepted_rps, (v) => v >= 1000],
    burst && ["burst into one conversation: every receipt answered 200 stored once", burst.lost + burst.duplicated, (v) => v === 0],
  ]
    .filter(Boolean)
    .map(([target, value, ok]) => ({ target, value, met: value !== null && value !== undefined && ok(value) }));

  // ---- stdout
  const scenarioColumns = [
    ["scenario", (s) => s.name],
    ["no-op req/s", (s) => s.noop_rps],
    ["relay req/s", (s) => s.relay_rps],
    ["ratio", (s) => s.ratio?.toFixed(2)],
    ["p50 ms", (s) => s.p50_ms],
    ["p99 ms", (s) => s.p99_ms],
    ["CPU µs/req", (s) => s.cpu_us],
    [
      "answers",
      (s) =>
        Object.entries(s.relay_status)
          .map(([code, count]) => `${code}×${count}`)
          .join(" "),
    ],
    ["rows w", (s) => s.storage.rows_written_per_receipt],
    ["rows r", (s) => s.storage.rows_read_per_receipt],
    ["KV puts", (s) => s.storage.kv_puts_per_receipt],
    ["obj req", (s) => s.storage.object_requests_per_receipt],
    ["alarms", (s) => s.storage.alarm_runs_per_receipt],
    ["per", (s) => s.storage.basis],
  ];
  console.log(
    `\nScenarios (medians of ${options.pairs} ABBA pair(s); ratio = median of per-pair relay/no-op; p50/p99/CPU are the relay's; storage columns per accepted receipt, else per callback):\n`,
  );
  printTable(scenarios, scenarioColumns);
  if (hot.length > 0) {
    console.log("\nHot conversation, origin 50 ms away:\n");
    printTable(hot, [
      ["case", (h) => `FORWARD_BATCH_MAX=${h.batch_max}`],
      ["accepted/s", (h) => h.accepted_rps],
      ["forwarded/s", (h) => h.forwarded_rps],
      ["backlog mid", (h) => h.backlog_mid],
      ["backlog end", (h) => h.backlog_end],
      ["growing", (h) => (h.backlog_growing ? "yes" : "no")],
      ["receipts/delivery", (h) => h.receipts_per_delivery],
      ["drained in s", (h) => h.drained_within_s ?? "> 30"],
      ["capacity backlog", (h) => h.capacity_backlog],
      ["capacity receipts/s", (h) => h.capacity_rps ?? "n/a"],
    ]);
  }
  const storageRows = Object.entries(storage).map(([name, figures]) => ({ name, ...figures, usd: usd[name] }));
  const storageColumns = [
    ["case", (s) => s.name],
    ["receipts", (s) => s.accepted],
    ["rows written", (s) => s.rows_written_per_receipt],
    ["rows read", (s) => s.rows_read_per_receipt],
    ["KV puts", (s) => s.kv_puts_per_receipt],
    ["object req", (s) => s.object_requests_per_receipt],
    ["alarm runs", (s) => s.alarm_runs_per_receipt],
    ["alarms set", (s) => s.alarms_set_per_receipt],
    ["$/M receipts", (s) => s.usd?.toFixed(2)],
    ["$/M, setAlarm free", (s) => usdWithoutAlarmRows[s.name]?.toFixed(2)],
  ];
  if (storageRows.length > 0) {
    console.log(
      `\nStorage and cost per receipt (USD per million with Workers Paid list prices of ${PRICES.checked}; setAlarm priced as a row written; CPU and duration not included):\n`,
    );
    printTable(storageRows, storageColumns);
  }
  if (claimsNote) {
    console.log(
      `\nEasemob claims, per callback (not in the figures above): ${claimsNote.rows_written_per_callback} rows written, ${claimsNote.object_requests_per_callback} object requests ($${claimsNote.usd_per_million_callbacks} per million callbacks)`,
    );
  }
  if (targets.length > 0) {
    console.log("\nTargets:");
    for (const target of targets) console.log(`  ${target.met ? "met   " : "NOT MET"}  ${target.target}: ${target.value}`);
  }
  if (burst) {
    console.log("\nBurst into one conversation:\n");
    printTable([burst], burstColumns);
  }
  const logProblems = [...scenarios, ...hot, ...(burst ? [burst] : [])].filter((s) => s.relay_log.errors > 0);
  for (const s of logProblems) console.log(`\nbench: ${s.name}: the relay logged ${s.relay_log.errors} errors, e.g. ${s.relay_log.samples.join(" | ")}`);

  // ---- files
  const meta = `${options.pairs} pair(s) × ${options.seconds} s, ${options.connections} connections, ${cpus().length} CPUs`;
  const results = {
    generated_at: new Date().toISOString(),
    environment: {
      node: process.version,
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model,
      miniflare: MINIFLARE_VERSION,
      compatibility_date: COMPATIBILITY_DATE,
      host: HOST,
    },
    options: { ...options, only: options.only ? String(options.only) : undefined },
    prices_usd_per_million: PRICES,
    scenarios: scenarios.map(({ relay_log, ...rest }) => ({ ...rest, relay_log_errors: relay_log.errors, relay_log_samples: relay_log.samples })),
    hot_conversation: hot.map(({ relay_log, ...rest }) => ({ ...rest, relay_log_errors: relay_log.errors })),
    storage,
    usd_per_million: usd,
    usd_per_million_if_set_alarm_is_free: usdWithoutAlarmRows,
    easemob_claims: claimsNote,
    burst_one_conversation: burst
      ? (({ relay_log, ...rest }) => ({ ...rest, relay_log_errors: relay_log.errors, relay_log_samples: relay_log.samples }))(burst)
      : undefined,
    targets,
    duration_s: round((Date.now() - startedAt) / 1000, 0),
  };
  mkdirSync(join(root, "bench"), { recursive: true });
  // With --only, the parts that ran replace theirs in the previous results; the rest is kept.
  const written = options.only ? mergedResults(results, { hot: wanted("hot"), quiet: wanted("quiet"), burst: wanted("burst") }) : results;
  writeFileSync(join(root, "bench/results.json"), `${JSON.stringify(written, null, 2)}\n`);
  writeFileSync(join(root, "bench/results.svg"), svgChart(written.scenarios ?? scenarios, written.usd_per_million ?? usd, meta));
  console.log(`\nMarkdown (for the README):\n`);
  console.log(markdownTable(scenarios, scenarioColumns.slice(0, 7).concat(scenarioColumns.slice(8, 12))));
  if (storageRows.length > 0) console.log(`\n${markdownTable(storageRows, storageColumns)}`);
  if (burst) console.log(`\n${markdownTable([burst], burstColumns)}`);
  console.log(`\nbench: wrote bench/results.json and bench/results.svg in ${results.duration_s} s`);
} catch (error) {
  console.error(
    `\nbench: ${error instanceof Error ? (error.stack ?? error.message) : error}${error?.cause ? ` (cause: ${error.cause?.code ?? error.cause})` : ""}`,
  );
  exitCode = 1;
} finally {
  await cleanup();
  process.exit(exitCode);
}

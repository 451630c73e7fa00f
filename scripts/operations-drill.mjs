#!/usr/bin/env node
// Operations drill on 127.0.0.1 only, under `wrangler dev --test-scheduled`: signed callbacks of every
// registered provider (src/providers/index.ts), an origin that fails for a while, and everything an operator sees of it (issue 8):
// the conversation list and stats show the failures, a dead letter raises one alert digest and
// recovery one more, one `POST /v1/replays` redelivers every dead letter across conversations with
// visible progress, and each receipt's attempts are listed. One line per step, then
// "drill passed: …" (exit 0) or "drill FAILED at step …" (exit 1; 2 for a setup error or the
// deadline). Its own temporary --persist-to folder, removed at the end; its own origin and alert
// receiver in this process, on free ports; the wrangler/workerd process group is killed on every exit.
//   node scripts/operations-drill.mjs [--deadline 300]
//
// The timeline (t = when the callbacks are sent; the alert cron is run on demand by the drill):
//   - the origin is down (503): every sample (samples.mjs) of each provider's first conversation
//     (a batch's receipts count each, in every conversation it reaches) become dead letters within
//     seconds (FORWARD_RETRY_SCHEDULE=1,2);
//   - the origin goes into maintenance (503 with Retry-After up to its planned end): a callback in
//     each conversation the samples reach besides those stays pending, so after ALERT_AFTER_SECONDS (60, the least allowed) the cron
//     raises `alert.origin_failing` (dead letters are not pending: they never make a conversation stuck);
//   - the dead-letter digest can only cover dead letters older than the index lag,
//     max(SNAPSHOT_INTERVAL_SECONDS, 60) + 60 = 120 s, so the drill runs that cron 2 minutes after
//     the last dead letter, and once more to see nothing repeated;
//   - the origin recovers; one bulk replay; the held receipts go out at the end of their Retry-After;
//     one more cron run raises `alert.recovered`.
import { readFileSync } from "node:fs";
import { loadDevVars } from "./dev-vars.mjs";
import { startOrigin } from "./lib/origin.mjs";
import { startRelay } from "./lib/relay.mjs";
import { sleep, sleepUntil, WaitTimeout, waitFor as waitUntil } from "./lib/wait.mjs";
import { buildSamples, configuredProviders, exampleProviderSettings, expectedReceipts, first, isSecretName, loadRelay } from "./samples.mjs";

// ---------------------------------------------------------------------------------------------
// Options and settings

const deadlineIndex = process.argv.indexOf("--deadline");
const DEADLINE_SECONDS = deadlineIndex > 0 ? Number(process.argv[deadlineIndex + 1]) : 300;
if (process.argv.includes("--help") || !Number.isInteger(DEADLINE_SECONDS) || DEADLINE_SECONDS < 200 || DEADLINE_SECONDS > 3600) {
  console.log("usage: node scripts/operations-drill.mjs [--deadline SECONDS]   (200 to 3600, default 300: then everything is killed)");
  process.exit(process.argv.includes("--help") ? 0 : 2);
}

const RETRY_SCHEDULE = "1,2";
const ALERT_AFTER_SECONDS = 60;
const SNAPSHOT_INTERVAL_SECONDS = 1;
/** What src/ops/alerts.ts waits before a dead letter can be in a digest: max(SNAPSHOT_INTERVAL_SECONDS, 60) + 60 s. */
const INDEX_LAG_MS = (Math.max(SNAPSHOT_INTERVAL_SECONDS, 60) + 60) * 1000;
const STARTUP_TIMEOUT_MS = 90_000;
const REQUEST_TIMEOUT_MS = 15_000;
const { registry } = await loadRelay();
/** Every registered provider: the drill sends all their samples. */
const PROVIDERS = registry.map((provider) => provider.name);

/**
 * The demo settings (.dev.vars, created from .dev.vars.example by dev-vars.mjs), plus the drill's
 * own. A provider setting .dev.vars lacks (a .dev.vars made before the provider was added) is
 * .dev.vars.example's, so that every registered provider is on.
 * @type {Record<string, string>}
 */
const vars = {
  ...(await exampleProviderSettings()),
  ...Object.fromEntries(Object.entries(loadDevVars()).filter(([, value]) => value.trim() !== "")),
};
const startedAt = Date.now();
const since = (at) => `${((Date.now() - at) / 1000).toFixed(1)} s`;
const clock = (iso) => (iso ? String(iso).slice(11, 23) : "?");

/** Every secret value (the naming rule of scripts/check-config.mjs), to be masked in anything printed from wrangler's log. */
const secretValues = Object.keys(vars)
  .filter(isSecretName)
  .flatMap((name) => (vars[name] ?? "").split(","))
  .map((value) => value.trim())
  .filter((value) => value.length >= 4)
  .sort((a, b) => b.length - a.length);
const redact = (text) => secretValues.reduce((out, secret) => out.split(secret).join("***"), text);

for (const name of ["ADMIN_TOKEN", "FORWARD_SECRET"]) {
  if (!first(vars[name])) {
    console.error(`drill: setting ${name} is empty in .dev.vars; the drill needs the demo settings (delete .dev.vars to recreate it from .dev.vars.example)`);
    process.exit(2);
  }
}
for (const { provider, state } of await configuredProviders(vars)) {
  if (state.state !== "enabled") {
    const why = state.missing ? `set ${state.missing}` : JSON.stringify(state.problems ?? state);
    console.error(`drill: ${provider.name} is ${state.state} by .dev.vars and .dev.vars.example (${why}); the drill needs every registered provider on`);
    process.exit(2);
  }
}
const adminToken = vars.ADMIN_TOKEN.trim();
/** The relay signs alerts with ALERT_SECRET's keys, or FORWARD_SECRET's when it is unset. */
const alertSecret = first(vars.ALERT_SECRET) || first(vars.FORWARD_SECRET);

// ---------------------------------------------------------------------------------------------
// Children and cleanup

/** The relay under `wrangler dev` (scripts/lib/relay.mjs), once started. */
let relay;
/** The origin and alert receiver (scripts/lib/origin.mjs), once started. */
let origin;

let cleanedUp = false;
function cleanupNow() {
  if (cleanedUp) return;
  cleanedUp = true;
  origin?.server.closeAllConnections();
  // wrangler's process group and the temporary directory go with this process (lib/relay.mjs).
}
process.on("exit", cleanupNow);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    console.log(`drill: ${signal}, stopping`);
    cleanupNow();
    process.exit(130);
  });
}

const tailOfLog = (lines) => (relay ? redact(relay.logTail(lines)) : "(the relay did not start)");

/** Lines of wrangler's log with this `msg` (the relay's JSON log lines), parsed; info lines only (wrangler wraps warn and error ones). */
function logLines(msg) {
  try {
    return readFileSync(relay.logPath, "utf8")
      .split("\n")
      .flatMap((line) => {
        const start = line.indexOf("{");
        if (start < 0 || !line.includes(`"msg":"${msg}"`)) return [];
        try {
          return [JSON.parse(line.slice(start))];
        } catch {
          return [];
        }
      });
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Steps

class StepFailure extends Error {}
let currentStep = "setup";
let stepCount = 0;
const check = (condition, message) => {
  if (!condition) throw new StepFailure(message);
};

async function step(name, run) {
  currentStep = name;
  stepCount++;
  const at = Date.now();
  const observed = await run();
  console.log(`drill: [${String(stepCount).padStart(2)}] ${name}: ${observed} (${since(at)}, at ${since(startedAt)})`);
}

/**
 * Polls `probe` until it returns something truthy other than `{ ok: false, … }`; fails the step
 * with `describe(last)` after `timeoutMs`. A step failure inside `probe` fails the step at once.
 */
async function waitFor(probe, timeoutMs, describe, intervalMs = 500) {
  try {
    return await waitUntil("the step's condition", probe, {
      timeoutMs,
      intervalMs,
      describe,
      retryOnError: false,
      ready: (last) => Boolean(last) && last.ok !== false,
    });
  } catch (error) {
    throw error instanceof WaitTimeout ? new StepFailure(error.message) : error;
  }
}

// ---------------------------------------------------------------------------------------------
// The origin and the alert receiver (one server, in this process: lib/origin.mjs)

/** The origin down: 503 to every delivery. */
const ORIGIN_DOWN = { status: 503 };
/** The origin up: 204. */
const ORIGIN_UP = { status: 204 };
/** The end of the announced maintenance (epoch ms). */
let maintenanceEnd = 0;
/** The origin in maintenance: 503 with Retry-After up to its end; past it (the drill late), another 45 s. */
const inMaintenance = () => {
  const now = Date.now();
  return { status: 503, retryAfter: String(now < maintenanceEnd ? Math.ceil((maintenanceEnd - now) / 1000) : 45) };
};
/** The origin's attempts of one webhook-id (one receipt: FORWARD_BATCH_MAX=1), in arrival order. */
const attemptsOfReceipt = (webhookId) => origin.attemptsWithId(webhookId);
const isDelivered = (attempt) => attempt.status === 204;

// ---------------------------------------------------------------------------------------------
// The relay and its API

let relayUrl = "";

async function api(method, path, body) {
  const response = await fetch(`${relayUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    redirect: "manual",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: response.status, json, text, headers: response.headers };
}

/** Every row of the conversation index matching the query (all pages). */
async function listAll(path) {
  const rows = [];
  let cursor;
  for (let page = 0; page < 20; page++) {
    const separator = path.includes("?") ? "&" : "?";
    const answer = await api("GET", `${path}${cursor ? `${separator}cursor=${encodeURIComponent(cursor)}` : ""}`);
    check(answer.status === 200, `GET ${path} answered ${answer.status}: ${answer.text.slice(0, 300)}`);
    rows.push(...(answer.json?.conversations ?? []));
    cursor = answer.json?.cursor;
    if (!cursor) break;
  }
  return rows;
}

/** Runs the every-minute cron once; returns the alerts that arrived meanwhile. */
async function runCron() {
  const before = origin.alerts.length;
  const response = await fetch(`${relayUrl}/__scheduled?cron=*+*+*+*+*`, { signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  check(response.status === 200, `GET /__scheduled?cron=*+*+*+*+* answered ${response.status}: ${text.slice(0, 200)}`);
  // The handler awaits each alert's POST; a moment for anything still on the wire.
  await sleep(300);
  return origin.alerts.slice(before);
}

const describeAlerts = (list) =>
  list.length === 0
    ? "none"
    : list
        .map(
          (alert) =>
            `${alert.type} (${alert.webhookId}: ${alert.data.conversations ?? 0} conversation(s), total ${alert.data.total ?? 0}${alert.data.errors?.length ? `, errors ${JSON.stringify(alert.data.errors)}` : ""})`,
        )
        .join("; ");

/**
 * A callback of the samples, posted; every receipt it makes (id, conversation: a batch makes
 * several), computed by the relay's own provider code.
 */
async function sendSample(sample) {
  const expected = await expectedReceipts(sample);
  check(!("error" in expected), `the ${sample.label} sample is not a receipt for the relay's own code: ${expected.error}`);
  const response = await fetch(new URL(sample.path, relayUrl), {
    method: "POST",
    headers: sample.headers,
    body: sample.body,
    redirect: "manual",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  check(response.status === 200, `${sample.label} answered ${response.status}: ${text.slice(0, 200)}`);
  return expected.receipts.map((receipt) => ({ provider: sample.provider, label: sample.label, ...receipt }));
}

const count = (list, key) => list.reduce((map, item) => map.set(item[key], (map.get(item[key]) ?? 0) + 1), new Map());
const sameSet = (a, b) => a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
const short = (key) => (key.length > 60 ? `${key.slice(0, 57)}…` : key);

// ---------------------------------------------------------------------------------------------
// The run

let exitCode = 2;
const deadline = setTimeout(() => {
  console.error(`drill FAILED at step "${currentStep}": the hard deadline (${DEADLINE_SECONDS} s) passed; everything is killed`);
  console.error(`drill: the end of wrangler's log:\n${tailOfLog(25)}`);
  cleanupNow();
  process.exit(2);
}, DEADLINE_SECONDS * 1000);
deadline.unref();

/** What the drill saw, for the summary. */
const figures = {};
try {
  // ---- Setup.
  origin = await startOrigin({ secrets: [first(vars.FORWARD_SECRET)], alertSecrets: [alertSecret], answer: ORIGIN_DOWN });
  const originUrl = origin.url;
  const alertUrl = origin.alertUrl;

  // The demo settings, then the drill's, in the relay's own env file (over whatever .dev.vars says).
  const settings = {
    ...Object.fromEntries(Object.entries(vars).filter(([, value]) => value.trim() !== "")),
    ORIGIN_URL: originUrl,
    // The drill counts the relay's info lines (delivered, alert_sent, replays), which the default, warn, drops.
    LOG_LEVEL: "info",
    FORWARD_RETRY_SCHEDULE: RETRY_SCHEDULE,
    FORWARD_TIMEOUT_MS: "5000",
    FORWARD_BATCH_MAX: "1",
    SNAPSHOT_INTERVAL_SECONDS: String(SNAPSHOT_INTERVAL_SECONDS),
    ALERT_URL: alertUrl,
    ALERT_AFTER_SECONDS: String(ALERT_AFTER_SECONDS),
    ALERT_FORMAT: "standard",
  };

  await step("start", async () => {
    relay = await startRelay({
      settings,
      args: ["--test-scheduled"],
      prefix: "receipt-relay-ops-drill-",
      ready: (answer) =>
        PROVIDERS.every((name) => answer?.providers?.[name]?.state === "enabled") &&
        answer?.forwarding?.state === "on" &&
        answer?.api?.state === "on" &&
        answer?.alerts?.state === "on",
      startupTimeoutMs: STARTUP_TIMEOUT_MS,
    });
    relayUrl = relay.url;
    const health = relay.health;
    return `relay ${relayUrl} (wrangler dev --test-scheduled, D1 migrated, state in ${relay.dir}), /healthz ${health.status}: ${PROVIDERS.join(", ")} enabled, forwarding on, alerts ${health.alerts.format}; origin and alert receiver on 127.0.0.1:${origin.port}; FORWARD_RETRY_SCHEDULE=${RETRY_SCHEDULE} SNAPSHOT_INTERVAL_SECONDS=${SNAPSHOT_INTERVAL_SECONDS} ALERT_AFTER_SECONDS=${ALERT_AFTER_SECONDS}`;
  });

  await step("baseline cron", async () => {
    const got = await runCron();
    check(got.length === 0, `a cron run before any callback raised ${describeAlerts(got)}`);
    return "GET /__scheduled?cron=*+*+*+*+* ran the alert cron: no alert (it starts its dead-letter window)";
  });

  // ---- Phase 1: the origin is down; one callback per sample.
  const samples = await buildSamples(vars);
  const sentAt = Date.now();
  let phase1 = [];
  /**
   * Conversations of each provider's samples that reach its first sample's conversation (all that a
   * batch reaches too): their samples are sent now; the others' later.
   */
  const firstKeys = new Set();
  await step("callbacks while the origin is down", async () => {
    const plan = [];
    for (const provider of PROVIDERS) {
      const own = samples.filter((sample) => sample.provider === provider);
      check(own.length > 0, `no ${provider} sample (is its setting in .dev.vars?)`);
      const head = await expectedReceipts(own[0]);
      check(!("error" in head), `the first ${provider} sample is not a receipt: ${head.error}`);
      const headKeys = new Set(head.receipts.map((receipt) => receipt.conversation));
      for (const sample of own) {
        const expected = await expectedReceipts(sample);
        if ("error" in expected || !expected.receipts.some((receipt) => headKeys.has(receipt.conversation))) continue;
        plan.push(sample);
        for (const receipt of expected.receipts) firstKeys.add(receipt.conversation);
      }
    }
    for (const sample of plan) phase1.push(...(await sendSample(sample)));
    const byProvider = count(phase1, "provider");
    figures.callbacks = plan.length;
    return `${plan.length} signed callbacks answered 200, making ${phase1.length} receipts (${[...byProvider].map(([name, n]) => `${name} ${n}`).join(", ")}) in ${firstKeys.size} conversations; the origin answers 503`;
  });

  const expectedFailed = count(phase1, "conversation");
  let failingRows = [];
  await step("dead letters", async () => {
    failingRows = await waitFor(
      async () => {
        const rows = await listAll("/v1/conversations?status=failing");
        const ok = rows.length === expectedFailed.size && rows.every((row) => expectedFailed.get(row.conversation) === row.failed);
        return ok ? rows : { ok: false, rows };
      },
      45_000,
      (last) =>
        `GET /v1/conversations?status=failing shows ${JSON.stringify((last?.rows ?? []).map((row) => [row.conversation, row.failed]))}, expected ${JSON.stringify([...expectedFailed])}`,
    );
    const deadLetters = await listAll("/v1/dead-letters");
    check(
      sameSet(
        deadLetters.map((row) => row.conversation),
        [...expectedFailed.keys()],
      ),
      `GET /v1/dead-letters lists ${JSON.stringify(deadLetters.map((row) => row.conversation))}, not the ${expectedFailed.size} failing conversations`,
    );
    const refused = phase1.map((receipt) => attemptsOfReceipt(receipt.id).filter((attempt) => attempt.status === 503).length);
    check(
      refused.every((n) => n === RETRY_SCHEDULE.split(",").length + 1),
      `the origin saw ${JSON.stringify(refused)} refused attempts per receipt, expected ${RETRY_SCHEDULE.split(",").length + 1} each`,
    );
    const errors = [...new Set(failingRows.map((row) => row.lastError))];
    figures.deadLetters = failingRows.reduce((sum, row) => sum + row.failed, 0);
    return `GET /v1/conversations?status=failing and GET /v1/dead-letters list the same ${failingRows.length} conversations, ${failingRows
      .map((row) => `${short(row.conversation)} failed ${row.failed}`)
      .join(", ")}; last error ${JSON.stringify(errors)}; the origin refused each receipt ${refused[0]} times (${since(sentAt)} after sending)`;
  });
  const oldestFailed = failingRows.map((row) => Date.parse(row.oldestFailedAt));
  check(
    oldestFailed.every((at) => Number.isFinite(at)),
    `a failing row has no oldestFailedAt: ${JSON.stringify(failingRows)}`,
  );
  const minOldest = Math.min(...oldestFailed);
  const maxOldest = Math.max(...oldestFailed);

  await step("stats", async () => {
    const stats = await waitFor(
      async () => {
        const answer = await api("GET", "/v1/stats?window=1h");
        check(answer.status === 200, `GET /v1/stats?window=1h answered ${answer.status}: ${answer.text.slice(0, 300)}`);
        const json = answer.json;
        const settled = json.deliveries === undefined || json.deliveries.failed >= figures.deadLetters;
        return json.deadLetters === figures.deadLetters && settled ? json : { ok: false, json };
      },
      15_000,
      (last) =>
        `GET /v1/stats?window=1h shows deadLetters ${last?.json?.deadLetters}, deliveries ${JSON.stringify(last?.json?.deliveries)}; expected ${figures.deadLetters} dead letters`,
    );
    check(
      stats.conversations?.withDeadLetters === expectedFailed.size,
      `stats conversations.withDeadLetters is ${stats.conversations?.withDeadLetters}, expected ${expectedFailed.size}`,
    );
    const parts = [
      `deadLetters ${stats.deadLetters}`,
      `conversations ${JSON.stringify(stats.conversations)}`,
      `backlog ${stats.backlog}`,
      `oldestFailureAt ${clock(stats.oldestFailureAt)}`,
    ];
    if (stats.callbacks?.byProvider) {
      const byProvider = count(phase1, "provider");
      for (const [provider, n] of byProvider) {
        check(
          stats.callbacks.byProvider[provider]?.accepted === n,
          `stats callbacks.byProvider.${provider}.accepted is ${stats.callbacks.byProvider[provider]?.accepted}, expected ${n}`,
        );
      }
      parts.push(
        `callbacks.byProvider ${JSON.stringify(Object.fromEntries(Object.entries(stats.callbacks.byProvider).map(([name, value]) => [name, value.accepted])))}`,
      );
    } else parts.push("callbacks.byProvider absent");
    if (stats.deliveries) {
      const retries = RETRY_SCHEDULE.split(",").length * figures.deadLetters;
      check(stats.deliveries.failed === figures.deadLetters, `stats deliveries.failed is ${stats.deliveries.failed}, expected ${figures.deadLetters}`);
      check(
        stats.deliveries.retried === retries,
        `stats deliveries.retried is ${stats.deliveries.retried}, expected ${retries} (${RETRY_SCHEDULE.split(",").length} per dead letter)`,
      );
      parts.push(`deliveries ${JSON.stringify(stats.deliveries)}`);
    } else parts.push("deliveries absent");
    return `GET /v1/stats?window=1h: ${parts.join(", ")}`;
  });

  // ---- Phase 2: the origin in maintenance; receipts held by its Retry-After stay pending (stuck).
  // The maintenance is announced to end after the dead-letter digest can be raised (maxOldest + 120 s).
  maintenanceEnd = maxOldest + INDEX_LAG_MS + 12_000;
  origin.answer(inMaintenance);
  let phase2 = [];
  await step("callbacks during maintenance", async () => {
    const fresh = await buildSamples(vars);
    // Samples whose every receipt goes to a conversation of its own: neither a dead letter's nor another held one's.
    const planned = [];
    const plannedKeys = new Set();
    for (const sample of fresh) {
      const expected = await expectedReceipts(sample);
      if ("error" in expected) continue;
      const keys = expected.receipts.map((receipt) => receipt.conversation);
      if (keys.some((key) => firstKeys.has(key) || plannedKeys.has(key))) continue;
      planned.push(sample);
      for (const key of keys) plannedKeys.add(key);
    }
    check(planned.length > 0, "no sample of a conversation other than the dead letters'");
    for (const sample of planned) phase2.push(...(await sendSample(sample)));
    const keys = [...plannedKeys];
    const rows = await waitFor(
      async () => {
        const pending = await listAll("/v1/conversations?status=pending");
        // Each conversation's head is refused once; the receipts behind it wait (FORWARD_BATCH_MAX=1).
        const refusedOnce = keys.every((key) => origin.attemptsOf(key).length >= 1);
        const pendingByKey = count(phase2, "conversation");
        const ok =
          refusedOnce &&
          sameSet(
            pending.map((row) => row.conversation),
            keys,
          ) &&
          pending.every((row) => row.pending === pendingByKey.get(row.conversation));
        return ok ? pending : { ok: false, pending };
      },
      20_000,
      (last) =>
        `GET /v1/conversations?status=pending shows ${JSON.stringify((last?.pending ?? []).map((row) => [row.conversation, row.pending]))}, expected the ${keys.length} maintenance conversations (each refused once) with ${phase2.length} receipts pending`,
    );
    figures.callbacks += planned.length;
    figures.lastHeldAt = Math.max(...rows.map((row) => Date.parse(row.lastReceiptAt)));
    return `${planned.length} more callbacks answered 200, making ${phase2.length} receipts (${phase2.map((receipt) => receipt.provider).join(", ")}) in ${keys.length} other conversations; the origin answers 503 with Retry-After ${Math.ceil((maintenanceEnd - Date.now()) / 1000)} s; GET /v1/conversations?status=pending lists ${rows
      .map((row) => `${short(row.conversation)} pending ${row.pending}`)
      .join(", ")}`;
  });

  // ---- Alerts while failing.
  const failingDueAt = figures.lastHeldAt + ALERT_AFTER_SECONDS * 1000 + 1500;
  // A cron run whose dead-letter cutoff (now - 120 s) fell among the dead letters would raise a partial digest.
  const separateFailingRun = failingDueAt < minOldest + INDEX_LAG_MS - 3000;
  const expectedKeys = [...expectedFailed.keys()];
  const heldKeys = [...new Set(phase2.map((receipt) => receipt.conversation))];
  const checkFailing = (alert) => {
    check(alert.webhookId.startsWith("alert:origin_failing:"), `origin_failing webhook-id is ${alert.webhookId}`);
    // Its total is the pending receipts: every held one.
    check(
      alert.data.conversations === heldKeys.length && alert.data.total === phase2.length,
      `origin_failing counts ${alert.data.conversations}/${alert.data.total}, expected ${heldKeys.length}/${phase2.length}`,
    );
    check(sameSet(alert.data.keys ?? [], heldKeys), `origin_failing names ${JSON.stringify(alert.data.keys)}, expected ${JSON.stringify(heldKeys)}`);
    check(alert.data.afterSeconds === ALERT_AFTER_SECONDS, `origin_failing afterSeconds ${alert.data.afterSeconds}`);
  };
  if (separateFailingRun) {
    await step("alert: origin failing", async () => {
      await sleepUntil(failingDueAt);
      const got = await runCron();
      check(
        got.length === 1 && got[0].type === "alert.origin_failing",
        `the cron run ${ALERT_AFTER_SECONDS} s after the held receipts raised ${describeAlerts(got)}; expected exactly one alert.origin_failing`,
      );
      checkFailing(got[0]);
      return `cron run ${since(sentAt)} after sending, ${ALERT_AFTER_SECONDS} s after the last held receipt: ${describeAlerts(got)}, signed (verified with standardwebhooks), keys ${JSON.stringify(got[0].data.keys.map(short))}; no dead_letter yet (the index lag is ${INDEX_LAG_MS / 1000} s)`;
    });
  }

  await step("alert: dead letters", async () => {
    await sleepUntil(Math.max(maxOldest + INDEX_LAG_MS + 2000, failingDueAt));
    const got = await runCron();
    const dead = got.filter((alert) => alert.type === "alert.dead_letter");
    const failing = got.filter((alert) => alert.type === "alert.origin_failing");
    const others = got.filter((alert) => alert.type !== "alert.dead_letter" && alert.type !== "alert.origin_failing");
    check(
      dead.length === 1,
      `the cron run ${INDEX_LAG_MS / 1000} s after the dead letters raised ${describeAlerts(got)}; expected exactly one alert.dead_letter`,
    );
    check(others.length === 0, `the cron run also raised ${describeAlerts(others)}`);
    check(failing.length === (separateFailingRun ? 0 : 1), `alert.origin_failing ${separateFailingRun ? "repeated" : "missing"}: ${describeAlerts(got)}`);
    if (!separateFailingRun) checkFailing(failing[0]);
    const digest = dead[0];
    check(digest.webhookId.startsWith("alert:dead_letter:"), `dead_letter webhook-id is ${digest.webhookId}`);
    check(sameSet(digest.data.keys ?? [], expectedKeys), `the digest names ${JSON.stringify(digest.data.keys)}, expected ${JSON.stringify(expectedKeys)}`);
    check(
      digest.data.conversations === expectedKeys.length && digest.data.total === figures.deadLetters,
      `the digest counts ${digest.data.conversations} conversations, ${digest.data.total} dead letters; expected ${expectedKeys.length}, ${figures.deadLetters}`,
    );
    return `cron run ${since(sentAt)} after sending: ${describeAlerts(got)}, signed; names ${digest.data.keys.map(short).join(", ")}; window ${clock(digest.data.since)}–${clock(digest.data.until)}`;
  });

  await step("coalescing", async () => {
    const got = await runCron();
    check(
      got.length === 0,
      `a second cron run raised ${describeAlerts(got)}; expected nothing (no second dead_letter digest, origin_failing not repeated within 15 minutes, not recovered yet)`,
    );
    return "another cron run: no alert (no second dead_letter digest, no repeated origin_failing, no recovered while conversations are stuck)";
  });

  // ---- Recovery and the bulk replay.
  origin.answer(ORIGIN_UP);
  const recoveredAt = Date.now();
  let job;
  await step("bulk replay", async () => {
    const answer = await api("POST", "/v1/replays", {});
    check(answer.status === 202 && typeof answer.json?.id === "string", `POST /v1/replays answered ${answer.status}: ${answer.text.slice(0, 300)}`);
    job = answer.json;
    console.log(
      `drill:        replay ${job.id}: ${job.status}, ${job.conversations.done}/${job.conversations.total} conversations, requeued ${job.requeued}, skipped ${job.skipped} (the 202 answer)`,
    );
    return `the origin recovered; POST /v1/replays {} answered 202, job ${job.id}, Location ${answer.headers.get("location")}, ${job.conversations.total} conversations to replay`;
  });

  await step("replay progress", async () => {
    let last = `${job.status}, ${job.conversations.done}/${job.conversations.total} conversations, requeued ${job.requeued}, skipped ${job.skipped}`;
    const done = await waitFor(
      async () => {
        const answer = await api("GET", `/v1/replays/${job.id}`);
        check(answer.status === 200, `GET /v1/replays/${job.id} answered ${answer.status}: ${answer.text.slice(0, 300)}`);
        const status = answer.json;
        const line = `${status.status}, ${status.conversations.done}/${status.conversations.total} conversations, requeued ${status.requeued}, skipped ${status.skipped}${status.lastError ? `, last error ${status.lastError}` : ""}`;
        if (line !== last) console.log(`drill:        replay ${job.id}: ${line} (${since(recoveredAt)} after recovery)`);
        last = line;
        return status.status === "done" ? status : { ok: false, status };
      },
      60_000,
      (status) => `the replay job is still ${JSON.stringify(status?.status)}`,
      250,
    );
    check(
      done.conversations.total === expectedKeys.length && done.conversations.done === expectedKeys.length,
      `the job covered ${JSON.stringify(done.conversations)}, expected ${expectedKeys.length} conversations`,
    );
    check(
      done.requeued === figures.deadLetters && done.skipped === 0,
      `the job requeued ${done.requeued} and skipped ${done.skipped}, expected ${figures.deadLetters} and 0`,
    );
    figures.replayMs = Date.parse(done.finishedAt) - Date.parse(done.createdAt);
    return `done: ${done.conversations.done}/${done.conversations.total} conversations, requeued ${done.requeued}, skipped ${done.skipped}, ${figures.replayMs} ms from createdAt to finishedAt`;
  });

  const allReceipts = [...phase1, ...phase2];
  await step("redelivered", async () => {
    await waitFor(
      () => allReceipts.every((receipt) => attemptsOfReceipt(receipt.id).some(isDelivered)),
      Math.max(30_000, maintenanceEnd - Date.now() + 30_000),
      () =>
        `not every receipt reached the origin: missing ${JSON.stringify(allReceipts.filter((receipt) => !attemptsOfReceipt(receipt.id).some(isDelivered)).map((receipt) => receipt.id))}`,
    );
    // Refused first: every dead letter, and the head of each held conversation (the receipts behind it waited).
    const heads = new Set(heldKeys.map((key) => phase2.find((receipt) => receipt.conversation === key)?.id));
    const lines = [];
    for (const receipt of allReceipts) {
      const attempts = attemptsOfReceipt(receipt.id);
      check(
        attempts.every((attempt) => attempt.receiptIds.join() === receipt.id && attempt.conversation === receipt.conversation),
        `webhook-id ${receipt.id} carried receipts ${JSON.stringify(attempts.map((attempt) => [attempt.receiptIds, attempt.conversation]))}`,
      );
      const refused = attempts.findIndex(isDelivered);
      const held = phase2.includes(receipt);
      check(refused >= 1 || (held && !heads.has(receipt.id)), `receipt ${receipt.id} was delivered without a refused attempt first`);
      if (!held) lines.push(refused);
    }
    const repeated = allReceipts.reduce((sum, receipt) => sum + attemptsOfReceipt(receipt.id).filter(isDelivered).length - 1, 0);
    figures.repeated = repeated;
    const lateHeld = phase2.map((receipt) => attemptsOfReceipt(receipt.id).find(isDelivered).at);
    return `all ${allReceipts.length} receipts reached the origin under the webhook-id of their refused attempts: ${phase1.length} replayed dead letters (each after ${lines[0]} refusals), ${phase2.length} held ones at the end of their Retry-After (${since(Math.max(...lateHeld))} ago); ${repeated} delivered twice; ${origin.counts.badSignatures} bad signatures`;
  });

  await step("index clear", async () => {
    const stats = await waitFor(
      async () => {
        const answer = await api("GET", "/v1/stats?window=1h");
        const json = answer.json;
        return json && json.backlog === 0 && json.deadLetters === 0 && json.conversations?.total === expectedKeys.length + heldKeys.length
          ? json
          : { ok: false, json };
      },
      15_000,
      (last) =>
        `GET /v1/stats?window=1h still shows backlog ${last?.json?.backlog}, deadLetters ${last?.json?.deadLetters}, conversations ${JSON.stringify(last?.json?.conversations)}`,
    );
    const failing = await listAll("/v1/conversations?status=failing");
    check(failing.length === 0, `GET /v1/conversations?status=failing still lists ${failing.length}`);
    figures.finalStats = stats;
    return `GET /v1/stats?window=1h: ${JSON.stringify(stats.conversations)}, backlog ${stats.backlog}, deadLetters ${stats.deadLetters}, latencyMs ${JSON.stringify(stats.latencyMs)}${stats.deliveries ? `, deliveries ${JSON.stringify(stats.deliveries)}` : ""}${stats.callbacks ? `, callbacks accepted ${stats.callbacks.accepted}` : ""}; no conversation failing`;
  });

  await step("attempts per receipt", async () => {
    const keys = [...new Set(allReceipts.map((receipt) => receipt.conversation))];
    let listed = 0;
    let fromDeliveries = false;
    for (const key of keys) {
      const path = `/v1/conversations/${encodeURIComponent(key)}`;
      const answer = await api("GET", path);
      check(answer.status === 200, `GET ${path} answered ${answer.status}: ${answer.text.slice(0, 300)}`);
      const summary = answer.json;
      check(summary.deliveries?.pending === 0 && summary.deliveries?.failed === 0, `${key}: deliveries ${JSON.stringify(summary.deliveries)}`);
      // The attempt log: in the summary when it carries one, else from the deliveries API.
      let logs = new Map();
      const fromSummary = (summary.receipts ?? []).filter((receipt) => Array.isArray(receipt.delivery?.attemptLog));
      if (fromSummary.length > 0) for (const receipt of fromSummary) logs.set(receipt.id, receipt.delivery.attemptLog);
      else {
        const outbox = await api("GET", `${path}/deliveries?status=all`);
        check(outbox.status === 200, `GET ${path}/deliveries?status=all answered ${outbox.status}: ${outbox.text.slice(0, 300)}`);
        for (const delivery of outbox.json.deliveries ?? []) if (Array.isArray(delivery.attemptLog)) logs.set(delivery.receiptId, delivery.attemptLog);
        fromDeliveries = logs.size > 0;
      }
      console.log(
        `drill:        ${key}: accepted ${summary.accepted}, pending ${summary.deliveries.pending}, failed ${summary.deliveries.failed}, last delivered ${clock(summary.lastDeliveredAt)}, last latency ${summary.lastLatencyMs} ms`,
      );
      for (const receipt of allReceipts.filter((item) => item.conversation === key)) {
        const shown = (summary.receipts ?? []).find((item) => item.id === receipt.id);
        check(shown, `GET ${path} does not list receipt ${receipt.id}`);
        const delivery = shown.delivery;
        check(delivery?.status === "delivered", `${receipt.id}: delivery ${JSON.stringify(delivery)}`);
        const log = logs.get(receipt.id);
        const refused = attemptsOfReceipt(receipt.id).length;
        check(log, `no attempt log for ${receipt.id} (neither in GET ${path} nor in its deliveries)`);
        check(log.length === refused, `${receipt.id}: the attempt log lists ${log.length} attempts, the origin saw ${refused}`);
        const attempts = log.map((attempt) => `${clock(attempt.at)} ${attempt.status ?? attempt.error} ${attempt.ms} ms`).join(" | ");
        console.log(
          `drill:          ${receipt.id}: ${delivery.status} (summary: attempts ${delivery.attempts}, last status ${delivery.lastStatus ?? delivery.lastError}), latency ${delivery.latencyMs} ms; attempt log, ${log.length}: ${attempts}`,
        );
        listed++;
      }
    }
    figures.attemptsFrom = fromDeliveries ? "the deliveries API" : "the conversation summary";
    return `GET /v1/conversations/<key> for ${keys.length} conversations lists all ${listed} receipts delivered, with latency; attempt logs (time, status or error, duration) from ${figures.attemptsFrom}, matching what the origin saw`;
  });

  await step("alert: recovered", async () => {
    const got = await runCron();
    check(
      got.length === 1 && got[0].type === "alert.recovered",
      `the cron run after recovery raised ${describeAlerts(got)}; expected exactly one alert.recovered`,
    );
    check(got[0].webhookId.startsWith("alert:recovered:"), `recovered webhook-id is ${got[0].webhookId}`);
    const again = await runCron();
    check(again.length === 0, `a further cron run raised ${describeAlerts(again)}`);
    return `cron run: ${describeAlerts(got)}, signed; a further run: no alert`;
  });

  check(
    origin.counts.badAlertSignatures === 0 && origin.counts.badSignatures === 0,
    `bad signatures: ${origin.counts.badAlertSignatures} alerts, ${origin.counts.badSignatures} deliveries`,
  );
  // Info lines only: wrangler wraps warn and error lines (its own formatting), so they do not parse back.
  const logged = ["alert_sent", "delivered", "replay_started", "replay_done"].map((msg) => `${msg} ×${logLines(msg).length}`).join(", ");
  console.log(
    `drill passed: ${figures.callbacks} callbacks making ${allReceipts.length} receipts from ${new Set(allReceipts.map((receipt) => receipt.provider)).size} providers in ${new Set(allReceipts.map((receipt) => receipt.conversation)).size} conversations; ` +
      `${figures.deadLetters} dead letters in ${expectedKeys.length} conversations and ${phase2.length} held receipts; ${origin.alerts.length} alerts (${origin.alerts.map((alert) => alert.type.replace("alert.", "")).join(", ")}), all signed; relay log: ${logged}; ` +
      `1 replay job requeued ${figures.deadLetters} in ${figures.replayMs} ms; origin refused ${origin.counts.refused} attempts and took ${origin.deliveries} deliveries (${figures.repeated} twice); ` +
      `${stepCount} steps in ${since(startedAt)}`,
  );
  exitCode = 0;
} catch (error) {
  exitCode = error instanceof StepFailure ? 1 : 2;
  console.error(`drill FAILED at step "${currentStep}": ${redact(error instanceof Error ? error.message : String(error))}`);
  console.error(`drill: ${origin?.alerts.length ?? 0} alerts received so far: ${describeAlerts(origin?.alerts ?? [])}`);
  console.error(`drill: the end of wrangler's log:\n${tailOfLog(25)}`);
} finally {
  await relay?.stop();
  await origin?.close();
  cleanupNow();
  process.exit(exitCode);
}

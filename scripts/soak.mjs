#!/usr/bin/env node
// @ts-check
// Bounded soak on 127.0.0.1 only, under `wrangler dev`: signed callbacks of every registered provider
// (src/providers/index.ts, made by scripts/samples.mjs) over many conversations, an origin that
// answers 503 in scripted windows, and one crash and restart of the relay midway. Prints accepted /
// delivered / lost / duplicated / out-of-order, counted per receipt (a WhatsApp batch makes several),
// and exits 1 when anything was lost, reordered or badly signed. Stops by itself and kills its
// children on exit.
//   node scripts/soak.mjs [--preset outage] [--callbacks 2000] [--conversations 50] [--concurrency 8]
//                         [--timeout 300] [--outage-every 20] [--outage-for 5]
// The relay and the origin are scripts/lib/relay.mjs and scripts/lib/origin.mjs.
import { randomBytes } from "node:crypto";
import { startOrigin } from "./lib/origin.mjs";
import { startRelay } from "./lib/relay.mjs";
import { readyWithin, sleep } from "./lib/wait.mjs";
import { callbackMaker, configuredProviders, exampleProviderSettings, expectedReceipts, freshMessage, loadRelay } from "./samples.mjs";

// ---------------------------------------------------------------------------------------------
// Options

/** @type {Record<string, { value: number, min: number, max: number, help: string }>} */
const OPTIONS = {
  callbacks: { value: 2000, min: 1, max: 100_000, help: "callbacks to send, all providers together" },
  conversations: { value: 50, min: 1, max: 10_000, help: "conversations to spread them over" },
  concurrency: { value: 8, min: 1, max: 64, help: "callbacks in flight at once (one per conversation at most)" },
  timeout: { value: 300, min: 10, max: 3600, help: "seconds to wait, after sending, for every accepted receipt" },
  "outage-every": { value: 20, min: 0, max: 3600, help: "the origin fails once every this many seconds (0: one outage only)" },
  "outage-for": { value: 5, min: 0, max: 3600, help: "seconds each origin outage lasts (answers 503)" },
};
/** Retry steps short enough that an outage window never exhausts them (their sum is 53 s). */
const RETRY_SCHEDULE = "1,2,2,3,5,5,5,10,10,10";

/**
 * Named runs: option values (flags given as well override them), the relay's retry schedule, and
 * whether a delivery repeated fails the run.
 * @type {Record<string, { help: string, values: Record<string, number>, retrySchedule: string, exactlyOnce: boolean }>}
 */
const PRESETS = {
  outage: {
    help: "one long outage from the start (--outage-for, 150 s), the relay killed in it, production-like retry steps; every receipt must arrive exactly once",
    values: { callbacks: 200, conversations: 20, concurrency: 4, timeout: 420, "outage-every": 0, "outage-for": 150 },
    retrySchedule: "5,10,20,40,60,120,300",
    exactlyOnce: true,
  },
};

/**
 * @typedef {{ callbacks: number, conversations: number, concurrency: number, timeout: number, "outage-every": number,
 *   "outage-for": number, retrySchedule: string, exactlyOnce: boolean }} Options
 */

/** @param {string[]} argv @returns {Options} */
function parseOptions(argv) {
  /** @type {Record<string, number>} */
  const values = Object.fromEntries(Object.entries(OPTIONS).map(([name, option]) => [name, option.value]));
  let preset;
  const presetIndex = argv.indexOf("--preset");
  if (presetIndex >= 0) {
    preset = PRESETS[argv[presetIndex + 1]];
    if (!preset) {
      console.error(`soak: unknown preset ${argv[presetIndex + 1] ?? ""}: one of ${Object.keys(PRESETS).join(", ")}`);
      process.exit(2);
    }
    Object.assign(values, preset.values);
    argv = [...argv.slice(0, presetIndex), ...argv.slice(presetIndex + 2)];
  }
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, "");
    if (argv[i] === "--help" || argv[i] === "-h") {
      console.log("usage: node scripts/soak.mjs [--preset NAME] [options]   (npm run soak -- [options])");
      for (const [option, { help }] of Object.entries(OPTIONS)) console.log(`  --${option.padEnd(14)} ${help} (default ${values[option]})`);
      for (const [name, { help, values: presetValues }] of Object.entries(PRESETS))
        console.log(
          `  --preset ${name.padEnd(6)} ${help}; sets ${Object.entries(presetValues)
            .map(([option, value]) => `--${option} ${value}`)
            .join(" ")}`,
        );
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
  if (values["outage-every"] > 0 && values["outage-for"] >= values["outage-every"]) {
    console.error("soak: --outage-for must be shorter than --outage-every");
    process.exit(2);
  }
  return /** @type {Options} */ ({ ...values, retrySchedule: preset?.retrySchedule ?? RETRY_SCHEDULE, exactlyOnce: preset?.exactlyOnce ?? false });
}

const options = parseOptions(process.argv.slice(2));
const ATTEMPTS_PER_CALLBACK = 6;
const REQUEST_TIMEOUT_MS = 15_000;
const STARTUP_TIMEOUT_MS = 90_000;
/** Every phase is bounded on its own; this is the backstop should one of them hang. */
const HARD_DEADLINE_MS = (2 * STARTUP_TIMEOUT_MS + 2 * options.timeout * 1000 + 60_000) | 0;

/** @param {number} bytes */
const hex = (bytes) => randomBytes(bytes).toString("hex");
/** @param {number} since */
const elapsed = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

/** Tells this run's ids from any other's. */
const RUN = hex(3);
const { registry } = await loadRelay();
/**
 * Fresh settings, nothing from .dev.vars: every registered provider's settings as
 * .dev.vars.example sets them, each secret or token made fresh, so that the soak signs with what
 * the relay checks.
 * @type {Record<string, string>}
 */
const settings = {
  ...(await exampleProviderSettings({ freshSecrets: "soak" })),
  FORWARD_SECRET: `whsec_${randomBytes(32).toString("base64")}`,
  FORWARD_RETRY_SCHEDULE: options.retrySchedule,
  FORWARD_TIMEOUT_MS: "5000",
  ADMIN_TOKEN: `soak-admin-${hex(12)}`,
};
/** Every provider those settings enable, each with its samples: the soak sends all of them. */
const enabled = (await configuredProviders(settings)).filter(({ state }) => state.state === "enabled").map(({ provider }) => provider);
const unused = registry.filter((provider) => !enabled.includes(provider)).map((provider) => provider.name);
if (unused.length > 0) console.log(`soak: not sent (their settings are not in .dev.vars.example): ${unused.join(", ")}`);
/** Every (provider, sample) the soak sends, in the registry's order. */
const KINDS = enabled.flatMap((provider) =>
  provider.samples.map((/** @type {{ label: string }} */ sample, /** @type {number} */ sampleIndex) => ({
    provider: provider.name,
    sampleIndex,
    label: `${provider.name} ${sample.label}`,
  })),
);
const makeCallback = await callbackMaker(settings);

// ---------------------------------------------------------------------------------------------
// Children and cleanup (the relay's process group and its directory go with this process: lib/relay.mjs)

/** @type {Awaited<ReturnType<typeof startRelay>> | undefined} */
let relay;
/** @type {Awaited<ReturnType<typeof startOrigin>> | undefined} */
let origin;

process.on("exit", () => origin?.server.closeAllConnections());
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
  process.on(signal, () => {
    console.log(`soak: ${signal}, stopping`);
    process.exit(130);
  });
}
setTimeout(() => {
  console.error("soak: hard deadline passed, stopping");
  process.exit(2);
}, HARD_DEADLINE_MS).unref();

// ---------------------------------------------------------------------------------------------
// The origin's outages: scripted windows; every delivery is verified (lib/origin.mjs)

/** When the first scripted outage starts (set as sending starts); one starts every `outage-every` seconds after (or none: 0). */
let firstOutageAt = Infinity;
/** @param {number} now */
function inOutage(now) {
  const seconds = (now - firstOutageAt) / 1000;
  if (seconds < 0) return false;
  return options["outage-every"] > 0 ? seconds % options["outage-every"] < options["outage-for"] : seconds < options["outage-for"];
}
const answerInWindows = () => (inOutage(Date.now()) ? { status: 503, retryAfter: "1" } : { status: 204 });

/** The relay is ready once every provider the soak sends and forwarding are on. @param {any} health */
const relayReady = (health) => enabled.every((provider) => health?.providers?.[provider.name]?.state === "enabled") && health?.forwarding?.state === "on";

// ---------------------------------------------------------------------------------------------
// Callbacks: every provider's samples, one conversation per slot, tracked by the receipts they make

/** @typedef {{ id: string, conversation: string }} ExpectedReceipt */
/**
 * @typedef {object} Callback
 * @property {number} n
 * @property {number} slot the soak's conversation it belongs to (one lane sends all of a slot's callbacks)
 * @property {string} provider
 * @property {string} label
 * @property {(signedAt: number) => Promise<import("./samples.mjs").Sample>} request the callback signed at `signedAt`
 * @property {ExpectedReceipt[]} receipts what the relay makes of it (by its own provider code)
 */

/**
 * A body's own times must differ within a conversation: a read that names no message (Sendbird's
 * read_ts, Messenger's watermark, Tencent's MsgReport) is its time, and the same time twice is the
 * same receipt. So each callback's `now` is at least 1 ms after the previous one's.
 */
let lastNow = 0;
const freshNow = () => (lastNow = Math.max(Date.now(), lastNow + 1));

/**
 * Callback `n` for conversation `slot`: each conversation goes through KINDS in turn from its own
 * place (so that every provider's samples reach every conversation over a long run), seeded with the slot's conversation and reader (each reader its own
 * slot's too: OpenIM's group reads and a WhatsApp batch key conversations by the reader). A resend
 * signs the same seed again: the same body and receipt ids, fresh signatures and request times.
 * @param {number} n @param {number} slot @returns {Promise<Callback | { error: string, label: string }>}
 */
async function makeSoakCallback(n, slot) {
  const kind = KINDS[(Math.floor(n / options.conversations) + slot) % KINDS.length];
  const seed = { conversation: `soak${RUN}c${slot}`, reader: `soak${RUN}r${slot}`, message: freshMessage(), now: freshNow() };
  const request = (/** @type {number} */ signedAt) => makeCallback(kind.provider, kind.sampleIndex, { ...seed, signedAt });
  const expected = await expectedReceipts(await request(seed.now));
  if ("error" in expected) return { error: expected.error, label: kind.label };
  return { n, slot, provider: kind.provider, label: kind.label, request, receipts: expected.receipts };
}

// ---------------------------------------------------------------------------------------------
// Sending: one lane per `concurrency`, each conversation on one lane, so per-conversation order is exact

/** Closed (a pending promise) while the relay restarts: no attempt starts then. */
let relayGate = Promise.resolve();
/** @type {Map<string, number>} */
const answers = new Map();
/** Receipt ids in acceptance order, per conversation key (the relay's). @type {Map<string, string[]>} */
const acceptedByConversation = new Map();
/** Every accepted receipt's id, with the callback that made it. @type {Map<string, Callback>} */
const acceptedIds = new Map();
/** Callbacks answered 2xx. */
let acceptedCallbacks = 0;
/** Samples the relay's own code makes no receipt of: the soak cannot track them (a provider's bug). @type {string[]} */
const untrackable = [];
let networkErrors = 0;

/** @param {string} label */
const countAnswer = (label) => answers.set(label, (answers.get(label) ?? 0) + 1);

/** @param {string} relayUrl @param {Callback} callback */
async function send(relayUrl, callback) {
  for (let attempt = 1; attempt <= ATTEMPTS_PER_CALLBACK; attempt++) {
    await relayGate;
    // Signed now: Tencent's RequestTime and TalkJS's timestamp are checked against the relay's clock.
    const { path, body, headers } = await callback.request(Date.now());
    let status;
    try {
      const response = await fetch(`${relayUrl}${path}`, {
        method: "POST",
        headers,
        body: /** @type {BodyInit} */ (body),
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

/**
 * Sends a lane's callbacks in order, each made when its turn comes (so that its timestamps are fresh).
 * @param {string} relayUrl @param {{ n: number, slot: number }[]} planned @param {number} sendUntil @param {() => Promise<void>} onSent
 */
async function runLane(relayUrl, planned, sendUntil, onSent) {
  for (const { n, slot } of planned) {
    if (Date.now() > sendUntil) return;
    const callback = await makeSoakCallback(n, slot);
    if ("error" in callback) untrackable.push(`${callback.label}: ${callback.error}`);
    else if (await send(relayUrl, callback)) {
      acceptedCallbacks++;
      for (const receipt of callback.receipts) {
        acceptedByConversation.set(receipt.conversation, [...(acceptedByConversation.get(receipt.conversation) ?? []), receipt.id]);
        acceptedIds.set(receipt.id, callback);
      }
    }
    await onSent();
  }
}

/** The end of wrangler's log, to show why something failed (the log goes with the relay's directory). @param {number} lines */
const tailOfLog = (lines) => relay?.logTail(lines) ?? "(the relay did not start)";

// ---------------------------------------------------------------------------------------------
// The run

const startedAt = Date.now();
let exitCode = 2;
try {
  origin = await startOrigin({ secrets: [settings.FORWARD_SECRET], answer: answerInWindows });
  const originUrl = origin.url;
  relay = await startRelay({
    settings: { ...settings, ORIGIN_URL: originUrl },
    prefix: "receipt-relay-soak-",
    ready: relayReady,
    startupTimeoutMs: STARTUP_TIMEOUT_MS,
  });
  const relayUrl = relay.url;
  const outages =
    options["outage-every"] > 0 ? `failing ${options["outage-for"]} s of every ${options["outage-every"]} s` : `failing for ${options["outage-for"]} s once`;
  console.log(
    `soak: relay ${relayUrl} (wrangler dev, state in ${relay.dir}), origin ${originUrl} ${outages}; ` +
      `${options.callbacks} callbacks over ${options.conversations} conversations, ${options.concurrency} in flight, retry steps ${options.retrySchedule}`,
  );

  // The first outage comes 2 s into sending, so that even a short run meets one.
  firstOutageAt = Date.now() + 2000;
  const planned = Array.from({ length: options.callbacks }, (_, n) => ({ n, slot: n % options.conversations }));
  const lanes = Array.from({ length: options.concurrency }, (_, lane) => planned.filter(({ slot }) => slot % options.concurrency === lane));
  // Sending is bounded too: a relay that hangs cannot keep the soak going.
  const sendUntil = Date.now() + options.timeout * 1000 + STARTUP_TIMEOUT_MS;
  const restartAfter = Math.ceil(options.callbacks / 2);
  let sent = 0;
  /** @type {Promise<void> | undefined} */
  let restart;
  let downFor = "";
  const onSent = async () => {
    sent++;
    if (sent % 500 === 0) console.log(`soak: ${sent} of ${options.callbacks} callbacks answered (${elapsed(startedAt)})`);
    if (sent !== restartAfter || !relay) return;
    const crashing = relay;
    // Crash, not shutdown: the whole wrangler process group is killed with callbacks in flight.
    /** @type {() => void} */
    let reopen = () => {};
    relayGate = new Promise((resolve) => (reopen = resolve));
    restart = (async () => {
      const downAt = Date.now();
      console.log(`soak: killing the relay (SIGKILL) after ${sent} callbacks, with callbacks in flight and deliveries pending`);
      await crashing.restart();
      downFor = elapsed(downAt);
      console.log(`soak: relay restarted from its persisted state after ${downFor}`);
    })().finally(reopen);
  };
  await Promise.all(lanes.map((lane) => runLane(relayUrl, lane, sendUntil, onSent)));
  await restart;
  console.log(`soak: all callbacks answered after ${elapsed(startedAt)}; waiting up to ${options.timeout} s for deliveries`);

  const arrived = origin;
  /** Every receipt a 2xx-answered delivery carried, in arrival order (a batch's in its order), with its webhook-id. */
  const deliveries = () => arrived.delivered().flatMap((attempt) => attempt.receiptIds.map((receiptId) => ({ webhookId: attempt.id, receiptId })));
  const deliveredIds = () => new Set(deliveries().map((delivery) => delivery.receiptId));
  // Wait, bounded, until every accepted receipt has reached the origin; then a short grace for late duplicates.
  let lastReport = Date.now();
  const allDelivered = () => {
    const delivered = deliveredIds();
    const missing = [...acceptedIds.keys()].filter((id) => !delivered.has(id)).length;
    if (missing > 0 && Date.now() - lastReport >= 10_000) {
      console.log(`soak: ${missing} accepted receipts not delivered yet (${elapsed(startedAt)})`);
      lastReport = Date.now();
    }
    return missing === 0;
  };
  // Past the timeout the tally says what is missing.
  await readyWithin("every accepted receipt delivered", allDelivered, { timeoutMs: options.timeout * 1000, intervalMs: 500 });
  await sleep(3000);

  // Tally, per receipt.
  const delivered = deliveredIds();
  const originStats = {
    outageAnswers: arrived.attempts.filter((attempt) => attempt.status === 503).length,
    badSignatures: arrived.counts.badSignatures,
  };
  const lost = [...acceptedIds.keys()].filter((id) => !delivered.has(id));
  /** webhook-ids each receipt was delivered under (2xx), and how many times in all. @type {Map<string, { webhookIds: Set<string>, times: number }>} */
  const deliveredAs = new Map();
  for (const { webhookId, receiptId } of deliveries()) {
    const seen = deliveredAs.get(receiptId) ?? { webhookIds: new Set(), times: 0 };
    seen.webhookIds.add(webhookId);
    seen.times++;
    deliveredAs.set(receiptId, seen);
  }
  /** Further 2xx deliveries of a receipt already delivered. */
  const duplicated = [...deliveredAs.values()].reduce((sum, seen) => sum + seen.times - 1, 0);
  const underTwoIds = [...deliveredAs.values()].filter((seen) => seen.webhookIds.size > 1).length;
  const notAccepted = [...delivered].filter((id) => !acceptedIds.has(id)).length;
  // Out of order: a receipt delivered after one its conversation accepted later (first deliveries only).
  let outOfOrder = 0;
  const acceptedIndex = new Map([...acceptedByConversation.entries()].flatMap(([conversation, ids]) => ids.map((id, index) => [id, { conversation, index }])));
  /** @type {Map<string, number>} */
  const latestByConversation = new Map();
  const firstDelivery = new Set();
  const examples = [];
  for (const { receiptId } of deliveries()) {
    const accepted = acceptedIndex.get(receiptId);
    if (!accepted || firstDelivery.has(receiptId)) continue;
    firstDelivery.add(receiptId);
    const latest = latestByConversation.get(accepted.conversation) ?? -1;
    if (accepted.index < latest) {
      outOfOrder++;
      if (examples.length < 3) examples.push(`${accepted.conversation}: accepted #${accepted.index} delivered after #${latest}`);
    } else latestByConversation.set(accepted.conversation, accepted.index);
  }
  /** Callbacks and receipts accepted per provider, in the registry's order. @type {Record<string, { callbacks: number, receipts: number }>} */
  const byProvider = Object.fromEntries(enabled.map((provider) => [provider.name, { callbacks: 0, receipts: 0 }]));
  for (const callback of new Set(acceptedIds.values())) {
    const tally = byProvider[callback.provider];
    tally.callbacks++;
    tally.receipts += callback.receipts.length;
  }

  const answerText = [...answers.entries()].map(([status, count]) => `${status}×${count}`).join(", ");
  console.log(
    `soak: sent ${sent} of ${options.callbacks} callbacks of ${KINDS.length} samples over ${options.conversations} conversations; relay restarted once (down ${downFor || "n/a"}); accepted by provider (callbacks/receipts): ${Object.entries(
      byProvider,
    )
      .map(([name, tally]) => `${name} ${tally.callbacks}/${tally.receipts}`)
      .join(", ")}`,
  );
  console.log(
    `soak: relay answers ${answerText || "none"}; ${networkErrors} attempts failed on the network; origin answered 503 to ${originStats.outageAnswers} deliveries in outage windows; ${originStats.badSignatures} bad signatures`,
  );
  console.log(
    `soak: accepted ${acceptedCallbacks} callbacks making ${acceptedIds.size} receipts in ${acceptedByConversation.size} conversations; receipts delivered ${[...delivered].filter((id) => acceptedIds.has(id)).length}, lost ${lost.length}, duplicated ${duplicated}, out-of-order ${outOfOrder}` +
      ` (delivered though never acknowledged: ${notAccepted}; a receipt delivered under two webhook-ids: ${underTwoIds}) in ${elapsed(startedAt)}`,
  );
  for (const example of examples) console.log(`soak:   out of order: ${example}`);
  if (lost.length > 0) console.log(`soak:   lost, e.g.: ${lost.slice(0, 5).join(" ")}`);
  for (const problem of new Set(untrackable)) console.log(`soak:   the relay's own code makes no receipt of ${problem}`);
  // The outage preset kills the relay only while the origin is down: nothing can be delivered twice,
  // and a run that never met the outage tested nothing.
  const failed =
    lost.length > 0 ||
    outOfOrder > 0 ||
    originStats.badSignatures > 0 ||
    untrackable.length > 0 ||
    acceptedIds.size === 0 ||
    (options.exactlyOnce && (duplicated > 0 || originStats.outageAnswers === 0));
  exitCode = failed ? 1 : 0;
  if (failed) console.log(`soak: the end of wrangler's log:\n${tailOfLog(20)}`);
  console.log(
    failed ? "soak: FAIL" : `soak: PASS (nothing lost, nothing out of order${options.exactlyOnce ? ", nothing twice" : ""}, every delivery correctly signed)`,
  );
} catch (error) {
  console.error(`soak: ${error instanceof Error ? error.message : error}\nsoak: the end of wrangler's log:\n${tailOfLog(20)}`);
  exitCode = 2;
} finally {
  await relay?.stop();
  await origin?.close();
  process.exit(exitCode);
}

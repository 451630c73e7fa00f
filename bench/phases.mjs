// The phases: each starts its relay, loads it (beside the no-op worker where there is a ratio),
// waits for alarms and deliveries to settle and returns its figures.
import { readyWithin } from "../scripts/lib/wait.mjs";
import { startWorker } from "./build.mjs";
import { callback, forwardingTo, generators, held, RUN, SECRETS } from "./callbacks.mjs";
import { load, measuredRun } from "./load.mjs";
import { acceptedOf, meter, perReceipt, resetMeter, settle, storedIn } from "./meter.mjs";
import { options } from "./options.mjs";
import { usdPerMillion } from "./prices.mjs";
import { median, round, sleep, sumStatus, withDeadline } from "./util.mjs";

/**
 * Whether `check` held within `timeoutMs` (an error in it is thrown at once): the phases report a
 * backlog that did not drain in time rather than failing.
 * @param {string} what @param {() => unknown} check @param {number} timeoutMs @param {number} intervalMs
 */
const heldWithin = async (what, check, timeoutMs, intervalMs) => (await readyWithin(what, check, { timeoutMs, intervalMs, retryOnError: false })) !== undefined;

export async function runScenario(scenario, noop, relayScript, origin) {
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
    const linesBefore = relay.logs.lines;
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
    const storage = perReceipt(final.meter, scenario.forwarded ? origin.receipts : 0, relay.logs.lines - linesBefore);
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
export async function runHot(relayScript, slowOrigin, batchMax) {
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
    const drained = await heldWithin("the hot backlog forwarded", () => slowOrigin.receipts >= end.accepted, 30_000, 250);
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
  origin.fail();
  await load(relay, makeRequest, seconds);
  const accepted = acceptedOf(await meter(relay));
  const backlog = accepted - origin.receipts;
  const delivered = origin.receipts;
  origin.reset();
  origin.recover();
  await heldWithin("the backlog forwarded after the outage", () => origin.receipts >= backlog, 60_000, 50);
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
export async function runQuiet(relay, origin, label) {
  try {
    const conversations = options["quiet-conversations"];
    const spacingMs = options["quiet-spacing"] * 1000;
    let slot = 0;
    let networkErrors = 0;
    const send = async () => {
      const n = slot++;
      // One conversation per slot.
      const body = await callback("easemob", 0, { conversation: `q${RUN}${n % conversations}`, reader: `u${RUN}q` });
      for (let attempt = 1; ; attempt++) {
        try {
          const headers = { ...body.headers };
          const response = await fetch(`${relay.url}${body.path}`, {
            method: "POST",
            headers,
            body: body.body,
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
    const linesBefore = relay.logs.lines;
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
    const storage = perReceipt(settled.meter, origin ? origin.receipts : 0, relay.logs.lines - linesBefore);
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

/**
 * A large group's read burst (docs/design.md, "A burst into one conversation"): Tencent group read
 * receipts, one member each, into one conversation from `burst-connections` connections, beside
 * the no-op worker for the ratio. Tencent never retries, so a receipt answered 200 must be stored.
 * Afterwards (the accept queue drained) the conversation's receipts are read back from its object:
 * each one answered 200 stored, none twice, in strictly increasing sequence numbers.
 */
export async function runBurst(relayScript, noop) {
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
    let after = before;
    await heldWithin(
      "the burst's receipts stored",
      async () => {
        after = await storedIn(relay, conversation);
        return after.count - before.count >= answered200;
      },
      30_000,
      250,
    );
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

/** The percentile `p` (0..1) of `values`, nearest rank; null when there are none. */
const percentile = (values, p) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
};

/**
 * Destinations (docs/destinations.md): the same steady load (20 conversations, `destinations-rate`
 * receipts a second for `destinations-seconds`) forwarded to 1, 2 and 3 destinations, each a
 * separate local origin: `all` (matches everything), `easemob` (matches provider easemob: every
 * receipt here) and `failing` (answers 503 to everything). Reports rows written and dollars per
 * receipt for each, and the delivery latency at `all` (from the relay's `receivedAt` to arrival),
 * whose p99 with a failing destination beside it is compared with the run without it.
 */
export async function runDestinations(relayScript, { startOrigin }) {
  const conversations = 20;
  const cases = [
    { id: "destinations_1", names: ["all"] },
    { id: "destinations_2", names: ["all", "easemob"] },
    { id: "destinations_3", names: ["all", "easemob", "failing"] },
  ];
  const results = [];
  for (const { id, names } of cases) {
    const origins = Object.fromEntries(await Promise.all(names.map(async (name) => [name, await startOrigin(0)])));
    origins.failing?.fail();
    const destinations = names.map((name) => ({
      name,
      url: origins[name].url,
      secret: "FORWARD_SECRET",
      ...(name === "easemob" ? { match: { provider: ["easemob"] } } : {}),
    }));
    const base = forwardingTo(origins.all);
    const relay = await startWorker(relayScript, { relay: true, settings: { ...base, ORIGIN_URL: "", DESTINATIONS: JSON.stringify(destinations) } });
    try {
      const send = async (n) => {
        const body = await callback("easemob", 0, { conversation: `d${RUN}${id}${n % conversations}`, reader: `u${RUN}d` });
        const response = await fetch(`${relay.url}${body.path}`, {
          method: "POST",
          headers: body.headers,
          body: body.body,
          signal: AbortSignal.timeout(20_000),
        });
        await response.arrayBuffer();
        return response.status;
      };
      // A first round creates the conversations; the measured window starts after it.
      await Promise.all(Array.from({ length: conversations }, (_, n) => send(n)));
      await settle(relay, origins.all, 60_000);
      await resetMeter(relay);
      for (const origin of Object.values(origins)) origin.reset();
      const linesBefore = relay.logs.lines;
      const windowMs = options["destinations-seconds"] * 1000;
      const spacingMs = 1000 / options["destinations-rate"];
      const startedAt = Date.now();
      const inFlight = [];
      const statuses = {};
      for (let i = 0; ; i++) {
        const due = startedAt + i * spacingMs;
        if (due - startedAt >= windowMs) break;
        await sleep(Math.max(0, due - Date.now()));
        inFlight.push(send(i).then((status) => (statuses[status] = (statuses[status] ?? 0) + 1)));
      }
      await Promise.all(inFlight);
      const settled = await settle(relay, origins.all, 120_000);
      const storage = perReceipt(settled.meter, origins.all.receipts, relay.logs.lines - linesBefore);
      const latencies = origins.all.latencies;
      results.push({
        id,
        destinations: names,
        ...storage,
        usd_per_million: usdPerMillion(storage),
        delivered_by_destination: Object.fromEntries(Object.entries(origins).map(([name, origin]) => [name, origin.receipts])),
        latency_all_ms: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), receipts: latencies.length },
        statuses,
        settled: settled.settled,
      });
    } finally {
      await relay.dispose();
    }
  }
  const one = results.find((result) => result.id === "destinations_1");
  const three = results.find((result) => result.id === "destinations_3");
  const ratio = one?.latency_all_ms.p99 && three?.latency_all_ms.p99 !== null ? round(three.latency_all_ms.p99 / one.latency_all_ms.p99, 2) : null;
  return { cases: results, p99_ratio_with_failing: ratio };
}

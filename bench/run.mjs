#!/usr/bin/env node
// Benchmark on 127.0.0.1 only. The relay (bundled with a meter: bench/metered-worker.ts) and a no-op
// worker (bench/noop-worker.ts) run in workerd directly through Miniflare's API (the Miniflare that
// the pinned wrangler ships), not under `wrangler dev`, whose proxy and per-line logging cost more
// than the relay. Each scenario alternates no-op and relay runs (ABBA) and reports medians; the meter
// gives rows read/written, KV writes, object requests and alarms per receipt, priced with the dated
// table in bench/prices.mjs. Writes bench/results.json and bench/results.svg. Stops by itself;
// cleans up on exit. This file wires the phases together; the parts are in bench/*.mjs.
//   node bench/run.mjs [--seconds 5] [--connections 8] [--pairs 3] [--quick] [--only <regex>] ...
//   node bench/run.mjs --help
import { cpus } from "node:os";
import { bundle, cleanup, COMPATIBILITY_DATE, HOST, MINIFLARE_VERSION, prepare, startWorker } from "./build.mjs";
import { forwardingTo, held } from "./callbacks.mjs";
import { meter, unmeteredRpc } from "./meter.mjs";
import { parseOptions, wanted } from "./options.mjs";
import { startOrigin } from "./origin.mjs";
import { runBurst, runDestinations, runHot, runQuiet, runScenario } from "./phases.mjs";
import { claimsUsdPerMillion, PRICES, usdPerMillion } from "./prices.mjs";
import { printMarkdown, printSummary, writeResults } from "./report.mjs";
import { SCENARIO_IDS, SCENARIOS, targetsOf } from "./scenarios.mjs";
import { round } from "./util.mjs";

const options = parseOptions(process.argv.slice(2), SCENARIO_IDS);
prepare();

/** The backstop, should a phase hang: every phase is bounded on its own. */
const plannedSeconds =
  SCENARIOS.length * (options.pairs * 2 * (options.seconds + 20) + 40) +
  2 * (options["hot-seconds"] + 60) +
  options["quiet-seconds"] +
  options["burst-pairs"] * 2 * (options["burst-seconds"] + 40) +
  3 * (options["destinations-seconds"] + 200) +
  240;
setTimeout(() => {
  console.error("bench: hard deadline passed, stopping");
  process.exit(2);
}, plannedSeconds * 1000).unref();

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
  let destinations;
  if (wanted("destinations")) {
    process.stdout.write(
      `bench: destinations: 1, 2 and 3 (one failing), ${options["destinations-rate"]} receipts/s for ${options["destinations-seconds"]} s each ... `,
    );
    destinations = await runDestinations(relayScript, { startOrigin });
    console.log(
      destinations.cases.map((entry) => `${entry.destinations.length}: ${entry.rows_written_per_receipt} rows, p99 ${entry.latency_all_ms.p99} ms`).join("; ") +
        `; p99 with a failing destination / without: ${destinations.p99_ratio_with_failing}`,
    );
    for (const entry of destinations.cases)
      storage[
        `${entry.destinations.length} destination${entry.destinations.length === 1 ? "" : "s"}${entry.destinations.includes("failing") ? " (one failing)" : ""}`
      ] = entry;
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
        usd_per_million_callbacks: claimsUsdPerMillion(easemob.storage.claims),
        note: "Easemob callbacks only: each claims its callId in a CallbackClaims object (1 object request, ~1 row written), on top of the figures above",
      }
    : undefined;

  const quiet = storage["quiet conversation, forwarded"];
  const targets = targetsOf({ scenarios, hot, burst, busy, quiet, usd, destinations, claims: claimsNote });

  const storageRows = Object.entries(storage).map(([name, figures]) => ({ name, ...figures, usd: usd[name] }));
  printSummary({ scenarios, hot, storageRows, usdWithoutAlarmRows, claimsNote, targets, burst });

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
    destinations,
    burst_one_conversation: burst
      ? (({ relay_log, ...rest }) => ({ ...rest, relay_log_errors: relay_log.errors, relay_log_samples: relay_log.samples }))(burst)
      : undefined,
    targets,
    duration_s: round((Date.now() - startedAt) / 1000, 0),
  };
  writeResults(results, {
    scenarios,
    usd,
    meta,
    ran: { hot: wanted("hot"), quiet: wanted("quiet"), burst: wanted("burst"), destinations: wanted("destinations") },
  });
  printMarkdown({ scenarios, storageRows, usdWithoutAlarmRows, burst });
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

#!/usr/bin/env node
// `npm run smoke -- --url https://<host>`: checks a running relay end to end. Sends one correctly
// signed read receipt per provider whose settings are at hand, prints each answer, then asks the
// API (Bearer ADMIN_TOKEN) whether each accepted receipt is stored. Exits 1 when a callback is
// refused or its receipt does not show up. Settings come from the environment, then from
// .dev.vars when it exists; never from flags (they would stay in shell history).
import { parseFlags } from "./lib/cli.mjs";
import { readyWithin } from "./lib/wait.mjs";
import { configuredProviders, expectedReceipts, loadRelay, postSample, readVarsFile, root, signedSample } from "./samples.mjs";

const usage = "usage: npm run smoke -- --url https://<host> [--wait SECONDS]   (settings: environment, then .dev.vars)";

const argv = process.argv.slice(2);
const secretFlag = argv.find((arg) => /^--?[^=]*(secret|token|password|api[-_]?key|sdkappid|app[-_]?id)/i.test(arg));
if (secretFlag) {
  console.error(
    `refused: ${secretFlag.split("=")[0]}: settings are never taken from flags (they would stay in shell history and process lists).\n` +
      "Set them in the environment or in .dev.vars, e.g. ( set -a; . ./prod.vars; npm run smoke -- --url https://<host> )",
  );
  process.exit(2);
}
const flags = parseFlags({ url: { type: "string" }, wait: { type: "string" } }, usage, argv);
if (!flags.values) process.exit(flags.exitCode);
const options = flags.values;
let relay;
try {
  relay = new URL(options.url ?? "");
  if (relay.protocol !== "https:" && relay.protocol !== "http:") throw new Error("not http(s)");
} catch {
  console.error(`--url must be the relay's address, like https://relay.example.com or http://127.0.0.1:8787\n${usage}`);
  process.exit(2);
}
const origin = relay.origin;
const waitSeconds = Number(options.wait ?? 10);
if (!Number.isFinite(waitSeconds) || waitSeconds < 0 || waitSeconds > 300) {
  console.error("--wait must be a number of seconds, 0 to 300");
  process.exit(2);
}
const local = ["127.0.0.1", "localhost", "[::1]"].includes(relay.hostname);

// Settings: every registered provider's (scripts/samples.mjs signs with them), and the API's token;
// each from the environment if set there, else from .dev.vars (read, never created).
const { registry } = await loadRelay();
const SETTINGS = [...new Set([...registry.flatMap((provider) => Object.keys(provider.settings.shape)), "ADMIN_TOKEN"])];
const devVars = readVarsFile(`${root}.dev.vars`) ?? {};
/** @type {Record<string, string>} */
const vars = {};
const sources = { environment: [], ".dev.vars": [] };
for (const name of SETTINGS) {
  const fromEnv = process.env[name]?.trim();
  const fromFile = devVars[name]?.trim();
  if (fromEnv) {
    vars[name] = fromEnv;
    sources.environment.push(name);
  } else if (fromFile) {
    vars[name] = fromFile;
    sources[".dev.vars"].push(name);
  }
}

const ms = (started) => `${Date.now() - started} ms`;
const clip = (text, max = 160) => (text.length > max ? `${text.slice(0, max)}…` : text);
const timeout = (ms) => AbortSignal.timeout(ms);

console.log(`relay ${origin}`);
for (const [source, names] of Object.entries(sources)) if (names.length > 0) console.log(`  settings from ${source}: ${names.join(", ")}`);
if (!local && sources[".dev.vars"].length > 0) {
  console.log("  note: .dev.vars holds local (demo) values: a deployed relay refuses callbacks signed with them unless they are its own");
}

// /healthz first: it says what the relay has turned on, and whether it is reachable at all.
let health;
try {
  const started = Date.now();
  const response = await fetch(new URL("/healthz", origin), { signal: timeout(10_000), redirect: "manual" });
  const text = await response.text();
  try {
    health = JSON.parse(text);
  } catch {
    health = undefined;
  }
  console.log(`  /healthz ${response.status} ${health?.status ?? clip(text)} (${ms(started)})`);
  for (const problem of health?.problems ?? []) console.log(`    problem: setting ${problem.setting} ${problem.problem} (${problem.feature})`);
} catch (error) {
  console.error(`✗ cannot reach ${origin} (${error.cause?.code ?? error.name}: ${error.cause?.message ?? error.message})`);
  process.exit(1);
}

// One sample per provider whose settings are at hand: the first, its plainest read receipt.
const samples = [];
for (const { provider, state } of await configuredProviders(vars)) {
  if (state.state === "enabled") {
    samples.push(await signedSample(provider, state.config, 0));
    continue;
  }
  const remote = health?.providers?.[provider.name]?.state;
  const why =
    state.state === "disabled"
      ? `${state.missing} is not set here`
      : `its settings here are wrong (${state.problems.map((problem) => problem.setting).join(", ")})`;
  console.log(`  skipped ${provider.name}: ${why}${remote === "enabled" ? " (the relay has it enabled: set it to check it)" : ""}`);
}
if (samples.length === 0) {
  console.error('✗ nothing to send: set at least one provider\'s settings (README, "Settings") in the environment or .dev.vars');
  process.exit(1);
}

console.log("\ncallbacks");
/** @type {{ sample: import("./samples.mjs").Sample, ok: boolean, line: string }[]} */
const results = [];
for (const sample of samples) {
  const started = Date.now();
  let ok = false;
  let line;
  try {
    const answer = await postSample(origin, sample, 15_000);
    ok = answer.status >= 200 && answer.status < 300;
    line = `${answer.status} ${clip(answer.text)} (${ms(started)})`;
  } catch (error) {
    line = `no answer: ${error.cause?.code ?? error.name} (${ms(started)})`;
  }
  console.log(`  ${ok ? "✓" : "✗"} ${sample.label.padEnd(40)} ${line}`);
  results.push({ sample, ok, line });
}

/**
 * Asks the API for a receipt until it is stored or `deadline` passes; the API's own refusals end
 * the wait at once (they will not change by waiting).
 * @param {{ id: string, conversation: string }} receipt
 */
async function awaitStored(receipt, deadline) {
  const url = new URL(`/v1/conversations/${encodeURIComponent(receipt.conversation)}/receipts?consistent=true`, origin);
  const started = Date.now();
  let last = "";
  /** One look: the outcome once it is known (stored, or refused for good), else undefined (look again). */
  const look = async () => {
    try {
      const response = await fetch(url, { headers: { authorization: `Bearer ${vars.ADMIN_TOKEN}` }, signal: timeout(10_000), redirect: "manual" });
      const text = await response.text();
      if (response.status === 200) {
        if (JSON.parse(text).receipts?.some((stored) => stored.id === receipt.id)) return { found: true, line: `stored (${ms(started)})` };
        last = "not among the conversation's recent receipts";
      } else last = `${response.status} ${clip(text, 120)}`;
      if (response.status === 401 || response.status === 403 || response.status === 429 || response.status === 503) return { found: false, line: last };
    } catch (error) {
      last = `no answer: ${error.cause?.code ?? error.name}`;
    }
    return undefined;
  };
  return (await readyWithin(`receipt ${receipt.id}`, look, { until: deadline, intervalMs: 500 })) ?? { found: false, line: last };
}

// Each accepted receipt, read back from the conversation's object (the truth, not the read model).
const accepted = results.filter((result) => result.ok);
/** @type {Map<string, string>} */
const arrival = new Map();
if (accepted.length > 0) {
  console.log("\nreceipts in the API");
  if (!vars.ADMIN_TOKEN) {
    console.log("  ✗ not checked: ADMIN_TOKEN is not set (in the environment or .dev.vars)");
    for (const { sample } of accepted) arrival.set(sample.provider, "not checked");
  } else {
    const deadline = Date.now() + waitSeconds * 1000;
    for (const { sample } of accepted) {
      const expected = await expectedReceipts(sample);
      if ("error" in expected) {
        console.log(`  ✗ ${sample.provider.padEnd(10)} cannot tell which receipt to look for: ${expected.error}`);
        arrival.set(sample.provider, expected.error);
        continue;
      }
      // Every receipt the callback makes (a WhatsApp batch makes several) must be stored.
      let missing = "";
      for (const receipt of expected.receipts) {
        const outcome = await awaitStored(receipt, deadline);
        console.log(`  ${outcome.found ? "✓" : "✗"} ${sample.provider.padEnd(10)} ${receipt.id} in ${receipt.conversation}: ${outcome.line}`);
        if (!outcome.found) missing ||= outcome.line;
      }
      arrival.set(sample.provider, missing || "stored");
    }
  }
}

const failed = results.filter((result) => !result.ok || arrival.get(result.sample.provider) !== "stored");
console.log(
  `\n${failed.length === 0 ? "✓" : "✗"} ${results.length - failed.length} of ${results.length} provider${results.length === 1 ? "" : "s"} ` +
    `answered 2xx and their receipt reached the API${failed.length ? `; failed: ${failed.map((result) => result.sample.provider).join(", ")}` : ""}`,
);
process.exit(failed.length === 0 ? 0 : 1);

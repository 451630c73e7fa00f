// The browser test's world, on 127.0.0.1 only: the relay under `wrangler dev` with its own settings
// and persistence in a temporary directory, a scriptable local origin, and signed callbacks built
// by scripts/samples.mjs. Everything started here is stopped by `stopAll()`, on exit and on signals.
// The relay, the origin and the waiting are scripts/lib/relay.mjs, origin.mjs and wait.mjs.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { root } from "../../scripts/dev-vars.mjs";
import { startOrigin as startLibOrigin } from "../../scripts/lib/origin.mjs";
import { startRelay as startLibRelay } from "../../scripts/lib/relay.mjs";
import { waitFor } from "../../scripts/lib/wait.mjs";
import { configuredProviders, expectedReceipts, postSample, readVarsFile, signedSample } from "../../scripts/samples.mjs";

export { root, waitFor };

// ---------------------------------------------------------------------------------------------
// Cleanup: everything started here, stopped once, whatever way the process ends

/** @type {(() => Promise<void>)[]} orderly stoppers, last started first stopped */
const stoppers = [];
let stopping;

/** Stops everything started here (idempotent). */
export function stopAll() {
  stopping ??= (async () => {
    for (const stop of stoppers.reverse()) {
      try {
        await stop();
      } catch (error) {
        console.error(`harness: stopping failed: ${error instanceof Error ? error.message : error}`);
      }
    }
  })();
  return stopping;
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    console.error(`harness: ${signal}, stopping the relay, the origin and the browser`);
    const forced = setTimeout(() => process.exit(130), 8000);
    forced.unref();
    stopAll().finally(() => process.exit(130));
  });
}

/** Adds an orderly stopper (run by `stopAll()`, last added first). */
export function onStop(stop) {
  stoppers.push(stop);
}

/** Records a child's process group for the runner's backstop (test/browser/run.mjs), if it asked. */
function registerGroup(pid) {
  const dir = process.env.BROWSER_TEST_PIDS_DIR;
  if (dir && pid) writeFileSync(`${dir}/${pid}`, "");
}

// ---------------------------------------------------------------------------------------------
// The origin: verifies and records every delivery; answers what the test tells it to

/**
 * A local origin on 127.0.0.1 at a free port, path /receipts (scripts/lib/origin.mjs). Every
 * delivery is verified with `standardwebhooks` (an unverifiable one is answered 401 and recorded
 * as such), then answered as told by `origin.answer({ status })` (200 until then: 400 turns a
 * delivery into a dead letter at once); `origin.deliveriesOf(receiptId)` lists its attempts.
 * Stopped by `stopAll()`.
 * @param {string} secret the FORWARD_SECRET the relay signs with
 */
export async function startOrigin(secret) {
  const origin = await startLibOrigin({ secrets: [secret], answer: { status: 200 } });
  stoppers.push(origin.close);
  return origin;
}

// ---------------------------------------------------------------------------------------------
// The relay under wrangler dev

/**
 * The relay's settings for this run: the demo provider secrets of .dev.vars.example (never a
 * developer's .dev.vars), a fresh admin token, and short intervals so that the test needs no waits.
 * ORIGIN_URL is left for the caller to set (the origin starts with the FORWARD_SECRET it verifies).
 * @returns {Record<string, string>}
 */
export function relaySettings() {
  const example = readVarsFile(`${root}.dev.vars.example`);
  if (!example) throw new Error(".dev.vars.example is missing: the browser test takes its demo provider settings from it");
  delete example.ALERT_URL;
  delete example.ORIGIN_URL;
  return {
    ...example,
    ADMIN_TOKEN: `browser-test-${randomBytes(16).toString("hex")}`,
    // The D1 index and the KV snapshots follow each change within a second.
    SNAPSHOT_INTERVAL_SECONDS: "1",
    // A 5xx would be retried within seconds; the test's refusals are 400s, dead letters at once.
    FORWARD_RETRY_SCHEDULE: "1,1,1",
    FORWARD_TIMEOUT_MS: "5000",
  };
}

/**
 * Starts the relay (scripts/lib/relay.mjs: D1 migrations applied to a fresh persistence
 * directory, then `wrangler dev` on 127.0.0.1 at a free port with `settings` from an env file)
 * until /healthz says every provider, forwarding and the API are on. Stopped by `stopAll()`.
 * @param {Record<string, string>} settings
 */
export async function startRelay(settings, { startupTimeoutMs = 120_000 } = {}) {
  const relay = await startLibRelay({
    settings,
    prefix: "receipt-relay-browser-",
    ready: (health) => health?.status === "ok" && health?.forwarding?.state === "on" && health?.api?.state === "on",
    startupTimeoutMs,
    onSpawn: registerGroup,
  });
  stoppers.push(relay.stop);
  return relay;
}

// ---------------------------------------------------------------------------------------------
// Callbacks, signed as the providers sign them (scripts/samples.mjs)

/**
 * A freshly signed sample callback, picked by its label ("<provider> <sample label>", as
 * scripts/samples.mjs prints it), with the receipt the relay will make of it (id and conversation
 * key, computed by the relay's own provider code). The browser test watches one receipt per
 * callback: a sample that makes several (a batch) is refused here.
 * @param {Record<string, string>} settings
 * @param {string} label e.g. "easemob read_ack (one-to-one)"
 */
export async function signedCallback(settings, label) {
  const configured = await configuredProviders(settings);
  const found = configured.flatMap(({ provider, state }) =>
    provider.samples.flatMap((/** @type {{ label: string }} */ sample, /** @type {number} */ index) =>
      `${provider.name} ${sample.label}` === label ? [{ provider, state, index }] : [],
    ),
  )[0];
  if (!found) throw new Error(`no registered provider has a sample labelled "${label}" (src/providers/index.ts)`);
  if (found.state.state !== "enabled") throw new Error(`the sample "${label}" needs ${found.provider.name}, which these settings leave ${found.state.state}`);
  const sample = await signedSample(found.provider, found.state.config, found.index);
  const expected = await expectedReceipts(sample);
  if ("error" in expected) throw new Error(`the sample "${label}" is not a receipt: ${expected.error}`);
  const [receipt, ...more] = expected.receipts;
  if (more.length > 0) throw new Error(`the sample "${label}" makes ${expected.receipts.length} receipts; the browser test watches one`);
  return { sample, receiptId: receipt.id, conversation: receipt.conversation };
}

/** Posts a signed callback; throws unless the relay accepts it (2xx). */
export async function sendCallback(relayUrl, callback) {
  const answer = await postSample(relayUrl, callback.sample);
  if (answer.status < 200 || answer.status >= 300)
    throw new Error(`the relay answered ${answer.status} to the ${callback.sample.label} callback: ${answer.text.slice(0, 300)}`);
  return answer;
}

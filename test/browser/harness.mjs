// The browser test's world, on 127.0.0.1 only: the relay under `wrangler dev` with its own settings
// and persistence in a temporary directory, a scriptable local origin, and signed callbacks built
// by scripts/samples.mjs. Everything started here is stopped by `stopAll()`, on exit and on signals.
// (The approach of scripts/soak.mjs: a process group per wrangler, so that workerd goes with it.)
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";
import { root } from "../../scripts/dev-vars.mjs";
import { freePort, startLocalRelay } from "../../scripts/local-relay.mjs";
import { buildSamples, expectedReceipt, postSample, readVarsFile } from "../../scripts/samples.mjs";

export { freePort, root };

// ---------------------------------------------------------------------------------------------
// Waiting: conditions with deadlines, never bare sleeps

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` until it returns something other than undefined/false, or throws naming `what`
 * (and the last value or error seen) once `timeoutMs` has passed.
 * @template T
 * @param {string} what what is awaited, for the failure message
 * @param {() => Promise<T | undefined | false> | T | undefined | false} check
 */
export async function waitFor(what, check, { timeoutMs = 15_000, intervalMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      const why = last ? ` (last error: ${last instanceof Error ? last.message : last})` : "";
      throw new Error(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}${why}`);
    }
    await sleep(intervalMs);
  }
}

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
// The origin: records every delivery; answers what the test tells it to

/**
 * @typedef {{ webhookId: string, receiptId?: string, conversation?: string, answered: number, verified: boolean, at: number }} OriginDelivery
 */

/**
 * A local origin on 127.0.0.1 at a free port, path /receipts. Every delivery is verified with
 * `standardwebhooks` (an unverifiable one is answered 401 and recorded as such), then answered
 * `answer` (200 unless told otherwise: 400 turns a delivery into a dead letter at once).
 * @param {string} secret the FORWARD_SECRET the relay signs with
 */
export async function startOrigin(secret) {
  const webhook = new Webhook(secret);
  /** @type {OriginDelivery[]} */
  const deliveries = [];
  let answer = 200;
  const server = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(["webhook-id", "webhook-timestamp", "webhook-signature"].map((name) => [name, String(request.headers[name] ?? "")]));
      if (request.method !== "POST" || new URL(request.url ?? "/", "http://origin.invalid").pathname !== "/receipts") {
        response.writeHead(404).end();
        return;
      }
      let data;
      let verified = true;
      try {
        data = /** @type {any} */ (webhook.verify(body, headers))?.data;
      } catch {
        verified = false;
      }
      const status = verified ? answer : 401;
      deliveries.push({ webhookId: headers["webhook-id"], receiptId: data?.id, conversation: data?.conversation, answered: status, verified, at: Date.now() });
      response.writeHead(status, { "content-type": "text/plain" }).end(status >= 400 ? `test origin answers ${status}` : "ok");
    });
  });
  const port = await freePort();
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  const close = () =>
    new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve(undefined));
    });
  stoppers.push(close);
  return {
    url: `http://127.0.0.1:${port}/receipts`,
    deliveries,
    /** @param {number} status what every verified delivery is answered from now on */
    answerWith(status) {
      answer = status;
    },
    /** The deliveries of one receipt, in arrival order. */
    deliveriesOf(receiptId) {
      return deliveries.filter((delivery) => delivery.receiptId === receiptId);
    },
    close,
  };
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
 * Starts the relay (scripts/local-relay.mjs: D1 migrations applied to a fresh persistence
 * directory, then `wrangler dev` on 127.0.0.1 at a free port with `settings` from an env file)
 * until /healthz says every provider, forwarding and the API are on. Stopped by `stopAll()`.
 * @param {Record<string, string>} settings
 */
export async function startRelay(settings, { startupTimeoutMs = 120_000 } = {}) {
  const relay = await startLocalRelay({
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
 * A freshly signed sample callback, picked by its label in scripts/samples.mjs, with the receipt
 * the relay will make of it (id and conversation key, computed by the relay's own provider code).
 * @param {Record<string, string>} settings
 * @param {string} label e.g. "easemob read_ack (one-to-one)"
 */
export async function signedCallback(settings, label) {
  const sample = buildSamples(settings).find((candidate) => candidate.label === label);
  if (!sample) throw new Error(`scripts/samples.mjs builds no sample labelled "${label}" with these settings`);
  const expected = await expectedReceipt(sample);
  if ("error" in expected) throw new Error(`the sample "${label}" is not a receipt: ${expected.error}`);
  return { sample, receiptId: expected.id, conversation: expected.conversation };
}

/** Posts a signed callback; throws unless the relay accepts it (2xx). */
export async function sendCallback(relayUrl, callback) {
  const answer = await postSample(relayUrl, callback.sample);
  if (answer.status < 200 || answer.status >= 300)
    throw new Error(`the relay answered ${answer.status} to the ${callback.sample.label} callback: ${answer.text.slice(0, 300)}`);
  return answer;
}

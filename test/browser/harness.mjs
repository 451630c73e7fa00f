// The browser test's world, on 127.0.0.1 only: the relay under `wrangler dev` with its own settings
// and persistence in a temporary directory, a scriptable local origin, and signed callbacks built
// by scripts/samples.mjs. Everything started here is stopped by `stopAll()`, on exit and on signals.
// (The approach of scripts/soak.mjs: a process group per wrangler, so that workerd goes with it.)
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { Webhook } from "standardwebhooks";
import { root } from "../../scripts/dev-vars.mjs";
import { buildSamples, expectedReceipt, postSample, readVarsFile } from "../../scripts/samples.mjs";

export { root };
const wranglerBin = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");

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

export function freePort() {
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
// Cleanup: everything started here, stopped once, whatever way the process ends

/** @type {Set<() => void>} synchronous last-resort stoppers (process "exit" allows no waiting) */
const onExit = new Set();
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

process.on("exit", () => onExit.forEach((stop) => stop()));
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

/** A temporary directory removed on exit. */
export function tempDir(prefix) {
  const dir = mkdtempSync(`${tmpdir()}/${prefix}`);
  onExit.add(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
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

/** Runs wrangler to completion; rejects with the end of its output when it fails. */
function runWrangler(args, { timeoutMs = 90_000, log } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [wranglerBin, ...args], {
      cwd: root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", CI: "1" },
    });
    registerGroup(child.pid);
    let output = "";
    const collect = (chunk) => {
      output += chunk;
      log?.write(chunk);
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    const kill = () => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    };
    onExit.add(kill);
    const timer = setTimeout(() => {
      kill();
      reject(new Error(`wrangler ${args.slice(0, 3).join(" ")} did not finish within ${timeoutMs / 1000} s:\n${tail(output, 15)}`));
    }, timeoutMs);
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      onExit.delete(kill);
      if (code === 0) resolve(output);
      else reject(new Error(`wrangler ${args.slice(0, 3).join(" ")} failed (${signal ?? `exit ${code}`}):\n${tail(output, 15)}`));
    });
  });
}

const tail = (text, lines) => text.trimEnd().split("\n").slice(-lines).join("\n");

/** Settings in a .env file of the run's own (mode 0600): never on a command line, where `ps` shows them. */
function writeEnvFile(path, settings) {
  const lines = Object.entries(settings).map(([name, value]) => {
    if (!/^[A-Z0-9_]+$/.test(name) || /["\\\n\r$`]/.test(value)) throw new Error(`setting ${name} cannot be written to an env file as it is`);
    return `${name}="${value}"`;
  });
  writeFileSync(path, `${lines.join("\n")}\n`, { mode: 0o600 });
}

/**
 * Starts the relay: D1 migrations applied to a fresh persistence directory, then `wrangler dev`
 * on 127.0.0.1 at a free port with `settings` from an env file (which also keeps a developer's
 * .dev.vars out), until /healthz says every provider, forwarding and the API are on.
 * @param {Record<string, string>} settings
 */
export async function startRelay(settings, { startupTimeoutMs = 120_000 } = {}) {
  const dir = tempDir("receipt-relay-browser-");
  const persist = `${dir}/state`;
  const envFile = `${dir}/relay.env`;
  writeEnvFile(envFile, settings);
  const logPath = `${dir}/wrangler.log`;
  const log = createWriteStream(logPath);
  const startedAt = Date.now();
  await runWrangler(["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "--env-file", envFile], { log });

  const [port, inspectorPort] = [await freePort(), await freePort()];
  const args = [
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(inspectorPort),
    "--persist-to",
    persist,
    "--env-file",
    envFile,
    "--show-interactive-dev-session=false",
  ];
  const relay = spawn(process.execPath, [wranglerBin, ...args], {
    cwd: root,
    // Leader of its own process group: workerd is killed with it.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
  });
  registerGroup(relay.pid);
  relay.stdout.pipe(log, { end: false });
  relay.stderr.pipe(log, { end: false });
  const running = () => relay.exitCode === null && relay.signalCode === null;
  const killGroup = (signal) => {
    if (!running()) return;
    try {
      process.kill(-relay.pid, signal);
    } catch {}
  };
  const exited = new Promise((resolve) => relay.once("exit", resolve));
  const stop = async () => {
    killGroup("SIGTERM");
    const gone = await Promise.race([exited.then(() => true), sleep(8000).then(() => false)]);
    if (!gone) killGroup("SIGKILL");
    // workerd may outlive wrangler by a moment: the group is swept once more.
    try {
      process.kill(-relay.pid, "SIGKILL");
    } catch {}
  };
  onExit.add(() => {
    try {
      process.kill(-relay.pid, "SIGKILL");
    } catch {}
  });
  stoppers.push(stop);

  const url = `http://127.0.0.1:${port}`;
  const logTail = (lines = 25) => {
    try {
      return tail(readFileSync(logPath, "utf8"), lines);
    } catch {
      return "(no wrangler log)";
    }
  };
  let lastHealth;
  try {
    await waitFor(
      `the relay's /healthz at ${url} to report every provider, forwarding and the API on`,
      async () => {
        if (!running()) throw new Error(`wrangler dev exited (${relay.exitCode ?? relay.signalCode})`);
        const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3000) });
        lastHealth = await response.json();
        return lastHealth?.status === "ok" && lastHealth?.forwarding?.state === "on" && lastHealth?.api?.state === "on";
      },
      { timeoutMs: startupTimeoutMs, intervalMs: 300 },
    );
  } catch (error) {
    const health = lastHealth ? `\nlast /healthz: ${JSON.stringify(lastHealth).slice(0, 600)}` : "";
    throw new Error(`${error instanceof Error ? error.message : error}${health}\nthe end of wrangler's log:\n${logTail()}`);
  }
  return { url, port, startedInMs: Date.now() - startedAt, logTail, stop };
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

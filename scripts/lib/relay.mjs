// @ts-check
// The relay under `wrangler dev` on 127.0.0.1, for the soak, the drills and the browser tests: its
// own temporary directory (persistence, settings file, wrangler's log), the D1 migrations applied
// first, free ports, and ready once /healthz says so. Settings go in a mode-0600 env file, never
// on a command line where `ps` shows them (and the file keeps a developer's .dev.vars out).
// wrangler leads its own process group, so workerd is stopped with it: by `stop()`, and on any
// exit of this process (also Ctrl-C when the script installed no handler of its own).
import { spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { root } from "../dev-vars.mjs";
import { sleep, WaitTimeout, waitFor } from "./wait.mjs";

const wranglerBin = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
const wranglerEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", CI: "1" };
/** @param {string} text @param {number} lines */
const tail = (text, lines) => text.trimEnd().split("\n").slice(-lines).join("\n");

/** Synchronous last-resort cleanups: process "exit" allows no waiting. @type {Set<() => void>} */
const onExit = new Set();
process.on("exit", () => onExit.forEach((cleanup) => cleanup()));
// A detached group does not get the terminal's Ctrl-C: without a handler of the script's own,
// Node would die without "exit" handlers and leave workerd running.
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM", "SIGHUP"])) {
  process.once(signal, () => {
    if (process.listenerCount(signal) === 0) process.exit(130);
  });
}

/** @param {number} pid @param {NodeJS.Signals} signal */
const killGroup = (pid, signal) => {
  try {
    process.kill(-pid, signal);
  } catch {}
};

/** A free TCP port on 127.0.0.1. @returns {Promise<number>} */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** @param {string} path @param {Record<string, string>} settings */
function writeEnvFile(path, settings) {
  const lines = Object.entries(settings).map(([name, value]) => {
    if (!/^[A-Z0-9_]+$/.test(name) || /["\\\n\r$`]/.test(value)) throw new Error(`setting ${name} cannot be written to an env file as it is`);
    return `${name}="${value}"`;
  });
  writeFileSync(path, `${lines.join("\n")}\n`, { mode: 0o600 });
}

/**
 * Starts wrangler with `args`, output to `log`, in its own process group killed on exit.
 * @param {string[]} args @param {import("node:fs").WriteStream} log @param {((pid: number) => void) | undefined} onSpawn
 */
function spawnWrangler(args, log, onSpawn) {
  const child = spawn(process.execPath, [wranglerBin, ...args], { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"], env: wranglerEnv });
  if (child.pid) onSpawn?.(child.pid);
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const kill = () => child.pid && killGroup(child.pid, "SIGKILL");
  onExit.add(kill);
  child.once("exit", () => onExit.delete(kill));
  return child;
}

/** @param {import("node:child_process").ChildProcess} child */
const isRunning = (child) => child.exitCode === null && child.signalCode === null;

/**
 * @typedef {object} Relay
 * @property {string} url e.g. http://127.0.0.1:PORT
 * @property {number} port
 * @property {string} dir the temporary directory (state/, relay.env, wrangler.log), removed on exit
 * @property {string} logPath wrangler's log (stdout and stderr of every start)
 * @property {(lines?: number) => string} logTail the end of wrangler's log
 * @property {any} health the /healthz answer that made it ready (the latest start's)
 * @property {number} startedInMs how long the latest start took
 * @property {() => boolean} running
 * @property {(signal?: NodeJS.Signals) => Promise<void>} kill signals the process group (SIGKILL: a crash) and waits until wrangler exits
 * @property {() => Promise<void>} restart starts it again on the same ports from the same state, and waits until ready
 * @property {() => Promise<void>} stop SIGTERM, then SIGKILL after 8 s; the group swept once more
 */

/**
 * Starts the relay and waits until `ready(health)` holds for its /healthz answer.
 * @param {{ settings: Record<string, string>, args?: string[], prefix?: string, ready?: (health: any) => boolean,
 *   startupTimeoutMs?: number, onSpawn?: (pid: number) => void }} options
 *   `args`: more `wrangler dev` flags (e.g. --test-scheduled); `onSpawn`: told each process group started.
 * @returns {Promise<Relay>}
 */
export async function startRelay({
  settings,
  args = [],
  prefix = "receipt-relay-",
  ready = (health) => health?.status === "ok",
  startupTimeoutMs = 120_000,
  onSpawn,
}) {
  const dir = mkdtempSync(`${tmpdir()}/${prefix}`);
  onExit.add(() => rmSync(dir, { recursive: true, force: true }));
  const persist = `${dir}/state`;
  const envFile = `${dir}/relay.env`;
  const logPath = `${dir}/wrangler.log`;
  writeEnvFile(envFile, settings);
  const log = createWriteStream(logPath);
  const logTail = (lines = 25) => {
    try {
      return tail(readFileSync(logPath, "utf8"), lines);
    } catch {
      return "(no wrangler log)";
    }
  };

  const migrate = spawnWrangler(["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "--env-file", envFile], log, onSpawn);
  const migrated = await new Promise((resolve) => migrate.once("exit", (code, signal) => resolve(code ?? signal)));
  if (migrated !== 0) throw new Error(`wrangler d1 migrations apply DB --local failed (${migrated}):\n${logTail(15)}`);

  const [port, inspectorPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${port}`;
  const devArgs = ["dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspectorPort), "--persist-to", persist];
  devArgs.push("--env-file", envFile, "--show-interactive-dev-session=false", ...args);

  /** @type {import("node:child_process").ChildProcess} */
  let child;
  /** @type {Promise<unknown>} */
  let exited;
  /** @type {Relay} */
  const relay = {
    url,
    port,
    dir,
    logPath,
    logTail,
    health: undefined,
    startedInMs: 0,
    running: () => isRunning(child),
    async kill(signal = "SIGKILL") {
      if (!isRunning(child) || !child.pid) return;
      killGroup(child.pid, signal);
      if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) killGroup(child.pid, "SIGKILL");
      await Promise.race([exited, sleep(5_000)]);
    },
    async restart() {
      await relay.kill("SIGKILL");
      await start();
    },
    async stop() {
      if (!child?.pid) return;
      if (isRunning(child)) {
        killGroup(child.pid, "SIGTERM");
        if (!(await Promise.race([exited.then(() => true), sleep(8000).then(() => false)]))) killGroup(child.pid, "SIGKILL");
      }
      // workerd may outlive wrangler by a moment: the group is swept once more.
      killGroup(child.pid, "SIGKILL");
    },
  };

  async function start() {
    const startedAt = Date.now();
    child = spawnWrangler(devArgs, log, onSpawn);
    exited = new Promise((resolve) => child.once("exit", resolve));
    /** @type {any} */
    let health;
    const probe = async () => {
      if (!isRunning(child)) throw new Error(`wrangler dev exited (${child.exitCode ?? child.signalCode}):\n${logTail()}`);
      try {
        health = await (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3000) })).json();
      } catch {
        return undefined;
      }
      return ready(health) ? health : undefined;
    };
    const describe = () =>
      `the relay at ${url} was not ready (${health ? `last /healthz: ${JSON.stringify(health).slice(0, 600)}` : "no answer from /healthz"})`;
    try {
      relay.health = await waitFor("the relay's /healthz", probe, { timeoutMs: startupTimeoutMs, intervalMs: 300, retryOnError: false, describe });
    } catch (error) {
      if (error instanceof WaitTimeout) throw new Error(`${error.message}\nthe end of wrangler's log:\n${logTail()}`);
      throw error;
    }
    relay.startedInMs = Date.now() - startedAt;
  }

  await start();
  return relay;
}

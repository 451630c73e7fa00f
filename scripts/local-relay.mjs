// The relay under `wrangler dev` on 127.0.0.1, for the drills and the browser tests: its own
// temporary directory (persistence, settings file, wrangler's log), the D1 migrations applied
// first, a free port, and ready once /healthz says so. Settings go in a mode-0600 env file, never
// on a command line where `ps` shows them (and the file keeps a developer's .dev.vars out).
// wrangler leads its own process group, so workerd is stopped with it: by `stop()`, and on any
// exit of this process.
import { spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { root } from "./dev-vars.mjs";

const wranglerBin = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
const wranglerEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", CI: "1" };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const tail = (text, lines) => text.trimEnd().split("\n").slice(-lines).join("\n");

/** Synchronous last-resort cleanups: process "exit" allows no waiting. */
const onExit = new Set();
process.on("exit", () => onExit.forEach((cleanup) => cleanup()));

const killGroup = (pid, signal) => {
  try {
    process.kill(-pid, signal);
  } catch {}
};

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function writeEnvFile(path, settings) {
  const lines = Object.entries(settings).map(([name, value]) => {
    if (!/^[A-Z0-9_]+$/.test(name) || /["\\\n\r$`]/.test(value)) throw new Error(`setting ${name} cannot be written to an env file as it is`);
    return `${name}="${value}"`;
  });
  writeFileSync(path, `${lines.join("\n")}\n`, { mode: 0o600 });
}

/** Starts wrangler with `args`, output to `log`, in its own process group killed on exit. */
function spawnWrangler(args, log, onSpawn) {
  const child = spawn(process.execPath, [wranglerBin, ...args], { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"], env: wranglerEnv });
  onSpawn?.(child.pid);
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const kill = () => killGroup(child.pid, "SIGKILL");
  onExit.add(kill);
  child.once("exit", () => onExit.delete(kill));
  return child;
}

/**
 * Starts the relay and waits until `ready(health)` holds for its /healthz answer.
 * @param {{ settings: Record<string, string>, args?: string[], prefix?: string, ready?: (health: any) => boolean,
 *   startupTimeoutMs?: number, onSpawn?: (pid: number) => void }} options
 *   `args`: more `wrangler dev` flags (e.g. --test-scheduled); `onSpawn`: told each process group started.
 */
export async function startLocalRelay({
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
  const startedAt = Date.now();

  const migrate = spawnWrangler(["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "--env-file", envFile], log, onSpawn);
  const migrated = await new Promise((resolve) => migrate.once("exit", (code, signal) => resolve(code ?? signal)));
  if (migrated !== 0) throw new Error(`wrangler d1 migrations apply DB --local failed (${migrated}):\n${logTail(15)}`);

  const [port, inspectorPort] = [await freePort(), await freePort()];
  const relay = spawnWrangler(
    [
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
      ...args,
    ],
    log,
    onSpawn,
  );
  const running = () => relay.exitCode === null && relay.signalCode === null;
  const exited = new Promise((resolve) => relay.once("exit", resolve));
  const stop = async () => {
    if (running()) {
      killGroup(relay.pid, "SIGTERM");
      if (!(await Promise.race([exited.then(() => true), sleep(8000).then(() => false)]))) killGroup(relay.pid, "SIGKILL");
    }
    // workerd may outlive wrangler by a moment: the group is swept once more.
    killGroup(relay.pid, "SIGKILL");
  };

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + startupTimeoutMs;
  let health;
  for (;;) {
    if (!running()) throw new Error(`wrangler dev exited (${relay.exitCode ?? relay.signalCode}):\n${logTail()}`);
    try {
      health = await (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3000) })).json();
      if (ready(health)) break;
    } catch {}
    if (Date.now() >= deadline) {
      const last = health ? `; last /healthz: ${JSON.stringify(health).slice(0, 600)}` : "; no answer from /healthz";
      throw new Error(`the relay at ${url} was not ready within ${startupTimeoutMs / 1000} s${last}\nthe end of wrangler's log:\n${logTail()}`);
    }
    await sleep(300);
  }
  return { url, port, dir, logPath, logTail, health, startedInMs: Date.now() - startedAt, stop };
}

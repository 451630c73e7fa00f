// Building and starting workers: bundles with esbuild, runs them in workerd through Miniflare, tells
// each workerd process apart (for its CPU time) and cleans up processes, servers and temp dirs.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root } from "../scripts/dev-vars.mjs";
// The dashboard's browser script, built into the string module src/ imports (not committed; wrangler
// builds it as its [build] command, this bench bundles src/ itself).
import "../src/dashboard/browser/build.mjs";
import { sleep } from "./util.mjs";

export const HOST = "127.0.0.1";
export const COMPATIBILITY_DATE = "2026-04-20"; // wrangler.toml's; it sets no compatibility_flags
const COMPATIBILITY_FLAGS = [];
// The Miniflare that the pinned wrangler runs (`wrangler dev` and the tests use it): its workerd is
// the one that wrangler.toml's compatibility date is pinned against.
const wranglerRequire = createRequire(createRequire(import.meta.url).resolve("wrangler/package.json"));
const { Miniflare } = wranglerRequire("miniflare");
export const MINIFLARE_VERSION = JSON.parse(readFileSync(wranglerRequire.resolve("miniflare/package.json"), "utf8")).version;
const ESBUILD = join(root, "node_modules/.bin/esbuild");

// ---------------------------------------------------------------------------------------------
// Processes, temp dirs and cleanup

let temp = "";
const instances = new Set();
const servers = new Set();

/** Creates the temp dir and stops everything on exit or a signal (called once options are parsed). */
export function prepare() {
  temp = mkdtempSync(join(tmpdir(), "receipt-relay-bench-"));
  process.on("exit", cleanupNow);
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      console.error(`bench: ${signal}, stopping`);
      cleanupNow();
      process.exit(130);
    });
  }
}

/** A local server (an origin) to close on cleanup. */
export const trackServer = (server) => servers.add(server);

let cleanedUp = false;
function killChildrenNow() {
  for (const instance of instances) {
    try {
      if (instance.pid) process.kill(instance.pid, "SIGKILL");
    } catch {}
  }
  for (const server of servers) {
    server.closeAllConnections?.();
    server.close();
  }
}
function cleanupNow() {
  if (cleanedUp) return;
  cleanedUp = true;
  killChildrenNow();
  if (temp) rmSync(temp, { recursive: true, force: true });
}
export async function cleanup() {
  for (const instance of [...instances]) await instance.dispose();
  cleanupNow();
}

// ---------------------------------------------------------------------------------------------
// Building and starting workers

export function bundle(entry, name) {
  const outdir = join(temp, `build-${name}`);
  mkdirSync(outdir, { recursive: true });
  // As wrangler bundles src/index.ts (conditions workerd, worker, browser; ESM; cloudflare:* external).
  execFileSync(
    ESBUILD,
    [
      join(root, entry),
      "--bundle",
      "--format=esm",
      "--platform=neutral",
      "--target=es2022",
      "--conditions=workerd,worker,browser",
      "--main-fields=browser,module,main",
      "--external:cloudflare:*",
      "--external:node:*",
      "--log-level=warning",
      `--outfile=${join(outdir, "worker.js")}`,
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  return join(outdir, "worker.js");
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** /proc/<pid>/stat: [comm, ppid, utime+stime ticks]. */
function procStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = text.lastIndexOf(")");
    const comm = text.slice(text.indexOf("(") + 1, close);
    const fields = text.slice(close + 2).split(" ");
    return { comm, ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}
function workerdChildren() {
  const pids = new Set();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry);
    if (stat && stat.ppid === process.pid && stat.comm.startsWith("workerd")) pids.add(Number(entry));
  }
  return pids;
}
/** CPU µs the process has used so far (user + system, all threads). */
export const cpuMicros = (pid) => ((procStat(pid)?.ticks ?? NaN) * 1e6) / CLOCK_TICKS;

let instanceCount = 0;
/** wrangler.toml's accept queue and its consumer (Miniflare runs both in workerd). */
const ACCEPT_QUEUE = "receipt-relay-accept";

export async function startWorker(scriptPath, { relay = false, settings = {}, acceptQueue = false } = {}) {
  const name = `${relay ? "relay" : "noop"}-${++instanceCount}`;
  const state = join(temp, name);
  const before = workerdChildren();
  /** `lines`: every line the relay wrote (Workers Logs bills per line); errors and warnings apart. */
  const logs = { errors: 0, warnings: 0, lines: 0, samples: [] };
  const mf = new Miniflare({
    host: HOST,
    port: 0,
    modules: true,
    scriptPath,
    modulesRoot: join(scriptPath, ".."),
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    // Tests set CF-Connecting-IP themselves (the refused scenario varies it).
    stripCfConnectingIp: false,
    handleStructuredLogs: ({ level, message }) => {
      logs.lines++;
      if (level === "error") logs.errors++;
      else if (level === "warn") logs.warnings++;
      else return;
      if (logs.samples.length < 5 && !logs.samples.some((sample) => sample.slice(0, 60) === String(message).slice(0, 60))) {
        logs.samples.push(`${level}: ${String(message).slice(0, 300)}`);
      }
    },
    ...(relay
      ? {
          durableObjects: { CONVERSATION: { className: "Conversation", useSQLite: true }, CLAIMS: { className: "CallbackClaims", useSQLite: true } },
          kvNamespaces: ["RECEIPTS_KV"],
          ratelimits: { AUTH_FAILURES: { simple: { limit: 20, period: 60 } } },
          // wrangler.toml's optional metrics dataset (local: accepted and dropped).
          analyticsEngineDatasets: { METRICS: { dataset: "receipt_relay" } },
          bindings: settings,
          ...(acceptQueue
            ? {
                queueProducers: { ACCEPT_QUEUE: { queueName: ACCEPT_QUEUE } },
                queueConsumers: { [ACCEPT_QUEUE]: { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 10 } },
              }
            : {}),
          // In workerd, on disk.
          durableObjectsPersist: join(state, "do"),
          kvPersist: join(state, "kv"),
        }
      : {}),
  });
  const instance = {
    name,
    relay,
    mf,
    logs,
    pid: undefined,
    url: undefined,
    async dispose() {
      if (!instances.has(instance)) return;
      instances.delete(instance);
      await Promise.race([mf.dispose().catch(() => undefined), sleep(10_000)]);
      try {
        if (instance.pid) process.kill(instance.pid, "SIGKILL");
      } catch {}
      rmSync(state, { recursive: true, force: true });
    },
  };
  instances.add(instance);
  const url = await Promise.race([mf.ready, sleep(60_000).then(() => undefined)]);
  if (!url) throw new Error(`${name}: workerd did not start within 60 s`);
  instance.url = String(url).replace(/\/$/, "");
  const started = [...workerdChildren()].filter((pid) => !before.has(pid));
  instance.pid = started.length === 1 ? started[0] : undefined;
  if (!instance.pid) console.warn(`bench: could not tell ${name}'s workerd process apart (${started.length} new): no CPU figures`);
  return instance;
}

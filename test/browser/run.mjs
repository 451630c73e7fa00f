#!/usr/bin/env node
// `npm run test:browser`: the dashboard's scenario (test/browser/dashboard.mjs) in headless Chromium,
// under a hard timeout, with a backstop that no process of the run survives it. Prints the
// scenario's steps, then one summary line; exits 1 when any step failed or the time ran out.
//   BROWSER_TEST_TIMEOUT_SECONDS  the hard timeout (default 240)
//   CHROMIUM_PATH                 the browser (default /usr/bin/chromium)
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const timeoutSeconds = Number(process.env.BROWSER_TEST_TIMEOUT_SECONDS ?? 240);
if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 10) {
  console.error("browser tests: BROWSER_TEST_TIMEOUT_SECONDS must be a number of seconds, at least 10");
  process.exit(2);
}
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
if (!existsSync(chromiumPath)) {
  console.error(`browser tests: no Chromium at ${chromiumPath}: apt-get install -y chromium (Debian), or set CHROMIUM_PATH`);
  console.log("browser tests: not run (no Chromium)");
  process.exit(1);
}

const startedAt = Date.now();
/** Every process of this run carries it in its environment (the test, wrangler, workerd, Chromium). */
const runId = randomUUID();
const MARKER = `RECEIPT_RELAY_BROWSER_RUN=${runId}`;
const work = mkdtempSync(`${tmpdir()}/receipt-relay-browser-run-`);
const pidsDir = `${work}/groups`;
mkdirSync(pidsDir);
const summaryFile = `${work}/summary.json`;

const child = spawn(
  process.execPath,
  [
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    `--test-reporter=${new URL("./summary-reporter.mjs", import.meta.url).href}`,
    `--test-reporter-destination=${summaryFile}`,
    fileURLToPath(new URL("./dashboard.mjs", import.meta.url)),
  ],
  {
    cwd: root,
    // Its own process group, so that the timeout reaches everything it started.
    detached: true,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, RECEIPT_RELAY_BROWSER_RUN: runId, BROWSER_TEST_PIDS_DIR: pidsDir, CHROMIUM_PATH: chromiumPath },
  },
);

let stopReason;
const killGroup = (pgid, signal) => {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
};
/** Asks the scenario to stop (it stops what it started), then forces it after 10 s. */
function stop(reason) {
  if (stopReason) return;
  stopReason = reason;
  console.error(`browser tests: ${reason}; stopping`);
  killGroup(child.pid, "SIGTERM");
  setTimeout(() => killGroup(child.pid, "SIGKILL"), 10_000).unref();
}
const hardTimeout = setTimeout(() => stop(`the hard timeout of ${timeoutSeconds} s was reached`), timeoutSeconds * 1000);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => stop(`${signal} received`));

/** Processes of this run still alive: found by the marker in their environment (Linux's /proc). */
function leftovers() {
  if (!existsSync("/proc/self/environ")) return [];
  const found = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, "latin1").split("\0").includes(MARKER)) {
        found.push({ pid: Number(name), command: readFileSync(`/proc/${name}/cmdline`, "latin1").split("\0")[0] ?? "" });
      }
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

const exit = await new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
clearTimeout(hardTimeout);

// Backstop: the scenario stops what it starts; whatever survived it (a crash, a SIGKILL) goes now.
killGroup(child.pid, "SIGKILL");
for (const pgid of readdirSync(pidsDir)) killGroup(Number(pgid), "SIGKILL");
const survivors = leftovers();
for (const { pid } of survivors) {
  try {
    process.kill(pid, "SIGKILL");
  } catch {}
}
if (survivors.length > 0 && !stopReason) {
  console.error(`browser tests: killed ${survivors.length} processes the scenario left running: ${[...new Set(survivors.map((p) => p.command))].join(", ")}`);
}

let summary;
try {
  summary = JSON.parse(readFileSync(summaryFile, "utf8"));
} catch {
  summary = undefined;
}
rmSync(work, { recursive: true, force: true });

const seconds = ((Date.now() - startedAt) / 1000).toFixed(1);
const passed = exit.code === 0 && !stopReason && summary !== undefined && summary.failed === 0 && summary.passed > 0;
const counts = summary ? `${summary.passed} passed, ${summary.failed} failed${summary.skipped ? `, ${summary.skipped} skipped` : ""}` : "no result";
const why = stopReason ? ` (${stopReason})` : exit.code !== 0 && !summary?.failed ? ` (the scenario exited ${exit.signal ?? exit.code})` : "";
const firstFailure = summary?.failures?.[0] ? `; first failure: ${summary.failures[0].name}: ${summary.failures[0].error}` : "";
console.log(`browser tests: ${counts} in ${seconds} s${why}${firstFailure}; screenshots in test-results/browser/`);
process.exit(passed ? 0 : 1);

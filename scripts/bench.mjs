#!/usr/bin/env node
// Benchmark on 127.0.0.1 only: the relay under `wrangler dev` against a no-op worker in the same
// run and runtime, reported as ratios (absolute numbers on a dev machine mean little). Store-only
// (no ORIGIN_URL): it measures what a provider waits for. Stops by itself.
//   node scripts/bench.mjs [secondsPerScenario=8] [connections=8]
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import autocannon from "autocannon";
import { root } from "./dev-vars.mjs";

const seconds = Number(process.argv[2] ?? 8);
const connections = Number(process.argv[3] ?? 8);
const SECRET = "bench-easemob-secret";
const wrangler = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
const state = mkdtempSync(`${tmpdir()}/receipt-relay-bench-`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const children = [];

async function start(port, args) {
  const child = spawn(process.execPath, [wrangler, "dev", "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state, ...args], {
    cwd: root,
    stdio: "ignore",
  });
  children.push(child);
  for (let i = 0; i < 120; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/healthz`);
      return `http://127.0.0.1:${port}`;
    } catch {}
    await sleep(500);
  }
  throw new Error(`wrangler dev on ${port} did not start`);
}

const md5 = (text) => createHash("md5").update(text).digest("hex");
let counter = 0;
/** A fresh, correctly signed Easemob read_ack; `users` bounds how many conversations it spreads over. */
function easemobBody(users, { sign = true, fixed = false } = {}) {
  const n = fixed ? 0 : ++counter;
  const callId = `bench#app_${fixed ? "fixed" : `${process.pid}${n}`}`;
  const timestamp = fixed ? fixedTimestamp : Date.now();
  return JSON.stringify({
    callId,
    eventType: "chat",
    chat_type: "read_ack",
    security: sign ? md5(`${callId}${SECRET}${timestamp}`) : "0".repeat(32),
    payload: { ext: {}, ack_message_id: String(1000 + n), bodies: [] },
    appkey: "bench#app",
    from: `user${n % users}`,
    to: "peer",
    msg_id: String(n),
    timestamp,
  });
}
const fixedTimestamp = Date.now();

function run(url, body) {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `${url}/v1/hooks/easemob`,
        method: "POST",
        connections,
        duration: seconds,
        headers: { "content-type": "application/json" },
        requests: [{ setupRequest: (request) => ({ ...request, body: body() }) }],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
}

const scenarios = [
  ["accepted, spread over 1,000 conversations", () => easemobBody(1000)],
  ["accepted, all in one conversation", () => easemobBody(1)],
  ["duplicate (the same callback again)", () => easemobBody(1, { fixed: true })],
  ["refused: bad signature (401)", () => easemobBody(1000, { sign: false })],
];

try {
  const noop = await start(8795, ["--config", "bench/wrangler.noop.toml"]);
  const relay = await start(8796, ["--var", `EASEMOB_SECRET:${SECRET}`, "--var", "ORIGIN_URL:", "--var", "FORWARD_SECRET:"]);
  console.log(`bench: ${seconds} s per scenario, ${connections} connections, wrangler dev on 127.0.0.1\n`);
  // Warm both up, then measure the baseline once per scenario pair to share the machine's state.
  await run(noop, () => easemobBody(1000));
  await run(relay, () => easemobBody(1000));
  const rows = [];
  for (const [name, body] of scenarios) {
    const base = await run(noop, body);
    const subject = await run(relay, body);
    const non2xx = subject.non2xx;
    rows.push({
      scenario: name,
      "noop req/s": Math.round(base.requests.average),
      "relay req/s": Math.round(subject.requests.average),
      "throughput ratio": (subject.requests.average / base.requests.average).toFixed(2),
      "p50 ms (noop/relay)": `${base.latency.p50}/${subject.latency.p50}`,
      "p99 ms (noop/relay)": `${base.latency.p99}/${subject.latency.p99}`,
      "p50 ratio": (subject.latency.p50 / Math.max(base.latency.p50, 1)).toFixed(1),
      "relay non-2xx": non2xx,
      errors: subject.errors + subject.timeouts,
    });
  }
  console.table(rows);
} finally {
  for (const child of children) child.kill("SIGINT");
  await sleep(500);
  rmSync(state, { recursive: true, force: true });
}

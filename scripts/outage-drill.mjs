#!/usr/bin/env node
// Fault drill on 127.0.0.1 only, under `wrangler dev`: the origin answers 503 for OUTAGE seconds,
// callbacks keep arriving, and the relay process is killed and restarted in the middle. Passes when
// every accepted receipt reaches the origin exactly once (order is checked by the test suite). Stops by itself.
//   node scripts/outage-drill.mjs [outageSeconds=150]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { loadDevVars, root } from "./dev-vars.mjs";

const outageSeconds = Number(process.argv[2] ?? 150);
const RELAY_PORT = 8790;
const ORIGIN_PORT = 8791;
const relayUrl = `http://127.0.0.1:${RELAY_PORT}`;
const originUrl = `http://127.0.0.1:${ORIGIN_PORT}/receipts`;
// Short steps so that the drill ends within minutes; the retry rules are the production ones.
const schedule = "5,10,20,40,60,120,300";
const deadline = Date.now() + (outageSeconds + 420) * 1000;
const vars = loadDevVars();
const wrangler = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
const state = mkdtempSync(`${tmpdir()}/receipt-relay-drill-`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Receipt ids in the order the origin accepted them, by conversation. */
const delivered = new Map();
let duplicates = 0;
let refusedDuringOutage = 0;
const origin = spawn(process.execPath, [`${root}scripts/demo-origin.mjs`, "--fail", String(outageSeconds)], {
  cwd: root,
  env: { ...process.env, ORIGIN_URL: originUrl },
});
origin.stdout.on("data", (chunk) => {
  for (const line of String(chunk).split("\n")) {
    if (line.startsWith("[origin] 503")) refusedDuringOutage++;
    const match = /^\[origin\] \S+ \S+ (\S+) readers=\S* id=(\S+)( \(again\))?$/.exec(line);
    if (!match) continue;
    if (match[3]) duplicates++;
    const list = delivered.get(match[1]) ?? [];
    list.push(match[2]);
    delivered.set(match[1], list);
  }
});

let relay;
async function startRelay() {
  relay = spawn(
    process.execPath,
    [
      wrangler,
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(RELAY_PORT),
      "--persist-to",
      state,
      "--var",
      `ORIGIN_URL:${originUrl}`,
      "--var",
      `FORWARD_RETRY_SCHEDULE:${schedule}`,
    ],
    { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
  );
  for (let i = 0; i < 120; i++) {
    try {
      if ((await fetch(`${relayUrl}/healthz`)).ok) return;
    } catch {}
    await sleep(500);
  }
  throw new Error("the relay did not start");
}
async function stopRelay() {
  const exited = new Promise((resolve) => relay.once("exit", resolve));
  relay.kill("SIGINT");
  await exited;
}

/** Sends one round of every sample; returns how many the relay accepted. */
async function sendRound() {
  const output = await new Promise((resolve) => {
    const child = spawn(process.execPath, [`${root}scripts/send-samples.mjs`, relayUrl], { cwd: root });
    let text = "";
    child.stdout.on("data", (chunk) => (text += chunk));
    child.on("exit", () => resolve(text));
  });
  return output.split("\n").filter((line) => line.startsWith("200 ")).length;
}

let accepted = 0;
let exitCode = 1;
try {
  await startRelay();
  console.log(`drill: relay on ${relayUrl}, origin down for ${outageSeconds} s, retry steps ${schedule}`);
  for (let round = 0; round < 3; round++) accepted += await sendRound();
  await sleep(20_000);
  console.log("drill: killing the relay mid-outage, with deliveries pending");
  await stopRelay();
  await startRelay();
  console.log("drill: relay restarted from its persisted state");
  for (let round = 0; round < 2; round++) accepted += await sendRound();
  const expected = 8 * 5;
  while (Date.now() < deadline) {
    const count = [...delivered.values()].reduce((sum, list) => sum + list.length, 0);
    if (count - duplicates >= accepted) break;
    await sleep(2000);
  }
  const ids = [...delivered.values()].flat();
  const unique = new Set(ids).size;
  console.log(
    `drill: accepted ${accepted} of ${expected} sent; origin received ${unique} distinct, ${ids.length - unique} repeated, after answering 503 to ${refusedDuringOutage} attempts`,
  );
  exitCode = accepted === expected && unique === accepted && duplicates === 0 && refusedDuringOutage > 0 ? 0 : 1;
  console.log(exitCode === 0 ? "drill: PASS (nothing lost, nothing twice)" : "drill: FAIL");
} finally {
  relay?.kill("SIGINT");
  origin.kill("SIGINT");
  rmSync(state, { recursive: true, force: true });
  process.exit(exitCode);
}

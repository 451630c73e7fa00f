#!/usr/bin/env node
// `npm run dev`: demo settings in .dev.vars (created from .dev.vars.example), the demo origin,
// and the relay under `wrangler dev` on http://127.0.0.1:8787. Ctrl-C stops both.
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { loadDevVars, root } from "./dev-vars.mjs";

loadDevVars();
const wrangler = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
// The local D1 conversation index gets its tables (migrations/) before the relay starts (stdin
// closed: wrangler applies them without asking).
const migrated = spawnSync(process.execPath, [wrangler, "d1", "migrations", "apply", "DB", "--local"], { stdio: "inherit", cwd: root });
if (migrated.status !== 0) process.exit(migrated.status ?? 1);
const demoOrigin = spawn(process.execPath, [`${root}scripts/demo-origin.mjs`, ...process.argv.slice(2)], { stdio: "inherit", cwd: root });
const relay = spawn(process.execPath, [wrangler, "dev", "--ip", "127.0.0.1", "--port", process.env.PORT ?? "8787"], { stdio: "inherit", cwd: root });
console.log("relay: http://127.0.0.1:8787   try: npm run send-samples   health: curl http://127.0.0.1:8787/healthz");
console.log("dashboard: http://127.0.0.1:8787/dashboard   sign in with ADMIN_TOKEN from .dev.vars (the demo's: demo-admin-token)");

const stop = () => [demoOrigin, relay].forEach((child) => child.exitCode === null && child.kill("SIGINT"));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
// The relay runs on without the demo origin (it says why it did not start); the run ends with the relay.
relay.on("exit", (code) => {
  stop();
  process.exitCode = code ?? 0;
});

#!/usr/bin/env node
// A demo of the app's origin: verifies each forwarded receipt with the `standardwebhooks` package
// (exactly what a real origin should do) and prints it. Listens on ORIGIN_URL's port from .dev.vars.
//   node scripts/demo-origin.mjs              answer 200
//   node scripts/demo-origin.mjs --fail 120   answer 503 for the first 120 seconds (an outage)
import { Webhook } from "standardwebhooks";
import { loadDevVars } from "./dev-vars.mjs";
import { startOrigin } from "./lib/origin.mjs";

const vars = loadDevVars();
/** Unset and empty mean the same, as in the relay. */
const setting = (name) => (process.env[name] ?? vars[name] ?? "").trim() || undefined;

const origin = setting("ORIGIN_URL");
if (!origin) {
  console.log("[origin] ORIGIN_URL is not set in .dev.vars: no demo origin (the relay holds deliveries until it is set)");
  process.exit(0);
}
let originUrl;
try {
  originUrl = new URL(origin);
} catch {
  console.error("[origin] setting ORIGIN_URL must be an http:// or https:// URL; the demo origin is not started");
  process.exit(0);
}
// FORWARD_SECRET may list several secrets (rotation): the origin needs any one of them.
const secrets = (setting("FORWARD_SECRET") ?? "")
  .split(",")
  .map((item) => item.trim())
  .filter(Boolean);
const secret = secrets.find((item) => /^whsec_[A-Za-z0-9+/]+={0,2}$/.test(item) && item.length % 4 === 2);
if (!secret) {
  console.error(
    "[origin] setting FORWARD_SECRET must list secrets of the form whsec_ followed by base64; the demo origin is not started (the relay holds deliveries too)",
  );
  process.exit(0);
}
const failIndex = process.argv.indexOf("--fail");
const failSeconds = failIndex > 0 ? Number(process.argv[failIndex + 1] ?? 60) : 0;
try {
  new Webhook(secret);
} catch {
  console.error("[origin] setting FORWARD_SECRET is not valid base64 after whsec_; the demo origin is not started");
  process.exit(0);
}
/** Receipt ids seen: a real origin dedupes by webhook-id, since delivery is at least once. */
const seen = new Set();

/** One line per attempt: refused, failed in the outage, or each receipt it carried. @param {import("./lib/origin.mjs").Attempt} attempt */
function describe(attempt) {
  if (!attempt.verified) return `[origin] REFUSED ${attempt.id}: not a receipt event signed with FORWARD_SECRET`;
  if (attempt.status === 503) return `[origin] 503 (simulated outage) ${attempt.id}`;
  const again = seen.has(attempt.id) ? " (again)" : "";
  seen.add(attempt.id);
  const receipts = /** @type {any[]} */ (attempt.batch ? attempt.data : [attempt.data]);
  return receipts
    .map((receipt) => `[origin] ${receipt.provider} ${receipt.event} ${receipt.conversation} readers=${receipt.readers.join(",")} id=${receipt.id}${again}`)
    .join("\n");
}

const demoOrigin = await startOrigin({
  secrets: [secret],
  host: originUrl.hostname.replace(/^\[|\]$/g, ""),
  port: Number(originUrl.port || 80),
  path: originUrl.pathname,
  keepAttempts: false,
  onAttempt: (attempt) => console.log(describe(attempt)),
  // ALERT_URL may point here too (.dev.vars.example suggests /alerts).
  onAlert: (alert) => console.log(`[origin] alert ${alert.type} ${alert.webhookId} ${JSON.stringify(alert.data).slice(0, 200)}`),
});
if (failSeconds > 0) demoOrigin.fail({ forMs: failSeconds * 1000 });
console.log(
  `[origin] listening on ${originUrl.origin}${originUrl.pathname}, verifying with FORWARD_SECRET${failSeconds > 0 ? `, answering 503 until ${new Date(Date.now() + failSeconds * 1000).toISOString()}` : ""}`,
);

#!/usr/bin/env node
// A demo of the app's origin: verifies each forwarded receipt with the `standardwebhooks` package
// (exactly what a real origin should do) and prints it. Listens on ORIGIN_URL's port from .dev.vars.
//   node scripts/demo-origin.mjs              answer 200
//   node scripts/demo-origin.mjs --fail 120   answer 503 for the first 120 seconds (an outage)
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";
import { loadDevVars } from "./dev-vars.mjs";

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
const failUntil = failIndex > 0 ? Date.now() + Number(process.argv[failIndex + 1] ?? 60) * 1000 : 0;
let webhook;
try {
  webhook = new Webhook(secret);
} catch {
  console.error("[origin] setting FORWARD_SECRET is not valid base64 after whsec_; the demo origin is not started");
  process.exit(0);
}
/** Receipt ids seen: a real origin dedupes by webhook-id, since delivery is at least once. */
const seen = new Set();

const server = createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const headers = Object.fromEntries(["webhook-id", "webhook-timestamp", "webhook-signature"].map((name) => [name, String(request.headers[name] ?? "")]));
    let event;
    try {
      event = webhook.verify(body, headers);
    } catch (error) {
      console.log(`[origin] REFUSED ${headers["webhook-id"]}: ${error instanceof Error ? error.message : error}`);
      response.writeHead(401).end();
      return;
    }
    if (Date.now() < failUntil) {
      console.log(`[origin] 503 (simulated outage) ${headers["webhook-id"]}`);
      response.writeHead(503, { "content-type": "text/plain" }).end("down for maintenance");
      return;
    }
    const receipt = event.data;
    const again = seen.has(headers["webhook-id"]) ? " (again)" : "";
    seen.add(headers["webhook-id"]);
    console.log(`[origin] ${receipt.provider} ${receipt.event} ${receipt.conversation} readers=${receipt.readers.join(",")} id=${receipt.id}${again}`);
    response.writeHead(204).end();
  });
});

server.listen(Number(originUrl.port || 80), originUrl.hostname, () => {
  console.log(
    `[origin] listening on ${originUrl.origin}${originUrl.pathname}, verifying with FORWARD_SECRET${failUntil ? `, answering 503 until ${new Date(failUntil).toISOString()}` : ""}`,
  );
});

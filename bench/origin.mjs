// Origins for the bench: scripts/lib/origin.mjs answering 204 (after `delayMs`: an origin that far
// away), counting receipts (a batch counts each) and their latency, without keeping every attempt;
// closed with the bench's other servers. Each verifies every delivery's signature with the
// FORWARD_SECRET the bench gives the relay, as a real origin does: one it cannot verify is answered
// 401 and not counted, so a phase that waits for it does not settle.
import { startOrigin as startLibOrigin } from "../scripts/lib/origin.mjs";
import { HOST, trackServer } from "./build.mjs";
import { FORWARD_SECRET } from "./callbacks.mjs";

/** @param {number} [delayMs] */
export async function startOrigin(delayMs = 0) {
  const origin = await startLibOrigin({
    host: HOST,
    secrets: [FORWARD_SECRET],
    answer: delayMs > 0 ? { status: 204, delayMs } : { status: 204 },
    keepAttempts: false,
  });
  trackServer(origin.server);
  return origin;
}

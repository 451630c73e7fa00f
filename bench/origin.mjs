// Origins: count receipts (a batch counts its data.length), answer 204, optionally after a delay.
import { createServer } from "node:http";
import { HOST, trackServer } from "./build.mjs";

export function startOrigin(delayMs = 0) {
  const origin = {
    url: "",
    receipts: 0,
    deliveries: 0,
    /** While true, every delivery is answered 503 (an outage, to build a backlog). */
    failing: false,
    /** When the first delivery after the last reset was answered 2xx. */
    firstOkAt: 0,
    /** Per receipt answered 2xx: ms from the relay's `receivedAt` to its arrival here (the delivery latency). */
    latencies: [],
    reset() {
      origin.receipts = 0;
      origin.deliveries = 0;
      origin.firstOkAt = 0;
      origin.latencies = [];
    },
  };
  const server = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      let count = 1;
      const arrivedAt = Date.now();
      let receivedAt = [];
      try {
        const event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        if (event?.type === "receipt.read.batch" && Array.isArray(event.data)) count = event.data.length;
        receivedAt = (Array.isArray(event?.data) ? event.data : [event?.data]).map((receipt) => Date.parse(receipt?.receivedAt ?? ""));
      } catch {}
      const answer = () => {
        if (origin.failing) {
          response.writeHead(503).end();
          return;
        }
        origin.receipts += count;
        origin.deliveries++;
        for (const at of receivedAt) if (Number.isFinite(at)) origin.latencies.push(arrivedAt - at);
        if (!origin.firstOkAt) origin.firstOkAt = Date.now();
        response.writeHead(204).end();
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 30_000;
  trackServer(server);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, HOST, () => {
      origin.url = `http://${HOST}:${server.address().port}/receipts`;
      resolve(origin);
    });
  });
}

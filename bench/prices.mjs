// Prices: Workers Paid list prices in USD, beyond the included monthly amounts, checked 2026-12-03.
//   Workers requests $0.30/M: https://developers.cloudflare.com/workers/platform/pricing/
//   Durable Objects requests $0.15/M ("includes HTTP requests, RPC sessions, WebSocket messages and
//   alarm invocations"; every RPC method call is one request); SQLite rows read $0.001/M, rows written
//   $1.00/M: https://developers.cloudflare.com/durable-objects/platform/pricing/
//   KV writes (and deletes) $5.00/M, reads $0.50/M: https://developers.cloudflare.com/kv/platform/pricing/
//   Analytics Engine data points written $0.25/M: https://developers.cloudflare.com/analytics/analytics-engine/pricing/
//   Queues $0.40/M operations, each 64 KB written, read or deleted one operation, so 3 per message
//   delivered once: https://developers.cloudflare.com/queues/platform/pricing/ (the accept queue).
//   Workers Logs $0.60 per million log lines beyond the 20 million a month included with Workers Paid:
//   https://developers.cloudflare.com/workers/observability/logs/workers-logs/ (pricing). Counted as
//   the lines the relay wrote during the measured window (LOG_LEVEL as deployed: warn).
// Not counted: CPU time (Workers: $0.02 per million CPU ms; cpu_us below is local workerd CPU, not
// billed CPU), Durable Object duration (GB-s, wall-clock while active) and stored GB-months.
// A `setAlarm()` is priced as one row written (the alarm is a row of the object's SQLite storage):
// it is reported apart (alarms_set_per_receipt) so that it can be left out.
import { round } from "./util.mjs";

export const PRICES = {
  checked: "2026-12-03",
  workerRequests: 0.3,
  objectRequests: 0.15,
  rowsWritten: 1.0,
  rowsRead: 0.001,
  kvWrites: 5.0,
  kvReads: 0.5,
  analyticsPoints: 0.25,
  queueOperations: 0.4,
  logLines: 0.6,
};

/** USD per million receipts, from per-receipt figures (claims excluded: see the claims note). */
export function usdPerMillion(p, { alarmsAsRows = true } = {}) {
  const rowsWritten = p.rows_written_per_receipt + (alarmsAsRows ? p.alarms_set_per_receipt : 0);
  return round(
    p.worker_requests_per_receipt * PRICES.workerRequests +
      p.object_requests_per_receipt * PRICES.objectRequests +
      rowsWritten * PRICES.rowsWritten +
      p.rows_read_per_receipt * PRICES.rowsRead +
      p.kv_puts_per_receipt * PRICES.kvWrites +
      (p.d1_rows_written_per_receipt ?? 0) * PRICES.rowsWritten +
      (p.analytics_points_per_receipt ?? 0) * PRICES.analyticsPoints +
      (p.queue_operations_per_receipt ?? 0) * PRICES.queueOperations +
      (p.log_lines_per_receipt ?? 0) * PRICES.logLines,
    3,
  );
}

/** USD per million Easemob callbacks for their callId claims (per-callback figures from perReceipt). */
export const claimsUsdPerMillion = (claims) =>
  round(
    claims.object_requests_per_callback * PRICES.objectRequests +
      claims.rows_written_per_callback * PRICES.rowsWritten +
      claims.rows_read_per_callback * PRICES.rowsRead,
    3,
  );

// Metering: the metered worker's counters (bench/metered-worker.ts serves them at /__meter), waiting
// for them to settle, and turning them into figures per receipt.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { root } from "../scripts/dev-vars.mjs";
import { readyWithin } from "../scripts/lib/wait.mjs";
import { round } from "./util.mjs";

export async function meter(instance) {
  const response = await fetch(`${instance.url}/__meter`, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`/__meter answered ${response.status}`);
  return response.json();
}
export async function resetMeter(instance) {
  await fetch(`${instance.url}/__meter/reset`, { method: "POST", signal: AbortSignal.timeout(10_000) });
}

const meterSignature = (m) =>
  JSON.stringify([m.conversation.objectRequests, m.conversation.setAlarm, m.conversation.kvPuts, m.conversation.rowsWritten, m.claims.objectRequests]);
export const acceptedOf = (m) => m.accepted?.accepted ?? 0;

/**
 * Waits (bounded) until alarms and KV writes have settled: the meter's counters unchanged over two
 * polls and, with an origin, every receipt accepted since the last reset forwarded.
 */
export async function settle(instance, origin, maxMs) {
  const startedAt = Date.now();
  let last = "";
  let stableSince = 0;
  let m;
  /** One reading: settled once the counters have not moved (and everything is delivered) for 1 s. */
  const isSettled = async () => {
    m = await meter(instance);
    const signature = meterSignature(m);
    const delivered = !origin || origin.receipts >= acceptedOf(m);
    if (signature === last && delivered) return Date.now() - stableSince >= 1000;
    last = signature;
    stableSince = Date.now();
    return false;
  };
  const settled = (await readyWithin("the meter's counters to settle", isSettled, { timeoutMs: maxMs, intervalMs: 250, retryOnError: false })) === true;
  return { settled, ms: Date.now() - startedAt, meter: m };
}

/** Per accepted receipt (or per callback when nothing was accepted), from a meter reading; `logLines`: the relay's lines over the same window. */
export function perReceipt(m, originReceipts, logLines) {
  const accepted = acceptedOf(m);
  const callbacks = m.workerRequests;
  const per = accepted > 0 ? accepted : callbacks;
  const c = m.conversation;
  const alarmRuns = c.requestsByMethod.alarm ?? 0;
  return {
    basis: accepted > 0 ? "accepted receipt" : "callback",
    callbacks,
    accepted,
    duplicates: m.accepted?.duplicate ?? 0,
    forwarded: originReceipts,
    worker_requests_per_receipt: round(callbacks / per, 3),
    rows_written_per_receipt: round(c.rowsWritten / per, 2),
    rows_read_per_receipt: round(c.rowsRead / per, 2),
    kv_puts_per_receipt: round((c.kvPuts + c.kvDeletes) / per, 3),
    object_requests_per_receipt: round(c.objectRequests / per, 3),
    alarm_runs_per_receipt: round(alarmRuns / per, 3),
    alarms_set_per_receipt: round(c.setAlarm / per, 3),
    sql_statements_per_receipt: round(c.sqlStatements / per, 1),
    d1_rows_written_per_receipt: c.d1Statements > 0 ? round(c.d1RowsWritten / per, 2) : undefined,
    log_lines_per_receipt: logLines === undefined ? undefined : round(logLines / per, 3),
    analytics_points_per_receipt: round((c.analyticsPoints + m.claims.analyticsPoints + (m.worker?.analyticsPoints ?? 0)) / per, 3),
    // The accept queue: write, read and delete per message sent (each up to 64 KB).
    queue_operations_per_receipt: m.worker?.queueSends ? round((3 * m.worker.queueSends) / per, 3) : undefined,
    worker_kv_puts_per_receipt: m.worker?.kvPuts ? round(m.worker.kvPuts / per, 3) : undefined,
    requests_by_method: c.requestsByMethod,
    claims: {
      rows_written_per_callback: round(m.claims.rowsWritten / Math.max(callbacks, 1), 2),
      rows_read_per_callback: round(m.claims.rowsRead / Math.max(callbacks, 1), 2),
      object_requests_per_callback: round(m.claims.objectRequests / Math.max(callbacks, 1), 3),
    },
    errors_in_objects: c.errors + m.claims.errors,
  };
}

/** What the metered worker reads back from a conversation: its stored receipts, counted. */
export async function storedIn(instance, conversation) {
  const response = await fetch(`${instance.url}/__meter/stored?conversation=${encodeURIComponent(conversation)}`, { signal: AbortSignal.timeout(30_000) });
  if (!response.ok) throw new Error(`/__meter/stored answered ${response.status}`);
  return response.json();
}

/** Public RPC methods of the objects (from their source) that the metered worker does not count. */
export function unmeteredRpc(metered) {
  const missing = [];
  for (const [kind, file] of [
    ["conversation", "src/conversation/object.ts"],
    ["claims", "src/claims/object.ts"],
  ]) {
    let source = "";
    try {
      source = readFileSync(join(root, file), "utf8");
    } catch {
      continue;
    }
    for (const match of source.matchAll(/^ {2}(?:override\s+)?(?:async\s+)?([A-Za-z_]\w*)\s*\(/gm)) {
      const name = match[1];
      if (["constructor", "if", "for", "while", "switch", "return"].includes(name)) continue;
      if (!metered[kind]?.includes(name)) missing.push(`${kind}.${name}`);
    }
  }
  return missing;
}

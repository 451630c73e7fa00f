/**
 * One JSON line per event, for Workers Logs (the schema and every kind: docs/operations.md, "Logs").
 * `msg` names the kind of line and `level` its severity; both are written last, so no field a
 * caller passes (a provider's event name, say) can take their place. Callers pass only safe
 * values: never a secret, never a callback URL (OpenIM's token and Tencent's Sign live there).
 */
export type LogKind =
  | "callback"
  | "callback_refused"
  | "callback_crashed"
  | "claim_failed"
  | "store_failed"
  | "receipt_skipped"
  | "items_skipped"
  | "accept_queued"
  | "accept_queue_failed"
  | "accept_queue_drained"
  | "accept_queue_retry"
  | "accept_queue_invalid"
  | "delivered"
  | "delivery_retry"
  | "dead_letter"
  | "delivery_failed"
  | "deliveries_held"
  | "destination_removed"
  | "destination_paused"
  | "destination_resumed"
  | "publish_failed"
  | "kv_publish_failed"
  | "kv_read_failed"
  | "index_unavailable"
  | "index_recovered"
  | "publish_recovered"
  | "arm_failed"
  | "replay_started"
  | "replay_failed"
  | "replay_done"
  | "alert_sent"
  | "alert_failed"
  | "alerts_failed"
  | "dashboard_failed"
  | "unhandled";

/** The values of LOG_LEVEL, least severe first (no line is `debug` yet: it writes what `info` does). */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const SEVERITY: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Lines less severe than this are skipped before any work: per isolate, from LOG_LEVEL (settings.ts, `useLogLevel`). */
let least = SEVERITY.info;

export function setLogLevel(level: LogLevel): void {
  least = SEVERITY[level];
}

export function log(level: "info" | "warn" | "error", msg: LogKind, fields: Record<string, unknown> = {}): void {
  if (SEVERITY[level] < least) return;
  const line = JSON.stringify({ ...fields, level, msg });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

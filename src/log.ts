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
  | "delivered"
  | "delivery_retry"
  | "dead_letter"
  | "delivery_failed"
  | "deliveries_held"
  | "publish_failed"
  | "arm_failed"
  | "replay_started"
  | "replay_failed"
  | "replay_done"
  | "alert_sent"
  | "alert_failed"
  | "alerts_failed"
  | "dashboard_failed"
  | "unhandled";

export function log(level: "info" | "warn" | "error", msg: LogKind, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify({ ...fields, level, msg });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

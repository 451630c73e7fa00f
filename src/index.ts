/** Entry point: the HTTP app, the Cron Trigger and the Durable Object classes the runtime instantiates. */
import { app } from "./app";
import { log } from "./log";
import { runAlerts } from "./ops/alerts";
import { indexDb } from "./ops/conversation-index";
import { alertingOf, settingsOf } from "./settings";

export { CallbackClaims } from "./claims/object";
export { Conversation } from "./conversation/object";
export { ReplayJob } from "./ops/replay-job";

/** Every minute (wrangler.toml, [triggers]): alerts from the conversation index (src/ops/alerts.ts). */
export async function scheduled(controller: ScheduledController, env: Env): Promise<void> {
  const relay = settingsOf(env);
  const alerting = alertingOf(relay);
  const db = indexDb(env);
  if (alerting.state !== "on" || !db) return;
  try {
    await runAlerts(db, alerting, relay.settings.SNAPSHOT_INTERVAL_SECONDS, controller.scheduledTime);
  } catch (error) {
    // D1 failed: nothing was recorded, so the next minute evaluates the same window again.
    log("error", "alerts_failed", { error: String(error) });
  }
}

export default { fetch: app.fetch, scheduled } satisfies ExportedHandler<Env>;

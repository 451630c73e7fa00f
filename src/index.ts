/** Entry point: the HTTP app, the Cron Trigger and the Durable Object classes the runtime instantiates. */
import { app } from "./app";
import { drainAcceptQueue } from "./conversation/accept-queue";
import { runAlerts } from "./ops/alerts";
import { indexDb, indexProblemOf, reportIndexProblem } from "./ops/conversation-index";
import { log } from "./log";
import { alertingOf, settingsOf, useLogLevel } from "./settings";

export { CallbackClaims } from "./claims/object";
export { Conversation } from "./conversation/object";
export { ReplayJob } from "./ops/replay-job";
export { SessionRevocations } from "./dashboard/revocations";
export { DestinationControl } from "./destinations/control";

/** Every minute (wrangler.toml, [triggers]): alerts from the conversation index (src/ops/alerts.ts). */
export async function scheduled(controller: ScheduledController, env: Env): Promise<void> {
  useLogLevel(env);
  const relay = settingsOf(env);
  const alerting = alertingOf(relay);
  const db = indexDb(env);
  if (alerting.state !== "on" || !db) return;
  try {
    await runAlerts(
      db,
      alerting,
      relay.settings.SNAPSHOT_INTERVAL_SECONDS,
      controller.scheduledTime,
      (input, init) => globalThis.fetch(input, init),
      relay.destinations.map((destination) => destination.name),
    );
    reportIndexProblem("alerts", undefined);
  } catch (error) {
    // Nothing was recorded, so the next minute evaluates the same window again. A missing table
    // fails every minute: logged once per isolate and kind (`index_unavailable`); anything else
    // (D1 failing, a bug) as `alerts_failed` each time, since it names what to look at.
    const problem = indexProblemOf(error);
    if (problem.kind === "unmigrated") reportIndexProblem("alerts", problem);
    else log("error", "alerts_failed", { error: String(error) });
  }
}

/** The accept queue's consumer (wrangler.toml, [[queues.consumers]]): stores queued receipts in their objects. */
export async function queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  useLogLevel(env);
  await drainAcceptQueue(batch, env);
}

/** Every request: LOG_LEVEL first (a cache lookup), then the app. */
function fetch(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response> {
  useLogLevel(env);
  return app.fetch(request, env, ctx);
}

export default { fetch, scheduled, queue } satisfies ExportedHandler<Env>;

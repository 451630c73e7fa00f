/**
 * `/healthz`: what works and what does not. "ok" when nothing is wrong; "degraded" (still 200)
 * when a setting is malformed or deliveries are held, but receipts can still be taken; "down"
 * (503) when no provider can take receipts.
 */
import { ignoredEvents, type ProviderStatus } from "./ingest";
import { providers } from "./providers";
import { alertingOf, settingsOf, type SettingProblem } from "./settings";

export interface Health {
  status: "ok" | "degraded" | "down";
  providers: Record<string, ProviderStatus>;
  forwarding: { state: "on" } | { state: "held"; reason: string };
  api: { state: "on" } | { state: "off"; reason: string };
  /** Alerts to ALERT_URL (docs/alerts-and-stats.md): on with their format, or off and why. */
  alerts: { state: "on"; format: "standard" | "slack" } | { state: "off"; reason: string };
  /** Every malformed setting, with the feature it turns off. */
  problems: SettingProblem[];
  ignoredEventsSinceStart: Record<string, number>;
}

export function healthOf(env: Env): Health {
  const relay = settingsOf(env);
  const { settings, problems: relayProblems, forwarding } = relay;
  const alerting = alertingOf(relay);
  const statuses = Object.fromEntries([...providers.values()].map((ingestor) => [ingestor.name, ingestor.status(env)]));
  const problems: SettingProblem[] = [
    ...Object.entries(statuses).flatMap(([name, status]) =>
      status.state === "misconfigured" ? status.problems.map((problem) => ({ ...problem, feature: name })) : [],
    ),
    ...relayProblems,
  ];
  const apiProblem = relayProblems.find((problem) => problem.feature === "api");
  const api: Health["api"] = apiProblem
    ? { state: "off", reason: `setting ${apiProblem.setting} ${apiProblem.problem}` }
    : settings.ADMIN_TOKEN
      ? { state: "on" }
      : { state: "off", reason: "ADMIN_TOKEN is not set" };
  const anyEnabled = Object.values(statuses).some((status) => status.state === "enabled");
  return {
    status: !anyEnabled ? "down" : problems.length > 0 || forwarding.state === "held" ? "degraded" : "ok",
    providers: statuses,
    forwarding: forwarding.state === "on" ? { state: "on" } : forwarding,
    api,
    alerts: alerting.state === "on" ? { state: "on", format: alerting.format } : alerting,
    problems,
    ignoredEventsSinceStart: Object.fromEntries(ignoredEvents),
  };
}

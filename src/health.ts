/**
 * `/healthz`: what works and what does not. "ok" when nothing is wrong; "degraded" (still 200)
 * when a setting is malformed, deliveries are held or the bound D1 index cannot be used, but
 * receipts can still be taken; "down" (503) when no provider can take receipts.
 */
import { ignoredEvents, type ProviderStatus } from "./ingest";
import { providers } from "./ingestors";
import { indexDb, probeIndex } from "./ops/conversation-index";
import { alertingOf, apiAccessOf, settingsOf, type SettingProblem } from "./settings";

export interface Health {
  status: "ok" | "degraded" | "down";
  providers: Record<string, ProviderStatus>;
  /** "held" while any destination is misconfigured (its receipts wait for it; the others deliver). */
  forwarding: { state: "on" } | { state: "held"; reason: string };
  /** Each configured destination (docs/destinations.md): active with its URL's host, or misconfigured with the setting to fix and why. */
  destinations: ({ name: string; state: "active"; host: string } | { name: string; state: "misconfigured"; setting: string; reason: string })[];
  api: { state: "on" } | { state: "off"; reason: string };
  /** Alerts to ALERT_URL (docs/alerts-and-stats.md): on with their format, or off and why. */
  alerts: { state: "on"; format: "standard" | "slack" } | { state: "off"; reason: string };
  /**
   * The D1 conversation index (`DB`): on; off (not bound: its API answers 503 index_disabled); or
   * unavailable, with the missing tables (`missing`, migrations not applied) or D1's failure, and
   * the fix. Probed at most every 30 s per isolate (src/ops/conversation-index.ts).
   */
  index: { state: "on" } | { state: "off"; reason: string } | { state: "unavailable"; kind: "unmigrated" | "failing"; missing?: string[]; reason: string };
  /**
   * The KV read model (`RECEIPTS_KV`): on, or failing with KV's error. Probed with one read at most
   * every 30 s per isolate. While it fails, snapshots wait (each object retries on its own) and the
   * receipts and reads API answer from the objects.
   */
  readModel: { state: "on" } | { state: "failing"; reason: string };
  /**
   * Where a receipt goes when its conversation's object is overloaded or unreachable (docs/design.md,
   * "A burst into one conversation"): the accept queue, or nowhere (answered 503) when unbound.
   */
  acceptQueue: { state: "on" } | { state: "off"; reason: string };
  /** Every malformed setting, with the feature it turns off. */
  problems: SettingProblem[];
  ignoredEventsSinceStart: Record<string, number>;
}

export async function healthOf(env: Env, now = Date.now()): Promise<Health> {
  const relay = settingsOf(env);
  const { problems: relayProblems } = relay;
  const destinations: Health["destinations"] = relay.destinations.map((entry) =>
    entry.state === "active"
      ? { name: entry.name, state: "active", host: new URL(entry.destination.url).host }
      : { name: entry.name, state: "misconfigured", setting: entry.setting, reason: entry.reason },
  );
  const held = relay.destinations.flatMap((entry) => (entry.state === "misconfigured" ? [`${entry.name}: ${entry.reason}`] : []));
  const forwarding: Health["forwarding"] = held.length > 0 ? { state: "held", reason: held.join("; ") } : { state: "on" };
  const alerting = alertingOf(relay);
  const statuses = Object.fromEntries([...providers.values()].map((ingestor) => [ingestor.name, ingestor.status(env)]));
  const problems: SettingProblem[] = [
    ...Object.entries(statuses).flatMap(([name, status]) =>
      status.state === "misconfigured" ? status.problems.map((problem) => ({ ...problem, feature: name })) : [],
    ),
    ...relayProblems,
  ];
  const access = apiAccessOf(relay);
  const api: Health["api"] = access.state === "on" ? { state: "on" } : access;
  const anyEnabled = Object.values(statuses).some((status) => status.state === "enabled");
  const kvProblem = await probeKv(env.RECEIPTS_KV, now);
  const db = indexDb(env);
  const problem = db ? await probeIndex(db, now) : undefined;
  const index: Health["index"] = !db
    ? { state: "off", reason: "no D1 database is bound as DB" }
    : problem
      ? { state: "unavailable", kind: problem.kind, ...(problem.kind === "unmigrated" ? { missing: problem.missing } : {}), reason: problem.message }
      : { state: "on" };
  return {
    status: !anyEnabled ? "down" : problems.length > 0 || forwarding.state === "held" || problem || kvProblem ? "degraded" : "ok",
    providers: statuses,
    forwarding,
    destinations,
    api,
    alerts: alerting.state === "on" ? { state: "on", format: alerting.format } : alerting,
    index,
    readModel: kvProblem ? { state: "failing", reason: `the KV read model (binding RECEIPTS_KV) failed: ${kvProblem}` } : { state: "on" },
    acceptQueue: env.ACCEPT_QUEUE
      ? { state: "on" }
      : { state: "off", reason: "no queue is bound as ACCEPT_QUEUE: a receipt its overloaded object refuses is answered 503" },
    problems,
    ignoredEventsSinceStart: Object.fromEntries(ignoredEvents),
  };
}

const KV_PROBE_TTL_MS = 30_000;
/** A key no object writes: reading it proves the binding answers. */
const KV_PROBE_KEY = "healthz-probe";
const kvProbes = new WeakMap<KVNamespace, { at: number; problem: string | undefined }>();

/** KV's error, or undefined when it answers; cached per binding for KV_PROBE_TTL_MS. */
async function probeKv(kv: KVNamespace, now: number): Promise<string | undefined> {
  const cached = kvProbes.get(kv);
  if (cached && now - cached.at < KV_PROBE_TTL_MS) return cached.problem;
  let problem: string | undefined;
  try {
    await kv.get(KV_PROBE_KEY);
  } catch (error) {
    problem = String(error).slice(0, 200);
  }
  kvProbes.set(kv, { at: now, problem });
  return problem;
}

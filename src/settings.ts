/**
 * Env → typed settings. Every value is validated here, once per isolate; an error names the
 * setting and what is wrong with it, never its value (several of them are secrets).
 *
 * A malformed setting disables only the feature it configures (docs/operations.md, "Settings
 * problems"): a provider's own settings (declared in its file) that provider; the forwarding
 * settings hold deliveries (receipts are still accepted and queued); ADMIN_TOKEN the API; the ALERT_*
 * settings alerts only (`alertingOf`, docs/alerts-and-stats.md); a
 * malformed RECENT_LIMIT, SNAPSHOT_INTERVAL_SECONDS or LOG_LEVEL falls back to its default. Receipts are never refused for a setting
 * that does not concern the provider that sent them.
 */
import { z } from "zod";
import { DEFAULT_RETRY_SCHEDULE, forwardKey, integer, list, optional, retrySchedule } from "./setting-values";
import { parseDestinations, type DestinationConfig } from "./destinations/config";
import { LOG_LEVELS, setLogLevel } from "./log";

/** What a setting configures: a provider's name, or one of the relay's own features. */
export type Feature = string;

export interface SettingProblem {
  setting: string;
  /** What stops working because of it. */
  feature: Feature;
  problem: string;
}

export { DEFAULT_RETRY_SCHEDULE, forwardKey, integer, list, optional, retrySchedule } from "./setting-values";

/** The relay's own settings, by the feature each configures. Providers declare theirs in their file. */
const RelaySettings = z.object({
  RECENT_LIMIT: optional(integer(1, 1000)).default(100),
  // Parsed on its own (src/destinations/config.ts): a JSON array, as text or as a [vars] table.
  DESTINATIONS: z.unknown().optional(),
  ORIGIN_URL: optional(
    z
      .string()
      .trim()
      .pipe(z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })),
  ),
  // Several secrets, comma-separated: every delivery is signed with each (rotation without a gap).
  FORWARD_SECRET: optional(list(z.string(), "secret").pipe(z.array(forwardKey).max(5, "must list at most 5 secrets"))),
  FORWARD_RETRY_SCHEDULE: optional(retrySchedule).default(DEFAULT_RETRY_SCHEDULE),
  FORWARD_TIMEOUT_MS: optional(integer(100, 120_000)).default(10_000),
  // Above 1, up to this many due receipts of a conversation go out in one request (opt-in).
  FORWARD_BATCH_MAX: optional(integer(1, 1000)).default(1),
  // The KV snapshot of a conversation at most this often; 0 turns the KV read model off. It paces the
  // D1 index row too (once a minute at most when 0): one name kept for deployed configurations.
  SNAPSHOT_INTERVAL_SECONDS: optional(integer(0, 86_400)).default(60),
  ADMIN_TOKEN: optional(z.string().trim().min(16, "must be at least 16 characters")),
  // Alerts (docs/alerts-and-stats.md): off while ALERT_URL is unset.
  ALERT_URL: optional(
    z
      .string()
      .trim()
      .pipe(z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })),
  ),
  // Signs alerts like deliveries; unset, the FORWARD_SECRET keys sign them.
  ALERT_SECRET: optional(list(z.string(), "secret").pipe(z.array(forwardKey).max(5, "must list at most 5 secrets"))),
  // No schema defaults: unset stays undefined, and alertingOf applies DEFAULT_ALERT_AFTER_SECONDS and "standard".
  ALERT_AFTER_SECONDS: optional(integer(60, 86_400)),
  ALERT_FORMAT: optional(z.enum(["standard", "slack"], { error: "must be standard or slack" })),
  // Log lines below this level are not written (docs/operations.md, "Logs"): `warn` drops the
  // per-callback and per-delivery info lines that Workers Logs bills by.
  LOG_LEVEL: optional(z.enum(LOG_LEVELS, { error: "must be debug, info, warn or error" })).default("warn"),
});
export type Settings = z.infer<typeof RelaySettings>;

const RELAY_FEATURES: Record<keyof Settings, Feature> = {
  RECENT_LIMIT: "store",
  DESTINATIONS: "destinations",
  ORIGIN_URL: "forwarding",
  FORWARD_SECRET: "forwarding",
  FORWARD_RETRY_SCHEDULE: "forwarding",
  FORWARD_TIMEOUT_MS: "forwarding",
  FORWARD_BATCH_MAX: "forwarding",
  SNAPSHOT_INTERVAL_SECONDS: "read model",
  ADMIN_TOKEN: "api",
  ALERT_URL: "alerts",
  ALERT_SECRET: "alerts",
  ALERT_AFTER_SECONDS: "alerts",
  ALERT_FORMAT: "alerts",
  LOG_LEVEL: "logs",
};

export interface ParsedGroup<T> {
  /** Every setting of the group; a malformed one is as if unset (so its default applies). */
  values: T;
  problems: { setting: string; problem: string }[];
}

/**
 * Parses one group of settings field by field: a malformed setting is reported and then treated
 * as unset, so the rest of the group still parses. Messages come from the schema, never a value.
 */
export function parseGroup<T extends z.ZodObject>(
  schema: T,
  env: Record<string, unknown>,
): ParsedGroup<z.infer<T>> | { values: undefined; problems: { setting: string; problem: string }[] } {
  const own: Record<string, unknown> = {};
  for (const key of Object.keys(schema.shape)) own[key] = env[key];
  const first = schema.safeParse(own);
  if (first.success) return { values: first.data, problems: [] };
  // The first issue of each setting: later checks of a value that already failed add nothing.
  const problems: ParsedGroup<unknown>["problems"] = [];
  for (const issue of first.error.issues) {
    const setting = String(issue.path[0] ?? "settings");
    if (problems.some((problem) => problem.setting === setting)) continue;
    problems.push({ setting, problem: issue.code === "invalid_type" ? "must be a string" : issue.message });
  }
  for (const { setting } of problems) own[setting] = undefined;
  const second = schema.safeParse(own);
  return second.success ? { values: second.data, problems } : { values: undefined, problems };
}

/** Where alerts stand: sent to `url` (signed with `keys` unless Slack), or off and why. */
export type Alerting =
  { state: "on"; url: string; format: "standard" | "slack"; keys: Uint8Array[]; afterSeconds: number; timeoutMs: number } | { state: "off"; reason: string };

export interface RelaySettingsResult {
  settings: Settings;
  problems: SettingProblem[];
  /** Where receipts go (docs/destinations.md): `origin` (ORIGIN_URL) first, then DESTINATIONS, each active or misconfigured. */
  destinations: DestinationConfig[];
}

export const DEFAULT_ALERT_AFTER_SECONDS = 300;

export function describeProblems(problems: readonly { setting: string; problem: string }[]): string {
  return problems.map(({ setting, problem }) => `setting ${setting} ${problem}`).join("; ");
}

/** Validates the relay's own settings from the raw environment. */
export function parseSettings(env: Record<string, unknown>): RelaySettingsResult {
  const group = parseGroup(RelaySettings, env);
  // Every field is optional with a default, so the second parse always succeeds.
  const settings = group.values ?? RelaySettings.parse({});
  const problems: SettingProblem[] = group.problems.map((problem) => ({ ...problem, feature: featureOf(problem.setting) }));
  if (settings.ORIGIN_URL && !settings.FORWARD_SECRET && !problems.some((problem) => problem.setting === "FORWARD_SECRET")) {
    problems.push({ setting: "FORWARD_SECRET", feature: "forwarding", problem: "must be set when ORIGIN_URL is set" });
  }
  if (
    settings.ALERT_URL &&
    settings.ALERT_FORMAT !== "slack" &&
    !settings.ALERT_SECRET &&
    !settings.FORWARD_SECRET &&
    !problems.some((problem) => problem.setting === "ALERT_SECRET")
  ) {
    problems.push({ setting: "ALERT_SECRET", feature: "alerts", problem: "must be set when ALERT_URL is set and FORWARD_SECRET is not" });
  }
  const parsed = parseDestinations(
    env,
    { schedule: settings.FORWARD_RETRY_SCHEDULE, timeoutMs: settings.FORWARD_TIMEOUT_MS, batchMax: settings.FORWARD_BATCH_MAX },
    legacyOrigin(env, settings, problems),
  );
  for (const problem of parsed.problems) problems.push({ ...problem, feature: "destinations" });
  return { settings, problems, destinations: parsed.destinations };
}

/** Where alerts stand, from the parsed settings: a malformed alert setting turns off alerts only. */
export function alertingOf({ settings, problems }: Pick<RelaySettingsResult, "settings" | "problems">): Alerting {
  const broken = problems.filter((problem) => problem.feature === "alerts");
  if (broken.length > 0) return { state: "off", reason: describeProblems(broken) };
  if (!settings.ALERT_URL) return { state: "off", reason: "ALERT_URL is not set" };
  return {
    state: "on",
    url: settings.ALERT_URL,
    format: settings.ALERT_FORMAT ?? "standard",
    keys: settings.ALERT_SECRET ?? settings.FORWARD_SECRET ?? [],
    afterSeconds: settings.ALERT_AFTER_SECONDS ?? DEFAULT_ALERT_AFTER_SECONDS,
    timeoutMs: settings.FORWARD_TIMEOUT_MS,
  };
}

export type ApiAccess = { state: "on"; token: string } | { state: "off"; reason: string };

/** The API and the dashboard are on exactly when ADMIN_TOKEN is set and valid: it is their one credential. */
export function apiAccessOf({ settings, problems }: Pick<RelaySettingsResult, "settings" | "problems">): ApiAccess {
  const broken = problems.filter((problem) => problem.feature === "api");
  if (broken.length > 0) return { state: "off", reason: describeProblems(broken) };
  if (!settings.ADMIN_TOKEN) return { state: "off", reason: "ADMIN_TOKEN is not set" };
  return { state: "on", token: settings.ADMIN_TOKEN };
}

const featureBySetting = new Map<string, Feature>(Object.entries(RELAY_FEATURES));
const featureOf = (setting: string): Feature => featureBySetting.get(setting) ?? "settings";

/**
 * The destination `origin`, from ORIGIN_URL and FORWARD_SECRET (and the FORWARD_* settings): active,
 * misconfigured when one of them is malformed, or, when nothing at all says where receipts go
 * (neither ORIGIN_URL nor DESTINATIONS), misconfigured as "not set", so that receipts are held for
 * it and go out once it is set, as before destinations. Undefined when only DESTINATIONS is set.
 */
function legacyOrigin(env: Record<string, unknown>, settings: Settings, problems: SettingProblem[]) {
  const broken = problems.filter((problem) => problem.feature === "forwarding");
  const destinationsSet = env.DESTINATIONS !== undefined && !(typeof env.DESTINATIONS === "string" && env.DESTINATIONS.trim() === "");
  if (!settings.ORIGIN_URL && !broken.some((problem) => problem.setting === "ORIGIN_URL")) {
    return destinationsSet ? undefined : { state: "misconfigured" as const, reason: "ORIGIN_URL is not set", setting: "ORIGIN_URL" };
  }
  const first = broken[0];
  if (first) return { state: "misconfigured" as const, reason: describeProblems(broken), setting: first.setting };
  return { state: "active" as const, url: settings.ORIGIN_URL ?? "", keys: settings.FORWARD_SECRET ?? [] };
}

const cache = new WeakMap<object, RelaySettingsResult>();

/** `parseSettings`, once per env object (the runtime hands the same object to every request). */
export function settingsOf(env: object): RelaySettingsResult {
  let result = cache.get(env);
  if (!result) {
    result = parseSettings({ ...env });
    cache.set(env, result);
  }
  return result;
}

/**
 * Applies LOG_LEVEL to `log` (src/log.ts). Called where the runtime hands over an env (each
 * request, cron run, queue batch and object start): a cache lookup, no parse.
 */
export function useLogLevel(env: object): void {
  setLogLevel(settingsOf(env).settings.LOG_LEVEL);
}

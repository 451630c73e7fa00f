/**
 * Alerts from the conversation index (docs/alerts-and-stats.md), evaluated by the Cron Trigger
 * once a minute, per destination (src/destinations/config.ts): each destination has its own
 * alerts, its own cooldowns, its own dead-letter window and its own raised/recovered state (one
 * `alert_state` row per destination, `id` = its name, migrations/0005_alert_destinations.sql).
 * Alerts are never per conversation: one digest per destination and kind at most. The decisions
 * (what to alert, the digest bodies, Slack's text) are pure functions of plain values, below;
 * `runAlerts` at the end is the wiring: D1 reads, one POST per alert, the state rows written back.
 *
 * What the index shows per destination comes from each row's `destinations` JSON (migration 0004);
 * a row written before it (`destinations` null) counts for the destination `origin`, as its totals
 * were the origin's.
 *
 * Kinds (each about one destination, named in the alert):
 * - `alert.dead_letter`: conversations whose first dead letter for the destination appeared since
 *   its last digest. A conversation qualifies when the destination's `failed > 0` and its
 *   `oldestFailedAt` falls in the window (since, cutoff]. The cutoff is the evaluation time minus
 *   the index lag (`indexLagMs`): a row is written up to one snapshot interval after the fact, so a
 *   dead letter older than the cutoff is in the index by now, and each one falls in exactly one
 *   window (no miss, no repeat).
 * - `alert.origin_failing` (the name kept from before destinations): deliveries to the destination
 *   failing. A conversation is *stuck* for it when it has deliveries pending for it (`pending > 0`),
 *   even its newest receipt was accepted more than ALERT_AFTER_SECONDS ago (`last_receipt_at`
 *   older: so every pending receipt has waited that long), and nothing was delivered to the
 *   destination in that time either (its `lastDeliveredAt` null or older). The condition holds
 *   while at least one conversation is stuck. The index carries no error for retrying deliveries
 *   (`lastError` is the last dead letter's), so errors in the digest are a sample of those, when any.
 * - `alert.recovered`: origin_failing was raised (sent) for the destination and no conversation is
 *   stuck for it any more, and a delivery to it succeeded since.
 *
 * Each kind goes out at most once per 15 minutes per destination (ALERT_COOLDOWN_MS): dead letters
 * found in the meantime wait for the next digest (the window's start stays put until a digest is
 * delivered); origin_failing repeats every 15 minutes while it holds. Two destinations failing at
 * once make two alerts in the same evaluation. A failed POST changes no state of its destination,
 * so the next minute tries again.
 */
import { z } from "zod";
import { webhookHeaders } from "../delivery/webhook";
import { log } from "../log";
import { MIGRATE_FIX } from "./conversation-index";
import type { Alerting } from "../settings";
import { isoFromMillis } from "../time";

export const ALERT_COOLDOWN_MS = 15 * 60_000;
/** Keys a digest lists; the rest are counted. */
export const DIGEST_KEYS = 20;
/** Distinct last errors a digest samples. */
export const DIGEST_ERRORS = 5;
/** The first evaluation (no state yet) looks this far back before the cutoff for dead letters. */
export const FIRST_WINDOW_MS = 60_000;
/** The destination ORIGIN_URL names; rows of the index written before destinations count for it. */
export const ORIGIN_DESTINATION = "origin";

export type AlertKind = "dead_letter" | "origin_failing" | "recovered";

/** How far the index may lag its objects: one snapshot interval (a minute at least) plus a minute. */
export const indexLagMs = (snapshotIntervalSeconds: number) => (Math.max(snapshotIntervalSeconds, 60) + 60) * 1000;

/** One destination's alert state (its `alert_state` row). */
export interface AlertState {
  checkedAt: number;
  deadLetterSince: number;
  sentAt: Record<AlertKind, number | null>;
  failingRaised: boolean;
}

/**
 * Every destination's state (`destinations`, by name) and, at the top level, a summary over them
 * (what the dashboard shows): the latest evaluation, the earliest window start, the latest alert
 * of each kind, and raised when any destination is.
 */
export interface AlertStates extends AlertState {
  destinations: Record<string, AlertState>;
}

/** What the index shows for one kind: how many conversations, a total, a sample of keys and errors. */
export interface Group {
  conversations: number;
  /** dead letters (dead_letter) or pending deliveries (origin_failing). */
  total: number;
  keys: string[];
  errors: string[];
}

/** What the index shows for one destination. */
export interface Observation {
  /** Dead letters first failed in (since, cutoff]. */
  deadLetters: Group;
  /** Stuck conversations (see the header). */
  stuck: Group;
  /** The latest delivery to the destination (ms), looked up only while its origin_failing alert is raised. */
  lastDeliveredAt?: number | null;
}

export interface Digest {
  kind: AlertKind;
  /** The destination the alert is about. */
  destination: string;
  /** Evaluation time, ms. */
  at: number;
  conversations: number;
  total: number;
  keys: string[];
  moreKeys: number;
  errors: string[];
  /** dead_letter: the window of first failures it covers; origin_failing: the stuck threshold. */
  since?: string;
  until?: string;
  afterSeconds?: number;
}

export interface Window {
  since: number;
  cutoff: number;
}

const NO_GROUP: Group = { conversations: 0, total: 0, keys: [], errors: [] };
/** A destination the index shows nothing for. */
export const QUIET: Observation = { deadLetters: NO_GROUP, stuck: NO_GROUP };

/** The window of dead letters to look at now: from the last covered point to the cutoff. */
export function deadLetterWindow(state: AlertState | undefined, now: number, lagMs: number): Window {
  const cutoff = now - lagMs;
  const since = state ? Math.min(state.deadLetterSince, cutoff) : cutoff - FIRST_WINDOW_MS;
  return { since, cutoff };
}

const allowed = (state: AlertState | undefined, kind: AlertKind, now: number) => {
  const last = state?.sentAt[kind] ?? null;
  return last === null || now - last >= ALERT_COOLDOWN_MS;
};

function digest(kind: AlertKind, destination: string, now: number, group: Group, extra: Partial<Digest> = {}): Digest {
  const keys = group.keys.slice(0, DIGEST_KEYS);
  return {
    kind,
    destination,
    at: now,
    conversations: group.conversations,
    total: group.total,
    keys,
    moreKeys: Math.max(0, group.conversations - keys.length),
    errors: [...new Set(group.errors)].slice(0, DIGEST_ERRORS),
    ...extra,
  };
}

/**
 * Recovered means deliveries work again, not only that nothing is stuck: stuck receipts also stop
 * being stuck when they become dead letters while the destination is still down. So a delivery
 * to it must have succeeded since the origin_failing alert went out.
 */
function recoveredSince(state: AlertState, observation: Observation): boolean {
  const raisedAt = state.sentAt.origin_failing;
  const delivered = observation.lastDeliveredAt ?? null;
  return delivered !== null && (raisedAt === null || delivered > raisedAt);
}

/** One destination's alerts due now, given its state, what the index shows for it, and the window and threshold used. */
export function planAlerts(
  state: AlertState | undefined,
  observation: Observation,
  now: number,
  window: Window,
  afterSeconds: number,
  destination: string = ORIGIN_DESTINATION,
): Digest[] {
  const due: Digest[] = [];
  if (observation.deadLetters.conversations > 0 && allowed(state, "dead_letter", now)) {
    due.push(digest("dead_letter", destination, now, observation.deadLetters, { since: isoFromMillis(window.since), until: isoFromMillis(window.cutoff) }));
  }
  if (observation.stuck.conversations > 0) {
    if (allowed(state, "origin_failing", now)) due.push(digest("origin_failing", destination, now, observation.stuck, { afterSeconds }));
  } else if (state?.failingRaised && recoveredSince(state, observation) && allowed(state, "recovered", now)) {
    due.push(digest("recovered", destination, now, NO_GROUP));
  }
  return due;
}

/** One destination's state after an evaluation; `delivered` names the kinds whose alert (for it) was delivered. */
export function nextState(state: AlertState | undefined, observation: Observation, now: number, window: Window, delivered: ReadonlySet<AlertKind>): AlertState {
  const sentAt: Record<AlertKind, number | null> = { dead_letter: null, origin_failing: null, recovered: null, ...state?.sentAt };
  for (const kind of delivered) sentAt[kind] = now;
  // The window moves on when nothing is waiting in it or its digest went out.
  const covered = observation.deadLetters.conversations === 0 || delivered.has("dead_letter");
  let failingRaised = state?.failingRaised ?? false;
  if (delivered.has("origin_failing")) failingRaised = true;
  if (delivered.has("recovered")) failingRaised = false;
  return { checkedAt: now, deadLetterSince: covered ? window.cutoff : window.since, sentAt, failingRaised };
}

/**
 * The destinations to evaluate, in name order: the configured ones (`origin` alone when the caller
 * does not say), those the index shows something for, and, unless the configuration is known, those
 * with a state row. A state row of a destination neither configured nor in the index is dropped.
 */
export function destinationsToEvaluate(
  configured: readonly string[] | undefined,
  withState: readonly string[],
  observed: Readonly<Record<string, Observation>>,
): string[] {
  const active = Object.entries(observed).flatMap(([name, observation]) =>
    observation.deadLetters.conversations > 0 || observation.stuck.conversations > 0 ? [name] : [],
  );
  const names = new Set([...(configured ?? [ORIGIN_DESTINATION, ...withState]), ...active]);
  return [...names].sort();
}

/** The summary over destinations' states (see AlertStates); undefined when there is none. */
export function summarizeStates(destinations: Record<string, AlertState>): AlertStates | undefined {
  const states = Object.values(destinations);
  if (states.length === 0) return undefined;
  const latest = (values: (number | null)[]) =>
    values.reduce<number | null>((max, value) => (value !== null && (max === null || value > max) ? value : max), null);
  const kinds: AlertKind[] = ["dead_letter", "origin_failing", "recovered"];
  return {
    checkedAt: Math.max(...states.map((state) => state.checkedAt)),
    deadLetterSince: Math.min(...states.map((state) => state.deadLetterSince)),
    sentAt: Object.fromEntries(kinds.map((kind) => [kind, latest(states.map((state) => state.sentAt[kind]))])) as Record<AlertKind, number | null>,
    failingRaised: states.some((state) => state.failingRaised),
    destinations,
  };
}

const TITLES: Record<AlertKind, (destination: string) => string> = {
  dead_letter: (destination) => `new dead letters for ${destination}`,
  origin_failing: (destination) => `deliveries to ${destination} are failing`,
  recovered: (destination) => `deliveries to ${destination} recovered`,
};

/** The Standard Webhooks body: `{type, timestamp, data}`, like deliveries; `data.destination` names the destination. */
export function alertBody(alert: Digest): string {
  const { kind, at, destination, ...data } = alert;
  return JSON.stringify({ type: `alert.${kind}`, timestamp: isoFromMillis(at), data: { title: TITLES[kind](destination), destination, ...data } });
}

/**
 * A webhook-id per kind, destination and evaluation: `alert:<kind>:<destination>:<unix seconds>`,
 * or `alert:<kind>:<unix seconds>` for `origin`, as before destinations.
 */
export const alertId = (alert: Pick<Digest, "kind" | "at" | "destination">) =>
  alert.destination === ORIGIN_DESTINATION
    ? `alert:${alert.kind}:${Math.floor(alert.at / 1000)}`
    : `alert:${alert.kind}:${alert.destination}:${Math.floor(alert.at / 1000)}`;

/**
 * Text from callbacks or the origin (keys, errors that may echo a provider's user id) as data in
 * Slack's mrkdwn: `&`, `<` and `>` escaped as Slack documents
 * (https://api.slack.com/reference/surfaces/formatting#escaping), so no mention (`<!channel>`) or
 * link can form; backticks turned into a look-alike (U+02CB) and line breaks into spaces, so the
 * text cannot close its code span or start a line of its own.
 */
export function slackCode(text: string): string {
  const data = text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/`/g, "\u02cb")
    .replace(/[\r\n\u2028\u2029]+/g, " ");
  return `\`${data}\``;
}

/** One line of text for Slack (`{"text": …}`): which destination, what happened, counts, keys and errors. */
export function slackText(alert: Digest): string {
  const more = alert.moreKeys > 0 ? ` and ${alert.moreKeys} more` : "";
  const keys = alert.keys.length > 0 ? `\nConversations: ${alert.keys.map(slackCode).join(", ")}${more}` : "";
  const errors = alert.errors.length > 0 ? `\nLast errors: ${alert.errors.map(slackCode).join("; ")}` : "";
  const destination = slackCode(alert.destination);
  switch (alert.kind) {
    case "dead_letter":
      return `:rotating_light: receipt-relay: ${destination}: ${alert.conversations} conversation(s) with new dead letters (${alert.total} dead letters in all)${keys}${errors}`;
    case "origin_failing":
      return `:warning: receipt-relay: deliveries to ${destination} failing for more than ${alert.afterSeconds ?? 0} s: ${alert.conversations} conversation(s) stuck, ${alert.total} pending${keys}${errors}`;
    case "recovered":
      return `:white_check_mark: receipt-relay: deliveries to ${destination} recovered; no conversation is stuck for it any more`;
  }
}

/** The request for one alert: Slack's unsigned `{"text"}`, or the signed Standard Webhooks body. */
export async function alertRequest(alerting: Extract<Alerting, { state: "on" }>, alert: Digest): Promise<{ headers: Record<string, string>; body: string }> {
  if (alerting.format === "slack") {
    return { headers: { "content-type": "application/json", "user-agent": "receipt-relay" }, body: JSON.stringify({ text: slackText(alert) }) };
  }
  const body = alertBody(alert);
  return { headers: await webhookHeaders(alerting.keys, alertId(alert), alert.at, body), body };
}

// ---- Wiring: D1 and fetch. ----

const AlertStateRow = z.object({
  id: z.union([z.string(), z.number()]),
  checked_at: z.number(),
  dead_letter_since: z.number(),
  dead_letter_sent_at: z.number().nullable(),
  origin_failing_sent_at: z.number().nullable(),
  recovered_sent_at: z.number().nullable(),
  failing_raised: z.number(),
});

/** What migrations/0005_alert_destinations.sql fixes: `alert_state` still keyed by the number 1. */
const UNMIGRATED_STATE =
  "alert_state is still the relay-wide row of migration 0002; alerts per destination need migrations/0005_alert_destinations.sql: " + MIGRATE_FIX;

/** The id of migration 0002's one row, which the code before migration 0005 may still write for a while after it. */
const PRE_DESTINATIONS_ID = "1";

/** Every destination's state row, by name (rows of the table before migration 0005 stop here). */
export async function readDestinationStates(db: D1Database): Promise<Record<string, AlertState>> {
  const result = await db.prepare("SELECT * FROM alert_state ORDER BY id").all();
  const states: Record<string, AlertState> = {};
  for (const row of result.results) {
    const parsed = AlertStateRow.parse(row);
    if (typeof parsed.id !== "string") throw new Error(UNMIGRATED_STATE);
    states[parsed.id] = {
      checkedAt: parsed.checked_at,
      deadLetterSince: parsed.dead_letter_since,
      sentAt: { dead_letter: parsed.dead_letter_sent_at, origin_failing: parsed.origin_failing_sent_at, recovered: parsed.recovered_sent_at },
      failingRaised: parsed.failing_raised === 1,
    };
  }
  return states;
}

/** The summary over destinations with each one's state (AlertStates), or undefined before the first evaluation. */
export async function readAlertState(db: D1Database): Promise<AlertStates | undefined> {
  return summarizeStates(await readDestinationStates(db));
}

/** One upsert per evaluated destination and the removal of the others' rows, in one batch. */
async function writeAlertStates(db: D1Database, states: Record<string, AlertState>): Promise<void> {
  const names = Object.keys(states);
  const upserts = Object.entries(states).map(([name, state]) =>
    db
      .prepare(
        `INSERT INTO alert_state (id, checked_at, dead_letter_since, dead_letter_sent_at, origin_failing_sent_at, recovered_sent_at, failing_raised)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET checked_at = ?2, dead_letter_since = ?3, dead_letter_sent_at = ?4, origin_failing_sent_at = ?5,
           recovered_sent_at = ?6, failing_raised = ?7`,
      )
      .bind(
        name,
        state.checkedAt,
        state.deadLetterSince,
        state.sentAt.dead_letter,
        state.sentAt.origin_failing,
        state.sentAt.recovered,
        state.failingRaised ? 1 : 0,
      ),
  );
  const prune = db.prepare("DELETE FROM alert_state WHERE id NOT IN (SELECT value FROM json_each(?1))").bind(JSON.stringify(names));
  try {
    await db.batch([...upserts, prune]);
  } catch (error) {
    // The table of migration 0002 takes no name as its id (INTEGER PRIMARY KEY CHECK (id = 1)).
    const text = error instanceof Error ? error.message : String(error);
    if (/CHECK constraint failed|datatype mismatch/i.test(text)) throw new Error(UNMIGRATED_STATE);
    throw error;
  }
}

/**
 * Each conversation's part for each destination, for conversations whose totals match `prefilter`
 * (on `c`): one row per conversation and destination in its `destinations` JSON, or one for
 * `origin` from the totals when the row has none (written before migration 0004).
 */
const perDestination = (prefilter: string) => `
  SELECT c.key AS key, '${ORIGIN_DESTINATION}' AS destination, c.last_receipt_at AS last_receipt_at, c.pending AS pending, c.failed AS failed,
    c.oldest_failed_at AS oldest_failed_at, c.last_error AS last_error, c.last_delivered_at AS last_delivered_at
  FROM conversations AS c WHERE c.destinations IS NULL AND ${prefilter}
  UNION ALL
  SELECT c.key, d.key, c.last_receipt_at, json_extract(d.value, '$.pending'), json_extract(d.value, '$.failed'),
    json_extract(d.value, '$.oldestFailedAt'), json_extract(d.value, '$.lastError'), json_extract(d.value, '$.lastDeliveredAt')
  FROM conversations AS c, json_each(CASE WHEN json_valid(c.destinations) THEN c.destinations END) AS d
  WHERE c.destinations IS NOT NULL AND ${prefilter} AND d.type = 'object' AND typeof(d.key) = 'text'`;

const GroupRow = z.object({
  destination: z.string(),
  key: z.string(),
  last_error: z.string().nullable(),
  conversations: z.number(),
  total: z.number().nullable(),
});

/**
 * Groups by destination of the per-destination rows in `hits` (a SELECT over `per` giving
 * destination, key, last_error, the total column as `amount` and the order column as `rank_by`):
 * the count and sum over all, the first DIGEST_KEYS keys.
 */
async function groups(db: D1Database, prefilter: string, hits: string, params: (string | number)[]): Promise<Record<string, Group>> {
  const result = await db
    .prepare(
      `WITH per AS (${perDestination(prefilter)}), hit AS (${hits})
       SELECT destination, key, last_error, conversations, total FROM (
         SELECT destination, key, last_error, ROW_NUMBER() OVER (PARTITION BY destination ORDER BY rank_by, key) AS n,
           COUNT(*) OVER (PARTITION BY destination) AS conversations, SUM(amount) OVER (PARTITION BY destination) AS total
         FROM hit)
       WHERE n <= ${DIGEST_KEYS} ORDER BY destination, n`,
    )
    .bind(...params)
    .all();
  const found: Record<string, Group> = {};
  for (const raw of result.results) {
    const row = GroupRow.parse(raw);
    const group = (found[row.destination] ??= { conversations: row.conversations, total: row.total ?? 0, keys: [], errors: [] });
    group.keys.push(row.key);
    if (row.last_error) group.errors.push(row.last_error);
  }
  return found;
}

const LatestRow = z.object({ destination: z.string(), latest: z.string().nullable() });

/** The latest delivery (ms) to each of `raised` after its alert (any time when null): a scan of the delivered rows since. */
async function latestDeliveries(db: D1Database, raised: Readonly<Record<string, number | null>>): Promise<Record<string, number>> {
  const names = Object.keys(raised);
  if (names.length === 0) return {};
  const times = Object.values(raised);
  // A delivery to a destination after its alert makes the row's last_delivered_at (the latest over destinations) later too.
  const after = times.includes(null) ? "" : isoFromMillis(Math.min(...times.filter((time): time is number => time !== null)));
  const result = await db
    .prepare(
      `WITH per AS (${perDestination("c.last_delivered_at > ?1")})
       SELECT destination, MAX(last_delivered_at) AS latest FROM per WHERE destination IN (SELECT value FROM json_each(?2)) GROUP BY destination`,
    )
    .bind(after, JSON.stringify(names))
    .all();
  const latest: Record<string, number> = {};
  for (const raw of result.results) {
    const row = LatestRow.parse(raw);
    if (row.latest !== null) latest[row.destination] = Date.parse(row.latest);
  }
  return latest;
}

/** Where each destination's dead-letter window starts (`since`, by name; `defaultSince` for any other) and where they all end. */
export interface Windows {
  cutoff: number;
  since: Readonly<Record<string, number>>;
  defaultSince: number;
}

/**
 * What the index shows now, per destination (times compare as ISO-8601 strings, as stored): an
 * entry for every destination with something to show, in `windows.since` or in `raised` (the
 * destinations whose origin_failing is raised, with when it went out: only theirs get
 * `lastDeliveredAt`, looked up only then).
 */
export async function observe(
  db: D1Database,
  windows: Windows,
  now: number,
  afterSeconds: number,
  raised: Readonly<Record<string, number | null>> = {},
): Promise<Record<string, Observation>> {
  const stuckBefore = isoFromMillis(now - afterSeconds * 1000);
  const since = Object.fromEntries(Object.entries(windows.since).map(([name, at]) => [name, isoFromMillis(at)]));
  const [deadLetters, stuck, delivered] = await Promise.all([
    groups(
      db,
      // The row's oldest_failed_at is the earliest over its destinations: none of them qualifies when it is after the cutoff.
      "c.failed > 0 AND c.oldest_failed_at <= ?3",
      `SELECT per.destination, per.key, per.last_error, per.failed AS amount, per.oldest_failed_at AS rank_by
       FROM per LEFT JOIN (SELECT key AS name, value AS since FROM json_each(?1)) AS w ON w.name = per.destination
       WHERE per.failed > 0 AND per.oldest_failed_at > COALESCE(w.since, ?2) AND per.oldest_failed_at <= ?3`,
      [JSON.stringify(since), isoFromMillis(windows.defaultSince), isoFromMillis(windows.cutoff)],
    ),
    groups(
      db,
      "c.pending > 0 AND c.last_receipt_at < ?1",
      `SELECT destination, key, last_error, pending AS amount, last_receipt_at AS rank_by
       FROM per WHERE pending > 0 AND (last_delivered_at IS NULL OR last_delivered_at < ?1)`,
      [stuckBefore],
    ),
    // Read only while it matters (a scan of the index): recovery needs a delivery since the alert.
    latestDeliveries(db, raised),
  ]);
  const names = new Set([...Object.keys(windows.since), ...Object.keys(raised), ...Object.keys(deadLetters), ...Object.keys(stuck)]);
  const observed: Record<string, Observation> = {};
  for (const name of names) {
    observed[name] = {
      deadLetters: deadLetters[name] ?? NO_GROUP,
      stuck: stuck[name] ?? NO_GROUP,
      ...(name in raised ? { lastDeliveredAt: delivered[name] ?? null } : {}),
    };
  }
  return observed;
}

/**
 * One evaluation: read the states and the index, POST what is due (per destination), write the
 * states back. `destinations`: the configured destinations' names (settingsOf(env).destinations);
 * without them, `origin` and those with a state row are evaluated, besides any the index shows
 * something for.
 */
export async function runAlerts(
  db: D1Database,
  alerting: Extract<Alerting, { state: "on" }>,
  snapshotIntervalSeconds: number,
  now: number,
  fetcher: typeof fetch = fetch,
  destinations?: readonly string[],
): Promise<Digest[]> {
  const states = await readDestinationStates(db);
  const lag = indexLagMs(snapshotIntervalSeconds);
  const windowOf = (name: string) => deadLetterWindow(states[name], now, lag);
  const first = deadLetterWindow(undefined, now, lag);
  const raised = Object.fromEntries(Object.entries(states).flatMap(([name, state]) => (state.failingRaised ? [[name, state.sentAt.origin_failing]] : [])));
  const windows: Windows = {
    cutoff: first.cutoff,
    since: Object.fromEntries(Object.keys(states).map((name) => [name, windowOf(name).since])),
    defaultSince: first.since,
  };
  const observed = await observe(db, windows, now, alerting.afterSeconds, raised);
  // A row "1" is one the code from before migration 0005 wrote after it ran (deploys migrate first): not a destination.
  const withState = Object.keys(states).filter((name) => name !== PRE_DESTINATIONS_ID);
  const names = destinationsToEvaluate(destinations, withState, observed);
  const due = names.flatMap((name) => planAlerts(states[name], observed[name] ?? QUIET, now, windowOf(name), alerting.afterSeconds, name));
  const delivered = new Map<string, Set<AlertKind>>(names.map((name) => [name, new Set<AlertKind>()]));
  for (const alert of due) {
    try {
      const { headers, body } = await alertRequest(alerting, alert);
      const response = await fetcher(alerting.url, { method: "POST", headers, body, redirect: "manual", signal: AbortSignal.timeout(alerting.timeoutMs) });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`ALERT_URL answered ${response.status}`);
      delivered.get(alert.destination)?.add(alert.kind);
      log("info", "alert_sent", { kind: alert.kind, destination: alert.destination, conversations: alert.conversations, total: alert.total });
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
      log("warn", "alert_failed", {
        kind: alert.kind,
        destination: alert.destination,
        error: timedOut ? `no answer within ${alerting.timeoutMs} ms` : error instanceof Error ? error.message : String(error),
      });
    }
  }
  const next = Object.fromEntries(
    names.map((name) => [name, nextState(states[name], observed[name] ?? QUIET, now, windowOf(name), delivered.get(name) ?? new Set())]),
  );
  await writeAlertStates(db, next);
  return due.filter((alert) => delivered.get(alert.destination)?.has(alert.kind));
}

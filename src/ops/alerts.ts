/**
 * Alerts from the conversation index (docs/alerts-and-stats.md), evaluated by the Cron Trigger
 * once a minute. The decisions (what to alert, the digest bodies, Slack's text) are pure functions
 * of plain values, below; `runAlerts` at the end is the wiring: D1 reads, one POST per alert, the
 * state row written back.
 *
 * Kinds:
 * - `alert.dead_letter`: conversations whose first dead letter appeared since the last digest. A
 *   conversation qualifies when `failed > 0` and its `oldest_failed_at` falls in the window
 *   (since, cutoff]. The cutoff is the evaluation time minus the index lag (`indexLagMs`): a row is
 *   written up to one snapshot interval after the fact, so a dead letter older than the cutoff is
 *   in the index by now, and each one falls in exactly one window (no miss, no repeat).
 * - `alert.origin_failing`: deliveries failing relay-wide. A conversation is *stuck* when it has
 *   pending deliveries (`pending > 0`), even its newest receipt was accepted more than
 *   ALERT_AFTER_SECONDS ago (`last_receipt_at` older: so every pending receipt has waited that
 *   long), and nothing was delivered in that time either (`last_delivered_at` null or older). The
 *   condition holds while at least one conversation is stuck. The index carries no error for
 *   retrying deliveries (`last_error` is the last dead letter's), so errors in the digest are a
 *   sample of those, when any.
 * - `alert.recovered`: origin_failing was raised (sent) and no conversation is stuck any more.
 *
 * Each kind goes out at most once per 15 minutes (ALERT_COOLDOWN_MS): dead letters found in the
 * meantime wait for the next digest (the window's start stays put until a digest is delivered);
 * origin_failing repeats every 15 minutes while it holds. A failed POST changes no state, so the
 * next minute tries again.
 */
import { z } from "zod";
import { webhookHeaders } from "../delivery/webhook";
import { log } from "../log";
import type { Alerting } from "../settings";
import { isoFromMillis } from "../time";

export const ALERT_COOLDOWN_MS = 15 * 60_000;
/** Keys a digest lists; the rest are counted. */
export const DIGEST_KEYS = 20;
/** Distinct last errors a digest samples. */
export const DIGEST_ERRORS = 5;
/** The first evaluation (no state yet) looks this far back before the cutoff for dead letters. */
export const FIRST_WINDOW_MS = 60_000;

export type AlertKind = "dead_letter" | "origin_failing" | "recovered";

/** How far the index may lag its objects: one snapshot interval (a minute at least) plus a minute. */
export const indexLagMs = (snapshotIntervalSeconds: number) => (Math.max(snapshotIntervalSeconds, 60) + 60) * 1000;

export interface AlertState {
  checkedAt: number;
  deadLetterSince: number;
  sentAt: Record<AlertKind, number | null>;
  failingRaised: boolean;
}

/** What the index shows for one kind: how many conversations, a total, a sample of keys and errors. */
export interface Group {
  conversations: number;
  /** dead letters (dead_letter) or pending deliveries (origin_failing). */
  total: number;
  keys: string[];
  errors: string[];
}

export interface Observation {
  /** Dead letters first failed in (since, cutoff]. */
  deadLetters: Group;
  /** Stuck conversations (see the header). */
  stuck: Group;
  /** The latest delivery in the index (ms), looked up only while an origin_failing alert is raised. */
  lastDeliveredAt?: number | null;
}

export interface Digest {
  kind: AlertKind;
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

/** The window of dead letters to look at now: from the last covered point to the cutoff. */
export function deadLetterWindow(state: AlertState | undefined, now: number, lagMs: number): { since: number; cutoff: number } {
  const cutoff = now - lagMs;
  const since = state ? Math.min(state.deadLetterSince, cutoff) : cutoff - FIRST_WINDOW_MS;
  return { since, cutoff };
}

const allowed = (state: AlertState | undefined, kind: AlertKind, now: number) => {
  const last = state?.sentAt[kind] ?? null;
  return last === null || now - last >= ALERT_COOLDOWN_MS;
};

function digest(kind: AlertKind, now: number, group: Group, extra: Partial<Digest> = {}): Digest {
  const keys = group.keys.slice(0, DIGEST_KEYS);
  return {
    kind,
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
 * being stuck when they become dead letters while the origin is still down. So a delivery must have
 * succeeded since the origin_failing alert went out.
 */
function recoveredSince(state: AlertState, observation: Observation): boolean {
  const raisedAt = state.sentAt.origin_failing;
  const delivered = observation.lastDeliveredAt ?? null;
  return delivered !== null && (raisedAt === null || delivered > raisedAt);
}

/** The alerts due now, given the state, what the index shows, and the window and threshold used. */
export function planAlerts(
  state: AlertState | undefined,
  observation: Observation,
  now: number,
  window: { since: number; cutoff: number },
  afterSeconds: number,
): Digest[] {
  const due: Digest[] = [];
  if (observation.deadLetters.conversations > 0 && allowed(state, "dead_letter", now)) {
    due.push(digest("dead_letter", now, observation.deadLetters, { since: isoFromMillis(window.since), until: isoFromMillis(window.cutoff) }));
  }
  if (observation.stuck.conversations > 0) {
    if (allowed(state, "origin_failing", now)) due.push(digest("origin_failing", now, observation.stuck, { afterSeconds }));
  } else if (state?.failingRaised && recoveredSince(state, observation) && allowed(state, "recovered", now)) {
    due.push(digest("recovered", now, { conversations: 0, total: 0, keys: [], errors: [] }));
  }
  return due;
}

/** The state after an evaluation; `delivered` names the kinds whose alert was delivered. */
export function nextState(
  state: AlertState | undefined,
  observation: Observation,
  now: number,
  window: { since: number; cutoff: number },
  delivered: ReadonlySet<AlertKind>,
): AlertState {
  const sentAt: Record<AlertKind, number | null> = { dead_letter: null, origin_failing: null, recovered: null, ...state?.sentAt };
  for (const kind of delivered) sentAt[kind] = now;
  // The window moves on when nothing is waiting in it or its digest went out.
  const covered = observation.deadLetters.conversations === 0 || delivered.has("dead_letter");
  let failingRaised = state?.failingRaised ?? false;
  if (delivered.has("origin_failing")) failingRaised = true;
  if (delivered.has("recovered")) failingRaised = false;
  return { checkedAt: now, deadLetterSince: covered ? window.cutoff : window.since, sentAt, failingRaised };
}

const TITLES: Record<AlertKind, string> = {
  dead_letter: "new dead letters",
  origin_failing: "deliveries to the origin are failing",
  recovered: "deliveries to the origin recovered",
};

/** The Standard Webhooks body: `{type, timestamp, data}`, like deliveries. */
export function alertBody(alert: Digest): string {
  const { kind, at, ...data } = alert;
  return JSON.stringify({ type: `alert.${kind}`, timestamp: isoFromMillis(at), data: { title: TITLES[kind], ...data } });
}

/** A webhook-id per kind and evaluation: `alert:<kind>:<unix seconds>`. */
export const alertId = (alert: Pick<Digest, "kind" | "at">) => `alert:${alert.kind}:${Math.floor(alert.at / 1000)}`;

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

/** One line of text for Slack (`{"text": …}`): what happened, counts, keys and errors. */
export function slackText(alert: Digest): string {
  const more = alert.moreKeys > 0 ? ` and ${alert.moreKeys} more` : "";
  const keys = alert.keys.length > 0 ? `\nConversations: ${alert.keys.map(slackCode).join(", ")}${more}` : "";
  const errors = alert.errors.length > 0 ? `\nLast errors: ${alert.errors.map(slackCode).join("; ")}` : "";
  switch (alert.kind) {
    case "dead_letter":
      return `:rotating_light: receipt-relay: ${alert.conversations} conversation(s) with new dead letters (${alert.total} dead letters in all)${keys}${errors}`;
    case "origin_failing":
      return `:warning: receipt-relay: deliveries failing for more than ${alert.afterSeconds ?? 0} s: ${alert.conversations} conversation(s) stuck, ${alert.total} pending${keys}${errors}`;
    case "recovered":
      return ":white_check_mark: receipt-relay: deliveries to the origin recovered; no conversation is stuck any more";
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
  checked_at: z.number(),
  dead_letter_since: z.number(),
  dead_letter_sent_at: z.number().nullable(),
  origin_failing_sent_at: z.number().nullable(),
  recovered_sent_at: z.number().nullable(),
  failing_raised: z.number(),
});
const CountRow = z.object({ conversations: z.number(), total: z.number().nullable() });
const SampleRow = z.object({ key: z.string(), last_error: z.string().nullable() });

export async function readAlertState(db: D1Database): Promise<AlertState | undefined> {
  const row = await db.prepare("SELECT * FROM alert_state WHERE id = 1").first();
  if (!row) return undefined;
  const parsed = AlertStateRow.parse(row);
  return {
    checkedAt: parsed.checked_at,
    deadLetterSince: parsed.dead_letter_since,
    sentAt: { dead_letter: parsed.dead_letter_sent_at, origin_failing: parsed.origin_failing_sent_at, recovered: parsed.recovered_sent_at },
    failingRaised: parsed.failing_raised === 1,
  };
}

async function writeAlertState(db: D1Database, state: AlertState): Promise<void> {
  await db
    .prepare(
      `INSERT INTO alert_state (id, checked_at, dead_letter_since, dead_letter_sent_at, origin_failing_sent_at, recovered_sent_at, failing_raised)
       VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
       ON CONFLICT (id) DO UPDATE SET checked_at = ?1, dead_letter_since = ?2, dead_letter_sent_at = ?3, origin_failing_sent_at = ?4,
         recovered_sent_at = ?5, failing_raised = ?6`,
    )
    .bind(state.checkedAt, state.deadLetterSince, state.sentAt.dead_letter, state.sentAt.origin_failing, state.sentAt.recovered, state.failingRaised ? 1 : 0)
    .run();
}

async function group(db: D1Database, where: string, totalColumn: string, order: string, params: string[]): Promise<Group> {
  const [counts, sample] = await db.batch([
    db.prepare(`SELECT COUNT(*) AS conversations, SUM(${totalColumn}) AS total FROM conversations WHERE ${where}`).bind(...params),
    db.prepare(`SELECT key, last_error FROM conversations WHERE ${where} ORDER BY ${order} LIMIT ${DIGEST_KEYS}`).bind(...params),
  ]);
  const count = CountRow.parse(counts?.results[0] ?? { conversations: 0, total: 0 });
  const rows = (sample?.results ?? []).map((row) => SampleRow.parse(row));
  return {
    conversations: count.conversations,
    total: count.total ?? 0,
    keys: rows.map((row) => row.key),
    errors: rows.flatMap((row) => (row.last_error ? [row.last_error] : [])),
  };
}

const LatestRow = z.object({ latest: z.string().nullable() });

async function latestDelivery(db: D1Database): Promise<number | null> {
  const row = LatestRow.parse(await db.prepare("SELECT MAX(last_delivered_at) AS latest FROM conversations").first());
  return row.latest === null ? null : Date.parse(row.latest);
}

/** What the index shows now (times compare as ISO-8601 strings, as stored). */
export async function observe(
  db: D1Database,
  window: { since: number; cutoff: number },
  now: number,
  afterSeconds: number,
  failingRaised = false,
): Promise<Observation> {
  const stuckBefore = isoFromMillis(now - afterSeconds * 1000);
  const [deadLetters, stuck, lastDeliveredAt] = await Promise.all([
    group(db, "failed > 0 AND oldest_failed_at > ?1 AND oldest_failed_at <= ?2", "failed", "oldest_failed_at, key", [
      isoFromMillis(window.since),
      isoFromMillis(window.cutoff),
    ]),
    group(db, "pending > 0 AND last_receipt_at < ?1 AND (last_delivered_at IS NULL OR last_delivered_at < ?1)", "pending", "last_receipt_at, key", [
      stuckBefore,
    ]),
    // Read only while it matters (a scan of the index): recovery needs a delivery since the alert.
    failingRaised ? latestDelivery(db) : Promise.resolve(null),
  ]);
  return { deadLetters, stuck, lastDeliveredAt };
}

/** One evaluation: read state and index, POST what is due, write the state back. */
export async function runAlerts(
  db: D1Database,
  alerting: Extract<Alerting, { state: "on" }>,
  snapshotIntervalSeconds: number,
  now: number,
  fetcher: typeof fetch = fetch,
): Promise<Digest[]> {
  const state = await readAlertState(db);
  const window = deadLetterWindow(state, now, indexLagMs(snapshotIntervalSeconds));
  const observation = await observe(db, window, now, alerting.afterSeconds, state?.failingRaised ?? false);
  const due = planAlerts(state, observation, now, window, alerting.afterSeconds);
  const delivered = new Set<AlertKind>();
  for (const alert of due) {
    try {
      const { headers, body } = await alertRequest(alerting, alert);
      const response = await fetcher(alerting.url, { method: "POST", headers, body, redirect: "manual", signal: AbortSignal.timeout(alerting.timeoutMs) });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`ALERT_URL answered ${response.status}`);
      delivered.add(alert.kind);
      log("info", "alert_sent", { kind: alert.kind, conversations: alert.conversations, total: alert.total });
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
      log("warn", "alert_failed", {
        kind: alert.kind,
        error: timedOut ? `no answer within ${alerting.timeoutMs} ms` : error instanceof Error ? error.message : String(error),
      });
    }
  }
  await writeAlertState(db, nextState(state, observation, now, window, delivered));
  return due.filter((alert) => delivered.has(alert.kind));
}

/**
 * Destinations as an operator sees them (docs/destinations.md): the overview (GET /v1/destinations,
 * the dashboard's destinations page), and pausing or resuming one. Data only: the API and the
 * dashboard answer.
 *
 * The figures come from the conversation index (D1): each row's `destinations` column (JSON, a
 * DestinationSummary per name, src/ops/conversation-index.ts) summed over at most MAX_ROWS rows.
 * Configuration comes from the settings, the paused state from the relay's DestinationControl
 * object (src/destinations/control.ts). Neither the index nor the control object failing fails the
 * overview: it says what it could not read instead.
 */
import { controlNamespace, controlStub, forgetPaused } from "../destinations/control";
import { log } from "../log";
import { destinationsOf, IndexRow, indexDb, indexProblemOf, LATENCY_BOUNDS_MS, noteIndexProblem, reportIndexProblem } from "../ops/conversation-index";
import { settingsOf } from "../settings";
import { INDEX_OFF } from "./conversations";
import { isoFromMillis } from "../time";

/** Index rows read for GET /v1/destinations at most; past it the figures say `truncated: true`. */
export const MAX_ROWS = 10_000;
const ROWS_PAGE = 1000;
/** The latency histograms cover the hour before their row was written: rows older than this are left out. */
const LATENCY_WINDOW_MS = 3_600_000;

/** What a deployment without the binding is told to add (wrangler.toml has both blocks). */
export const CONTROL_FIX =
  'pausing needs the DestinationControl Durable Object: add the [[durable_objects.bindings]] block with name = "DESTINATION_CONTROL" and class_name = "DestinationControl", and the [[migrations]] step with new_sqlite_classes = ["DestinationControl"], from this version\'s wrangler.toml, then deploy';

export type DestinationState = "active" | "paused" | "misconfigured" | "removed";

export interface DestinationLatency {
  /** Upper bounds (ms) of the histogram buckets holding the 50th and 95th percentile; the last bound when slower than all (null: no delivery). */
  p50Ms: number | null;
  p95Ms: number | null;
  /** Deliveries in the summed histograms (each conversation's last hour, as of its row). */
  deliveries: number;
}

export interface DestinationView {
  name: string;
  state: DestinationState;
  /** Why it is misconfigured, and the setting to fix. */
  reason?: string;
  setting?: string;
  /** The host of its URL only (never the path or query, which may hold a token); null when unknown. */
  host: string | null;
  pausedSince?: string;
  backlog: number;
  failingConversations: number;
  deadLetters: number;
  lastDeliveryAt: string | null;
  lastError: string | null;
  latency: DestinationLatency;
}

export type IndexPart = { state: "on"; rows: number; truncated?: true } | { state: "unavailable"; reason: string };
export type ControlPart = { state: "on" } | { state: "unbound"; reason: string } | { state: "unavailable"; reason: string };

export interface DestinationsOverview {
  generatedAt: string;
  destinations: DestinationView[];
  /** Receipts kept that matched no destination, summed over the rows read; null without the index. */
  unrouted: number | null;
  index: IndexPart;
  control: ControlPart;
}

interface Tally {
  backlog: number;
  failingConversations: number;
  deadLetters: number;
  lastDeliveryAt: string | null;
  lastError: string | null;
  lastErrorRowAt: string;
  histogram: number[];
}

const newTally = (): Tally => ({
  backlog: 0,
  failingConversations: 0,
  deadLetters: 0,
  lastDeliveryAt: null,
  lastError: null,
  lastErrorRowAt: "",
  histogram: new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0),
});

/** The upper bound of the bucket holding the nearest-rank percentile; the last bound for the overflow bucket. */
export function histogramPercentile(histogram: readonly number[], p: number): number | null {
  const total = histogram.reduce((sum, count) => sum + count, 0);
  if (total === 0) return null;
  const rank = Math.min(total, Math.max(1, Math.ceil(p * total)));
  let seen = 0;
  for (const [i, count] of histogram.entries()) {
    seen += count;
    if (seen >= rank) return LATENCY_BOUNDS_MS[Math.min(i, LATENCY_BOUNDS_MS.length - 1)] ?? null;
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1] ?? null;
}

const latencyOf = (histogram: readonly number[]): DestinationLatency => ({
  p50Ms: histogramPercentile(histogram, 0.5),
  p95Ms: histogramPercentile(histogram, 0.95),
  deliveries: histogram.reduce((sum, count) => sum + count, 0),
});

const SummaryRow = IndexRow.pick({ key: true, destinations: true, unrouted: true, updated_at: true });

/** Every row's destinations summed by name (at most MAX_ROWS rows, in key order), and the unrouted total. */
export async function tallyIndex(db: D1Database, now: number): Promise<{ tallies: Map<string, Tally>; unrouted: number; rows: number; truncated: boolean }> {
  const tallies = new Map<string, Tally>();
  const hourAgo = isoFromMillis(now - LATENCY_WINDOW_MS);
  let unrouted = 0;
  let rows = 0;
  let truncated = false;
  for (let after = ""; ;) {
    const want = Math.min(ROWS_PAGE, MAX_ROWS - rows);
    const result = await db
      .prepare("SELECT key, destinations, unrouted, updated_at FROM conversations WHERE key > ? ORDER BY key LIMIT ?")
      .bind(after, want + 1)
      .all();
    const page = result.results.map((row) => SummaryRow.parse(row));
    const more = page.length > want;
    for (const row of page.slice(0, want)) {
      rows++;
      unrouted += row.unrouted ?? 0;
      for (const [name, summary] of Object.entries(destinationsOf(row))) {
        let tally = tallies.get(name);
        if (!tally) tallies.set(name, (tally = newTally()));
        tally.backlog += summary.pending;
        if (summary.failed > 0) {
          tally.failingConversations++;
          tally.deadLetters += summary.failed;
          // The most recently written failing row's error: its failure is the freshest the index knows.
          if (summary.lastError !== null && row.updated_at >= tally.lastErrorRowAt) {
            tally.lastError = summary.lastError;
            tally.lastErrorRowAt = row.updated_at;
          }
        }
        if (summary.lastDeliveredAt !== null && (tally.lastDeliveryAt === null || summary.lastDeliveredAt > tally.lastDeliveryAt)) {
          tally.lastDeliveryAt = summary.lastDeliveredAt;
        }
        if (row.updated_at >= hourAgo) summary.latency.forEach((count, i) => (tally.histogram[Math.min(i, tally.histogram.length - 1)]! += count));
      }
    }
    if (!more) break;
    if (rows >= MAX_ROWS) {
      truncated = true;
      break;
    }
    after = page[want - 1]!.key;
  }
  return { tallies, unrouted, rows, truncated };
}

/** The paused destinations (name → since), or why they could not be read. */
async function readPaused(env: Env): Promise<{ paused: Record<string, string>; control: ControlPart }> {
  const namespace = controlNamespace(env);
  if (!namespace) return { paused: {}, control: { state: "unbound", reason: CONTROL_FIX } };
  try {
    return { paused: await controlStub(namespace).paused(), control: { state: "on" } };
  } catch (error) {
    return { paused: {}, control: { state: "unavailable", reason: `the DestinationControl object failed: ${String(error).slice(0, 200)}` } };
  }
}

const hostOf = (url: string | undefined): string | null => {
  if (!url) return null;
  try {
    return new URL(url).host;
  } catch {
    return null;
  }
};

/** The configured destinations (settings order) and those only the index still names (`removed`, by name), with their figures. */
export async function destinationsOverview(env: Env, now = Date.now(), where: "api" | "dashboard" = "api"): Promise<DestinationsOverview> {
  const configured = settingsOf(env).destinations;
  const [{ paused, control }, indexed] = await Promise.all([readPaused(env), readIndex(env, now, where)]);
  const tallies = indexed.ok ? indexed.value.tallies : new Map<string, Tally>();
  const view = (name: string, base: Pick<DestinationView, "state" | "host"> & { reason?: string; setting?: string }): DestinationView => {
    const tally = tallies.get(name) ?? newTally();
    const since = paused[name];
    return {
      name,
      ...base,
      ...(base.state === "active" && since ? { state: "paused" as const } : {}),
      ...(since ? { pausedSince: since } : {}),
      backlog: tally.backlog,
      failingConversations: tally.failingConversations,
      deadLetters: tally.deadLetters,
      lastDeliveryAt: tally.lastDeliveryAt,
      lastError: tally.lastError,
      latency: latencyOf(tally.histogram),
    };
  };
  const destinations = configured.map((entry) =>
    entry.state === "active"
      ? view(entry.name, { state: "active", host: hostOf(entry.destination.url) })
      : view(entry.name, { state: "misconfigured", reason: entry.reason, setting: entry.setting, host: hostOf(entry.url) }),
  );
  const names = new Set(configured.map((entry) => entry.name));
  // Named by the index only, or paused only (so that a pause outliving its destination can still be resumed).
  const removed = [...new Set([...tallies.keys(), ...Object.keys(paused)])].filter((name) => !names.has(name)).sort();
  for (const name of removed) destinations.push(view(name, { state: "removed", host: null }));
  return {
    generatedAt: isoFromMillis(now),
    destinations,
    unrouted: indexed.ok ? indexed.value.unrouted : null,
    index: indexed.ok
      ? { state: "on", rows: indexed.value.rows, ...(indexed.value.truncated ? { truncated: true as const } : {}) }
      : { state: "unavailable", reason: indexed.reason },
    control,
  };
}

type IndexRead<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Reads the index for the overview; a failure is reported like the API's others (index_unavailable, once) and becomes a reason. */
async function readIndex(env: Env, now: number, where: "api" | "dashboard"): Promise<IndexRead<Awaited<ReturnType<typeof tallyIndex>>>> {
  const db = indexDb(env);
  if (!db) return { ok: false, reason: INDEX_OFF };
  try {
    const value = await tallyIndex(db, now);
    reportIndexProblem(where, undefined);
    return { ok: true, value };
  } catch (error) {
    const problem = indexProblemOf(error);
    noteIndexProblem(db, problem, Date.now());
    reportIndexProblem(where, problem);
    return { ok: false, reason: problem.message };
  }
}

/** JSON path of a destination's entry in a row's `destinations` (names are [a-z0-9-]: quoted for the dash). */
export const destinationPath = (name: string) => `$."${name}"`;

/** Whether any index row names `name` (a destination removed from the settings whose state the rows still hold). */
export async function indexNames(db: D1Database, name: string): Promise<boolean> {
  const row = await db
    .prepare("SELECT 1 AS found FROM conversations WHERE destinations IS NOT NULL AND json_type(destinations, ?) IS NOT NULL LIMIT 1")
    .bind(destinationPath(name))
    .first();
  return row !== null;
}

export type PauseResult =
  { ok: true; name: string; state: DestinationState; pausedSince?: string } | { ok: false; status: 404 | 503; code: string; message: string };

/**
 * Pauses or resumes `name`: a configured destination, or one the index still names (or one paused
 * already, so that it can always be resumed). Logged as destination_paused / destination_resumed.
 */
export async function setPaused(env: Env, name: string, pause: boolean, now = Date.now()): Promise<PauseResult> {
  const namespace = controlNamespace(env);
  if (!namespace) return { ok: false, status: 503, code: "destination_control_unbound", message: CONTROL_FIX };
  const stub = controlStub(namespace);
  const configured = settingsOf(env).destinations.find((entry) => entry.name === name);
  let paused: Record<string, string>;
  try {
    paused = await stub.paused();
  } catch (error) {
    return { ok: false, status: 503, code: "destination_control_failed", message: `the DestinationControl object failed: ${String(error).slice(0, 200)}` };
  }
  if (!configured && paused[name] === undefined) {
    const db = indexDb(env);
    const known = db ? await indexNames(db, name).catch(() => false) : false;
    if (!known) {
      return {
        ok: false,
        status: 404,
        code: "destination_not_found",
        message: `no destination ${name}: it is not configured, and no conversation in the index names it`,
      };
    }
  }
  try {
    paused = pause ? await stub.pause(name, now) : await stub.resume(name);
  } catch (error) {
    return { ok: false, status: 503, code: "destination_control_failed", message: `the DestinationControl object failed: ${String(error).slice(0, 200)}` };
  }
  // This isolate's conversations see the change at once; others within PAUSE_CACHE_MS.
  forgetPaused();
  const since = paused[name];
  log("info", pause ? "destination_paused" : "destination_resumed", { destination: name, ...(since ? { since } : {}) });
  const base: DestinationState = !configured ? "removed" : configured.state === "misconfigured" ? "misconfigured" : since ? "paused" : "active";
  return { ok: true, name, state: base, ...(since ? { pausedSince: since } : {}) };
}

/**
 * The relay-wide conversation index in D1 (binding `DB`, table `conversations`,
 * migrations/0001_conversations.sql): one row per conversation, so an operator can list every
 * conversation, find the failing ones and retry their dead letters without knowing their keys.
 *
 * Each conversation's object is the only writer of its row. It writes from `publish()`, coalesced
 * like the KV read model (at most once per SNAPSHOT_INTERVAL_SECONDS; once a minute when that is
 * 0), with one upsert, and only when the row's content changed (the text last written is kept in
 * the object's `state` as `indexed_row`). The objects stay the truth: a row may lag its object by
 * one interval, longer while D1 fails (the publication is then retried with its back-off).
 *
 * Everything the row holds comes from storage at publish time, cheaply: the accepted total is the
 * highest sequence number (in memory), the last receipt is one primary-key lookup, the counts and
 * dead letters are what the KV publication reads anyway, and the last delivery is the delivered
 * receipt with the highest sequence number, found walking the rowid down from the end (receipts
 * are delivered in order, so that is the latest delivery, except just after a retry of older dead
 * letters). Nothing is written per receipt.
 */
import { z } from "zod";
import { log } from "../log";
import { parseConversationKey } from "../receipt";
import { isoFromMillis } from "../time";
import { Activity } from "./activity";

/** With SNAPSHOT_INTERVAL_SECONDS=0 (no snapshot), a conversation still writes its row at most this often. */
export const INDEX_MIN_INTERVAL_MS = 60_000;
/** The largest page of the index one call returns. */
export const MAX_INDEX_PAGE = 1000;

/** One conversation's row, as stored (snake_case, times ISO-8601 UTC). */
export const IndexRow = z.object({
  key: z.string(),
  provider: z.string(),
  app: z.string(),
  chat: z.string(),
  accepted: z.number(),
  last_receipt_at: z.string().nullable(),
  pending: z.number(),
  failed: z.number(),
  oldest_failed_at: z.string().nullable(),
  last_error: z.string().nullable(),
  last_delivered_at: z.string().nullable(),
  last_latency_ms: z.number().nullable(),
  /** Recent activity in 5-minute buckets, JSON (src/ops/activity.ts); null in rows written before migration 0003. */
  activity: z.string().nullable(),
  /** Per destination (DestinationSummary by name), JSON; null in rows written before migration 0004. */
  destinations: z.string().nullable().default(null),
  /** Receipts kept that matched no destination; 0 in rows written before migration 0004. */
  unrouted: z.number().nullable().default(0),
  updated_at: z.string(),
});
export type IndexRow = z.infer<typeof IndexRow>;
/** The row without its time of writing: what decides whether it changed. */
export type IndexContent = Omit<IndexRow, "updated_at">;

/** A conversation's dead letters in brief, for its row: how many, the oldest's time, the last error. */
export type DeadLetters = { failed: number; oldestFailedAt: string; lastError: string };

/** Upper bounds (ms) of the latency histogram's buckets; the last bucket holds everything slower. */
export const LATENCY_BOUNDS_MS = [50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000];

/** One destination's part of a conversation's row (column `destinations`, JSON by name). */
export const DestinationSummary = z.object({
  pending: z.number(),
  failed: z.number(),
  oldestFailedAt: z.string().nullable(),
  lastError: z.string().nullable(),
  lastDeliveredAt: z.string().nullable(),
  lastLatencyMs: z.number().nullable(),
  /** Deliveries of the last hour by latency (from acceptance to the 2xx), LATENCY_BOUNDS_MS buckets and one more. */
  latency: z.array(z.number()),
});
export type DestinationSummary = z.infer<typeof DestinationSummary>;

/** What the row says, as the conversation's object reads it from its storage (src/conversation/publisher.ts). */
export interface IndexFacts {
  accepted: number;
  lastAcceptedAt: number | undefined;
  unrouted: number;
  destinations: Record<string, DestinationSummary>;
  activity: Activity;
}

/** The row's content from the object's facts; the totals (pending, failed, last error, last delivery) are over every destination. */
export function indexContent(key: string, facts: IndexFacts): IndexContent {
  let pending = 0;
  let failed = 0;
  let oldestFailedAt: string | null = null;
  let lastError: string | null = null;
  let lastErrorAt = "";
  let lastDeliveredAt: string | null = null;
  let lastLatencyMs: number | null = null;
  for (const summary of Object.values(facts.destinations)) {
    pending += summary.pending;
    failed += summary.failed;
    if (summary.oldestFailedAt !== null && (oldestFailedAt === null || summary.oldestFailedAt < oldestFailedAt)) oldestFailedAt = summary.oldestFailedAt;
    if (summary.lastError !== null && summary.failed > 0 && (summary.oldestFailedAt ?? "") >= lastErrorAt) {
      lastError = summary.lastError;
      lastErrorAt = summary.oldestFailedAt ?? "";
    }
    if (summary.lastDeliveredAt !== null && (lastDeliveredAt === null || summary.lastDeliveredAt > lastDeliveredAt)) {
      lastDeliveredAt = summary.lastDeliveredAt;
      lastLatencyMs = summary.lastLatencyMs;
    }
  }
  const sorted = Object.fromEntries(Object.entries(facts.destinations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return {
    key,
    ...parseConversationKey(key),
    accepted: facts.accepted,
    last_receipt_at: facts.lastAcceptedAt !== undefined ? isoFromMillis(facts.lastAcceptedAt) : null,
    pending,
    failed,
    oldest_failed_at: oldestFailedAt,
    last_error: lastError,
    last_delivered_at: lastDeliveredAt,
    last_latency_ms: lastLatencyMs,
    activity: JSON.stringify(facts.activity),
    destinations: JSON.stringify(sorted),
    unrouted: facts.unrouted,
  };
}

/** A row's destinations, or {} in rows written before migration 0004. */
export function destinationsOf(row: Pick<IndexRow, "destinations">): Record<string, DestinationSummary> {
  if (!row.destinations) return {};
  try {
    const parsed = z.record(z.string(), DestinationSummary).safeParse(JSON.parse(row.destinations));
    return parsed.success ? parsed.data : {};
  } catch {
    return {};
  }
}

/** The content last written, as the object kept it (`indexed_row`), or undefined if none or unreadable. */
export function parseIndexedRow(text: string): IndexContent | undefined {
  if (!text) return undefined;
  try {
    const parsed = IndexRow.omit({ updated_at: true })
      .extend({ activity: z.string().nullable().default(null), destinations: z.string().nullable().default(null), unrouted: z.number().nullable().default(0) })
      .safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The activity of a row's content, or undefined when it has none yet (rows written before migration 0003). */
export function activityOf(content: IndexContent | undefined): Activity | undefined {
  if (!content?.activity) return undefined;
  try {
    const parsed = Activity.safeParse(JSON.parse(content.activity));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** One upsert (never INSERT OR REPLACE, a delete and an insert). */
export async function writeIndexRow(db: D1Database, row: IndexContent, updatedAt: number): Promise<void> {
  await db
    .prepare(
      `INSERT INTO conversations (key, provider, app, chat, accepted, last_receipt_at, pending, failed, oldest_failed_at, last_error, last_delivered_at, last_latency_ms, updated_at, activity, destinations, unrouted)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
       ON CONFLICT (key) DO UPDATE SET provider = ?2, app = ?3, chat = ?4, accepted = ?5, last_receipt_at = ?6, pending = ?7, failed = ?8,
         oldest_failed_at = ?9, last_error = ?10, last_delivered_at = ?11, last_latency_ms = ?12, updated_at = ?13, activity = ?14,
         destinations = ?15, unrouted = ?16`,
    )
    .bind(
      row.key,
      row.provider,
      row.app,
      row.chat,
      row.accepted,
      row.last_receipt_at,
      row.pending,
      row.failed,
      row.oldest_failed_at,
      row.last_error,
      row.last_delivered_at,
      row.last_latency_ms,
      isoFromMillis(updatedAt),
      row.activity,
      row.destinations,
      row.unrouted ?? 0,
    )
    .run();
}

export const IndexStatus = z.enum(["failing", "pending", "ok"]);
export type IndexStatus = z.infer<typeof IndexStatus>;
export interface IndexFilter {
  provider?: string | undefined;
  status?: IndexStatus | undefined;
  prefix?: string | undefined;
  /** With status "failing": conversations with dead letters of this destination (the row's `destinations`, migration 0004). */
  destination?: string | undefined;
}

/** Above every character a key can hold (keys are percent-encoded ASCII): the end of a prefix range. */
const PREFIX_END = "\u{10FFFF}";

function where(filter: IndexFilter, after: string | undefined): { sql: string; params: (string | number)[] } {
  const clauses: string[] = [];
  const params: (string | number)[] = [];
  if (filter.provider !== undefined) {
    clauses.push("provider = ?");
    params.push(filter.provider);
  }
  if (filter.status === "failing") clauses.push("failed > 0");
  // The `failed > 0` partial index first, then the row's JSON; names are [a-z0-9-], quoted for the dash.
  if (filter.status === "failing" && filter.destination !== undefined) {
    clauses.push("json_extract(destinations, ?) > 0");
    params.push(`$."${filter.destination}".failed`);
  } else if (filter.status === "pending") clauses.push("failed = 0 AND pending > 0");
  else if (filter.status === "ok") clauses.push("failed = 0 AND pending = 0");
  if (filter.prefix) {
    clauses.push("key >= ? AND key < ?");
    params.push(filter.prefix, filter.prefix + PREFIX_END);
  }
  if (after !== undefined) {
    clauses.push("key > ?");
    params.push(after);
  }
  return { sql: clauses.length > 0 ? `WHERE ${clauses.join(" AND ")}` : "", params };
}

/** A page of the index in key order, after the key `after`; `next` is the last key when more may follow. */
export async function listIndex(db: D1Database, filter: IndexFilter, limit: number, after?: string): Promise<{ rows: IndexRow[]; next?: string }> {
  const { sql, params } = where(filter, after);
  const result = await db
    .prepare(`SELECT * FROM conversations ${sql} ORDER BY key LIMIT ?`)
    .bind(...params, limit + 1)
    .all();
  const rows = result.results.map((row) => IndexRow.parse(row));
  if (rows.length <= limit) return { rows };
  const page = rows.slice(0, limit);
  return { rows: page, next: page[page.length - 1]?.key ?? "" };
}

const KeyRow = z.object({ key: z.string() });

/** Keys of every conversation with dead letters that matches, in key order, a page at a time. */
export async function failingKeys(db: D1Database, filter: Omit<IndexFilter, "status">, limit: number, after?: string): Promise<string[]> {
  const { sql, params } = where({ ...filter, status: "failing" }, after);
  const result = await db
    .prepare(`SELECT key FROM conversations ${sql} ORDER BY key LIMIT ?`)
    .bind(...params, limit)
    .all();
  return result.results.map((row) => KeyRow.parse(row).key);
}

/** Index rows as the API shows them (camelCase). */
export function describeRow(row: IndexRow) {
  return {
    conversation: row.key,
    provider: row.provider,
    app: row.app,
    chat: row.chat,
    accepted: row.accepted,
    lastReceiptAt: row.last_receipt_at,
    pending: row.pending,
    failed: row.failed,
    oldestFailedAt: row.oldest_failed_at,
    lastError: row.last_error,
    lastDeliveredAt: row.last_delivered_at,
    lastLatencyMs: row.last_latency_ms,
    updatedAt: row.updated_at,
  };
}

/** The binding, or undefined when the deployment has none (the index is then off). */
export const indexDb = (env: Env): D1Database | undefined => (env as { DB?: D1Database }).DB;

/**
 * What migrations/ creates (0001 to 0003), for /healthz to compare with the database. The relay
 * never creates these itself (docs/operations.md, "The index is missing or failing").
 */
export const INDEX_SCHEMA: Record<string, readonly string[]> = {
  conversations: [...Object.keys(IndexRow.shape)],
  alert_state: ["id", "checked_at", "dead_letter_since", "dead_letter_sent_at", "origin_failing_sent_at", "recovered_sent_at", "failing_raised"],
};

/** The one command that creates the index's tables, in every message that reports them missing. */
export const MIGRATE_FIX =
  "apply the D1 migrations: npx wrangler d1 migrations apply DB --local (under wrangler dev), or npm run deploy (the deployed Worker: it applies pending migrations; docs/deploy.md)";

/**
 * Why the index cannot be used: `unmigrated` when tables or columns of migrations/ are missing
 * (`missing` names them, as `table` or `table.column`), `failing` when D1 itself fails.
 */
export type IndexProblem = { kind: "unmigrated"; missing: string[]; message: string } | { kind: "failing"; message: string };

const MAX_ERROR_CHARS = 200;

/** Classifies an error thrown by a D1 call (D1 reports SQLite's own "no such table: x"). */
export function indexProblemOf(error: unknown): IndexProblem {
  const text = (error instanceof Error ? error.message : String(error)).slice(0, MAX_ERROR_CHARS);
  const missing = /no such (table|column): ([\w.]+)/.exec(text);
  if (missing?.[2]) return unmigrated([missing[2]]);
  // An upsert into a table that a later migration widened: "table conversations has no column named activity".
  const column = /table (\w+) has no column named (\w+)/.exec(text);
  if (column?.[1] && column[2]) return unmigrated([`${column[1]}.${column[2]}`]);
  return { kind: "failing", message: `the conversation index (D1 binding DB) failed: ${text}` };
}

const unmigrated = (missing: string[]): IndexProblem => ({
  kind: "unmigrated",
  missing,
  message: `the conversation index is missing ${missing.join(", ")}: ${MIGRATE_FIX}`,
});

/** How long a probe's answer is reused in an isolate: /healthz stays one cheap read at most every 30 s. */
export const INDEX_PROBE_TTL_MS = 30_000;
const probes = new WeakMap<D1Database, { at: number; problem: IndexProblem | undefined }>();
const NameRow = z.object({ name: z.string() });
const TableColumn = z.object({ tbl: z.string(), col: z.string() });
const parsedOr = <T>(schema: z.ZodType<T>, row: unknown): T[] => {
  const parsed = schema.safeParse(row);
  return parsed.success ? [parsed.data] : [];
};

/**
 * Compares the database with INDEX_SCHEMA: its tables, then (where D1 allows the pragma) their
 * columns; undefined when it matches. Cached per binding for INDEX_PROBE_TTL_MS.
 */
export async function probeIndex(db: D1Database, now: number): Promise<IndexProblem | undefined> {
  const cached = probes.get(db);
  if (cached && now - cached.at < INDEX_PROBE_TTL_MS) return cached.problem;
  let problem: IndexProblem | undefined;
  try {
    const listed = await db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all();
    const tables = new Set(listed.results.flatMap((row) => parsedOr(NameRow, row).map((table) => table.name)));
    const missing = Object.keys(INDEX_SCHEMA).filter((table) => !tables.has(table));
    if (missing.length === 0) missing.push(...(await missingColumns(db)));
    problem = missing.length > 0 ? unmigrated(missing) : undefined;
  } catch (error) {
    problem = indexProblemOf(error);
  }
  probes.set(db, { at: now, problem });
  return problem;
}

/** Columns of INDEX_SCHEMA that the tables lack (a later migration not applied); none when the pragma is refused. */
async function missingColumns(db: D1Database): Promise<string[]> {
  try {
    const names = Object.keys(INDEX_SCHEMA);
    const result = await db
      .prepare(
        `SELECT m.name AS tbl, p.name AS col FROM sqlite_master AS m, pragma_table_info(m.name) AS p WHERE m.name IN (${names.map(() => "?").join(", ")})`,
      )
      .bind(...names)
      .all();
    const found = new Set(result.results.flatMap((row) => parsedOr(TableColumn, row).map((column) => `${column.tbl}.${column.col}`)));
    return Object.entries(INDEX_SCHEMA).flatMap(([table, columns]) =>
      columns.filter((column) => !found.has(`${table}.${column}`)).map((column) => `${table}.${column}`),
    );
  } catch {
    return [];
  }
}

/**
 * Records what a real use of the index found, so that /healthz says it without waiting for its
 * next probe: a failing D1 as is; missing tables by probing again (the error names only the first).
 */
export function noteIndexProblem(db: D1Database, problem: IndexProblem, now: number): void {
  if (problem.kind === "unmigrated") probes.delete(db);
  else probes.set(db, { at: now, problem });
}

const warned = new Set<string>();

/**
 * Logs an index failure once per isolate, place and kind (`index_unavailable`), and its end once
 * (`index_recovered`): the API, the dashboard and the alert cron would otherwise log the same
 * missing table on every call. `where` is `api`, `dashboard` or `alerts`.
 */
export function reportIndexProblem(where: string, problem: IndexProblem | undefined): void {
  if (!problem) {
    const ended = [...warned].filter((key) => key.startsWith(`${where}:`));
    if (ended.length === 0) return;
    for (const key of ended) warned.delete(key);
    log("info", "index_recovered", { where });
    return;
  }
  const key = `${where}:${problem.kind}`;
  if (warned.has(key)) return;
  warned.add(key);
  log("warn", "index_unavailable", {
    where,
    kind: problem.kind,
    ...(problem.kind === "unmigrated" ? { missing: problem.missing } : {}),
    error: problem.message,
  });
}

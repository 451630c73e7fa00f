/**
 * The relay-wide side of the API (mounted in routes.ts behind the same token): the conversation
 * index from D1, one conversation's summary from its object, and bulk replays as durable jobs.
 * Each has a data function the dashboard calls too (`conversationsPage`, `conversationSummaryData`,
 * `startReplayJob`, `replayStatus`) and a Response builder for the API; `startReplay` also parses
 * its request's body. The list query's schema is shared with the dashboard's inputs.
 */
import { z } from "zod";
import type { Delivery } from "../conversation/object";
import { conversationStub } from "../conversation-stub";
import { fromBase64, toBase64, utf8 } from "../crypto/encoding";
import { apiError, jsonResponse } from "../http";
import { describeIssue } from "../providers/provider";
import {
  describeRow,
  IndexRow,
  IndexStatus,
  indexDb,
  indexProblemOf,
  listIndex,
  MAX_INDEX_PAGE,
  noteIndexProblem,
  probeIndex,
  reportIndexProblem,
  type IndexProblem,
} from "../ops/conversation-index";
import { parseReplayFilter, type ReplayJobFilter, type ReplayStatus } from "../ops/replay-job";
import { describeFailingRow, failingFor } from "./destinations";
import { parseConversationKey, Receipt } from "../receipt";

export const indexDisabled = () =>
  apiError(503, "index_disabled", "the conversation index is off: bind a D1 database as DB (wrangler.toml, [[d1_databases]]) to turn it on");

/** The index is bound but cannot be used (tables missing, D1 failing): 503 with what to do, never 500. */
export const indexUnavailable = (problem: IndexProblem) => apiError(503, "index_unavailable", problem.message);

/** Thrown where a caller must not go on without the index (a replay job would only fail later). */
export class IndexUnavailableError extends Error {
  constructor(readonly problem: IndexProblem) {
    super(problem.message);
  }
}

/**
 * An API answer that reads the index: 503 `index_disabled` without `DB`, 503 `index_unavailable`
 * when D1 fails (logged once per kind, and shown by /healthz at once), never 500.
 */
export async function withIndex(env: Env, read: (db: D1Database) => Promise<Response>): Promise<Response> {
  const db = indexDb(env);
  if (!db) return indexDisabled();
  try {
    const response = await read(db);
    reportIndexProblem("api", undefined);
    return response;
  } catch (error) {
    const problem = error instanceof IndexUnavailableError ? error.problem : indexProblemOf(error);
    noteIndexProblem(db, problem, Date.now());
    reportIndexProblem("api", problem);
    return indexUnavailable(problem);
  }
}

/** An opaque `cursor` query parameter (encodeCursor), decoded; a failure names it. */
export const Cursor = z
  .string()
  .optional()
  .transform((value, ctx) => {
    if (value === undefined) return undefined;
    const key = decodeCursor(value);
    if (key === undefined) ctx.addIssue({ code: "custom", message: "not a cursor this API returned" });
    return key;
  });

/** Query parameters of GET /v1/conversations. */
export const ListQuery = {
  provider: z.string().min(1).max(64).optional(),
  status: IndexStatus.optional(),
  prefix: z.string().min(1).max(4096).optional(),
  cursor: Cursor,
  limit: z.coerce.number().int().min(1).max(MAX_INDEX_PAGE).optional(),
};

/** The cursor is the last key of the page, base64url: opaque to callers, and safe in a URL. */
export const encodeCursor = (key: string) => toBase64(utf8(key)).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
function decodeCursor(cursor: string): string | undefined {
  const standard = cursor.replaceAll("-", "+").replaceAll("_", "/");
  const bytes = fromBase64(standard.padEnd(Math.ceil(standard.length / 4) * 4, "="));
  if (!bytes) return undefined;
  try {
    const key = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
    return key.length > 0 ? key : undefined;
  } catch {
    return undefined;
  }
}

export type ListParams = z.infer<z.ZodObject<typeof ListQuery>>;

/** A page of the index as the API shows it; `cursor` when more may follow. */
export async function conversationsPage(db: D1Database, params: ListParams) {
  const { rows, next } = await listIndex(db, params, params.limit ?? 100, params.cursor);
  return { conversations: rows.map(describeRow), ...(next !== undefined ? { cursor: encodeCursor(next) } : {}) };
}

export async function listConversations(env: Env, params: ListParams): Promise<Response> {
  return withIndex(env, async (db) => jsonResponse(200, await conversationsPage(db, params)));
}

/** A page of the conversations holding dead letters of one destination, each row with that destination's part. */
export async function destinationDeadLettersPage(db: D1Database, destination: string, params: Omit<ListParams, "status">) {
  const { rows, next } = await failingFor(db, destination, params, params.limit ?? 100, params.cursor);
  return {
    destination,
    conversations: rows.map((row) => describeFailingRow(row, destination)),
    ...(next !== undefined ? { cursor: encodeCursor(next) } : {}),
  };
}

/** The object's outbox is read a page at a time; past this many pages the counts say `complete: false`. */
const MAX_PAGES = 20;
const PAGE = 1000;

/**
 * One conversation from its object: the counts of pending and failed deliveries (the outbox
 * paged; in all and per destination), the last delivery, and the newest receipts each with its
 * delivery to each destination (`deliveries`) and the one that stands for it (`delivery`: a failed
 * one, else a pending one, else the latest delivered). The delivery
 * rows of the newest receipts are read from the end of the table: the index's accepted total (the
 * highest sequence number, lagging by at most an interval) tells where the end is; without it the
 * table is paged from its start.
 */
export async function conversationSummary(env: Env, conversation: string, limit: number): Promise<Response> {
  const summary = await conversationSummaryData(env, conversation, limit);
  if (!summary) return apiError(404, "conversation_not_found", "the relay has never stored a receipt of this conversation");
  return jsonResponse(200, summary);
}

/** What `conversationSummary` answers, as data (the dashboard renders it too); null for a conversation never seen. */
export async function conversationSummaryData(env: Env, conversation: string, limit: number) {
  const stub = conversationStub(env, conversation);
  // Validated rather than inferred through the RPC stub's types (too deep for tsc).
  const receipts = z
    .array(Receipt)
    .nullable()
    .parse(await stub.recent(limit));
  if (!receipts) return null;

  let pending = 0;
  let failed = 0;
  const byDestination: Record<string, { pending: number; failed: number }> = {};
  let oldestFailedAt: string | undefined;
  let lastError: string | undefined;
  let lastFailedAt = "";
  let complete = true;
  for (let after = 0, pages = 0; ; pages++) {
    if (pages === MAX_PAGES) {
      complete = false;
      break;
    }
    const page = (await stub.deliveries(undefined, PAGE, after)) ?? [];
    for (const delivery of page) {
      const counts = (byDestination[delivery.destination] ??= { pending: 0, failed: 0 });
      if (delivery.status === "pending") {
        pending++;
        counts.pending++;
      } else if (delivery.status === "failed") {
        failed++;
        counts.failed++;
        if (delivery.failedAt && (!oldestFailedAt || delivery.failedAt < oldestFailedAt)) oldestFailedAt = delivery.failedAt;
        if ((delivery.failedAt ?? "") >= lastFailedAt) {
          lastFailedAt = delivery.failedAt ?? "";
          lastError = delivery.lastError ?? "";
        }
      }
    }
    // A page holds whole receipts (every destination of each), PAGE deliveries or a few more.
    if (page.length < PAGE) break;
    after = page[page.length - 1]!.seq;
  }

  // Only a hint: without it (no index, or one that fails) the outbox is paged from its start.
  const db = indexDb(env);
  const indexed = db
    ? await db
        .prepare("SELECT * FROM conversations WHERE key = ?")
        .bind(conversation)
        .first()
        .catch(() => null)
    : null;
  const hint = indexed ? (IndexRow.safeParse(indexed).data?.accepted ?? 0) : 0;
  const tail = new Map<string, Delivery[]>();
  let accepted = 0;
  let lastDelivery: Delivery | undefined;
  for (let after = Math.max(0, hint - limit), pages = 0; pages < MAX_PAGES; pages++) {
    const page = (await stub.deliveries("all", PAGE, after)) ?? [];
    for (const delivery of page) {
      const list = tail.get(delivery.receiptId);
      if (list) list.push(delivery);
      else tail.set(delivery.receiptId, [delivery]);
      accepted = Math.max(accepted, delivery.seq);
      if (delivery.deliveredAt && (!lastDelivery?.deliveredAt || delivery.deliveredAt >= lastDelivery.deliveredAt)) lastDelivery = delivery;
    }
    if (page.length < PAGE) break;
    after = page[page.length - 1]!.seq;
  }

  return {
    conversation,
    ...parseConversationKey(conversation),
    accepted,
    deliveries: { pending, failed, ...(complete ? {} : { complete: false }), byDestination },
    ...(oldestFailedAt ? { oldestFailedAt } : {}),
    ...(lastError !== undefined ? { lastError } : {}),
    ...(lastDelivery ? { lastDeliveredAt: lastDelivery.deliveredAt, lastLatencyMs: lastDelivery.latencyMs } : {}),
    receipts: receipts.map((receipt) => {
      const deliveries = (tail.get(receipt.id) ?? []).map(describeDelivery);
      return { ...receipt, delivery: headline(deliveries), deliveries };
    }),
  };
}

/** One receipt's delivery to one destination, as a conversation's summary shows it. */
function describeDelivery(delivery: Delivery) {
  return {
    destination: delivery.destination,
    status: delivery.status,
    attempts: delivery.attempts,
    attemptLog: delivery.attemptLog,
    ...(delivery.lastStatus !== undefined ? { lastStatus: delivery.lastStatus } : {}),
    ...(delivery.lastError !== undefined ? { lastError: delivery.lastError } : {}),
    ...(delivery.deliveredAt ? { deliveredAt: delivery.deliveredAt, latencyMs: delivery.latencyMs } : {}),
    ...(delivery.failedAt ? { failedAt: delivery.failedAt } : {}),
    ...(delivery.nextAttemptAt && delivery.status === "pending" ? { nextAttemptAt: delivery.nextAttemptAt } : {}),
  };
}
export type SummaryDelivery = ReturnType<typeof describeDelivery>;

/** Which of a receipt's deliveries stands for it in `delivery`: a failed one first, then a pending one, then the latest delivered; null for none. */
const RANK: Record<Delivery["status"], number> = { failed: 0, pending: 1, delivered: 2, skipped: 3 };
function headline(deliveries: SummaryDelivery[]): SummaryDelivery | null {
  let best: SummaryDelivery | null = null;
  for (const delivery of deliveries) {
    if (!best || RANK[delivery.status] < RANK[best.status]) best = delivery;
    else if (delivery.status === "delivered" && best.status === "delivered" && (delivery.deliveredAt ?? "") > (best.deliveredAt ?? "")) best = delivery;
  }
  return best;
}
export type ConversationSummary = NonNullable<Awaited<ReturnType<typeof conversationSummaryData>>>;

const replayStub = (env: Env, id: string) => env.REPLAYS.get(env.REPLAYS.idFromName(id));
const ReplayId = z.uuid();

export async function startReplay(env: Env, request: Request): Promise<Response> {
  const db = indexDb(env);
  if (!db) return indexDisabled();
  let body: unknown;
  try {
    const text = await request.text();
    body = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    return apiError(
      400,
      "invalid_body",
      'the body must be JSON: { "provider"?: string, "prefix"?: string, "destination"?: string } or { "delivered": { "conversation"?: string, "since"?: ISO-8601, "until"?: ISO-8601 }, "destination"?: string }',
    );
  }
  const filter = parseReplayFilter(body);
  if (!filter.success) return apiError(400, "invalid_body", describeIssue(filter.error.issues));
  return withIndex(env, async () => {
    const status = await startReplayJob(env, filter.data);
    return jsonResponse(202, status, { location: `/v1/replays/${status.id}` });
  });
}

/**
 * Creates a replay job under a fresh id; the caller has checked that the index (DB) is bound.
 * Throws IndexUnavailableError when the index cannot be read (the job would fail in its alarm).
 */
export async function startReplayJob(env: Env, filter: ReplayJobFilter): Promise<ReplayStatus> {
  const db = indexDb(env);
  const problem = db ? await probeIndex(db, Date.now()) : undefined;
  if (problem) throw new IndexUnavailableError(problem);
  const id = crypto.randomUUID();
  return replayStub(env, id).start(id, filter);
}

export async function replayProgress(env: Env, id: string): Promise<Response> {
  const status = await replayStatus(env, id);
  return status ? jsonResponse(200, status) : apiError(404, "replay_not_found", "no replay with this id");
}

/** A replay job's progress; null for an id that is not a job's. */
export async function replayStatus(env: Env, id: string): Promise<ReplayStatus | null> {
  if (!ReplayId.safeParse(id).success) return null;
  return replayStub(env, id).progress();
}

/**
 * What the pages show, read in-process from the same functions the API uses (src/queries, never
 * over HTTP): the D1 index and stats, the alert state, and a conversation's object.
 */
import { z } from "zod";
import type { Delivery } from "../conversation/outbox";
import { ReadsPage } from "../conversation/read-state";
import { conversationStub } from "../conversation-stub";
import { healthOf } from "../health";
import { readAlertState } from "../ops/alerts";
import { indexDb } from "../ops/conversation-index";
import { relayStats, type StatsWindow } from "../ops/stats";
import { conversationSummary } from "../queries/conversation-summary";
import { MAX_LIVE_CONVERSATIONS } from "./inputs";
import { load } from "./load";
import type { ConversationData } from "./pages/conversation";
import type { OverviewData } from "./pages/overview";

/** Rows per page of the conversations and dead-letters tables. */
export const INDEX_PAGE = 50;
/** Deliveries listed per outbox status on a conversation's page. */
export const OUTBOX_LIST = 100;

const KeyRow = z.object({ key: z.string() });

/**
 * The keys of the conversations with the latest receipts, newest first (the index's
 * `last_receipt_at`, so as recent as the index: docs/dashboard.md, "Where the figures come from").
 * No index covers `last_receipt_at`: this scans the table, as the stats beside it on the overview do.
 */
export async function recentlyActiveKeys(db: D1Database, limit: number): Promise<string[]> {
  const result = await db
    .prepare("SELECT key FROM conversations WHERE last_receipt_at IS NOT NULL ORDER BY last_receipt_at DESC, key LIMIT ?")
    .bind(limit)
    .all();
  return result.results.map((row) => KeyRow.parse(row).key);
}

export async function loadOverview(env: Env, now: number): Promise<OverviewData> {
  const health = await healthOf(env, now);
  const db = indexDb(env);
  // Unbound or unusable (health.index says why, at the top of the page): no read that would only fail.
  if (!db || health.index.state !== "on") return { health };
  const stats = (window: StatsWindow) => load(`the ${window} stats`, () => relayStats(db, window, now));
  const [hour, day, alertState, recent] = await Promise.all([
    stats("1h"),
    stats("24h"),
    load("the alert state", () => readAlertState(db)),
    load("the most recently active conversations", () => recentlyActiveKeys(db, MAX_LIVE_CONVERSATIONS)),
  ]);
  return { health, index: { hour, day, alertState, recent } };
}

/** Readers per page of a conversation's read state (docs/design.md, "Bounds"). */
export const READS_PAGE = 100;

/** `readsAfter`: the reader the previous page of read state ended with (`?readers=` cursor). */
export async function loadConversation(env: Env, conversation: string, recentLimit: number, readsAfter?: string): Promise<ConversationData> {
  const stub = conversationStub(env, conversation);
  const [summary, reads, pending, failed] = await Promise.all([
    conversationSummary(env, conversation, recentLimit),
    // Validated rather than inferred through the RPC stub's types (too deep for tsc).
    stub.readStates(READS_PAGE, readsAfter).then((page) => ReadsPage.nullable().parse(page)),
    stub.deliveries("pending", OUTBOX_LIST, 0),
    stub.deliveries("failed", OUTBOX_LIST, 0),
  ]);
  const deliveries = (list: Delivery[] | null): Delivery[] => list ?? [];
  return {
    conversation,
    summary,
    reads: reads ?? { reads: [], readers: 0 },
    ...(readsAfter !== undefined ? { readsAfter } : {}),
    outbox: { pending: deliveries(pending), failed: deliveries(failed) },
    outboxLimit: OUTBOX_LIST,
  };
}

export const Requeued = z.object({ requeued: z.number() }).nullable();

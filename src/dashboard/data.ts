/**
 * What the pages show, read in-process from the same functions the API uses (never over HTTP):
 * the D1 index and stats, the alert state, and a conversation's object.
 */
import { z } from "zod";
import { conversationsPage, conversationSummaryData } from "../api/conversations";
import type { Delivery } from "../conversation/outbox";
import { ReadState } from "../conversation/read-state";
import { conversationStub } from "../conversation/stub";
import { healthOf } from "../health";
import { readAlertState } from "../ops/alerts";
import { indexDb } from "../ops/conversation-index";
import { relayStats, type StatsWindow } from "../ops/stats";
import { MAX_LIVE_CONVERSATIONS } from "./inputs";
import { load } from "./load";
import type { ConversationData } from "./pages/conversation";
import type { OverviewData } from "./pages/overview";

export type ConversationsPage = Awaited<ReturnType<typeof conversationsPage>>;

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
  const health = healthOf(env);
  const db = indexDb(env);
  if (!db) return { health };
  const stats = (window: StatsWindow) => load(`the ${window} stats`, () => relayStats(db, window, now));
  const [hour, day, alertState, recent] = await Promise.all([
    stats("1h"),
    stats("24h"),
    load("the alert state", () => readAlertState(db)),
    load("the most recently active conversations", () => recentlyActiveKeys(db, MAX_LIVE_CONVERSATIONS)),
  ]);
  return { health, index: { hour, day, alertState, recent } };
}

const Reads = z.array(ReadState).nullable();

export async function loadConversation(env: Env, conversation: string, recentLimit: number): Promise<ConversationData> {
  const stub = conversationStub(env, conversation);
  const [summary, reads, pending, failed] = await Promise.all([
    conversationSummaryData(env, conversation, recentLimit),
    // Validated rather than inferred through the RPC stub's types (too deep for tsc).
    stub.readStates().then((states) => Reads.parse(states)),
    stub.deliveries("pending", OUTBOX_LIST, 0),
    stub.deliveries("failed", OUTBOX_LIST, 0),
  ]);
  const deliveries = (list: Delivery[] | null): Delivery[] => list ?? [];
  return { conversation, summary, reads: reads ?? [], outbox: { pending: deliveries(pending), failed: deliveries(failed) }, outboxLimit: OUTBOX_LIST };
}

export const Requeued = z.object({ requeued: z.number() }).nullable();

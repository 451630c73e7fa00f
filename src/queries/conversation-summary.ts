/**
 * One conversation from its object, which is the truth (GET /v1/conversations/<conversation>, the
 * dashboard's conversation page): counts of pending and failed deliveries (in all and per
 * destination), the oldest dead letter and the latest one's error, the last delivery, and the
 * newest receipts each with its delivery to each destination (`deliveries`) and the one that
 * stands for it (`delivery`). The object answers it in one call from its counts
 * (src/conversation/outbox.ts, `summary`), so the figures are exact however large the outbox.
 */
import { type Delivery, OutboxSummary } from "../conversation/outbox";
import { conversationStub } from "../conversation-stub";
import { parseConversationKey, Receipt } from "../receipt";
import { isoFromMillis } from "../time";

/** The summary, as data; null for a conversation never seen. `limit`: receipts listed, newest first. */
export async function conversationSummary(env: Env, conversation: string, limit: number) {
  // Validated rather than inferred through the RPC stub's types (too deep for tsc).
  const summary = OutboxSummary.nullable().parse(await conversationStub(env, conversation).summary(limit));
  if (!summary) return null;
  let pending = 0;
  let failed = 0;
  // Destinations with nothing owed are left out, as when the counts were read from the outbox's rows.
  const byDestination: Record<string, { pending: number; failed: number }> = {};
  for (const [name, counts] of Object.entries(summary.destinations)) {
    pending += counts.pending;
    failed += counts.failed;
    if (counts.pending > 0 || counts.failed > 0) byDestination[name] = counts;
  }
  const { lastDelivery } = summary;
  return {
    conversation,
    ...parseConversationKey(conversation),
    accepted: summary.accepted,
    deliveries: { pending, failed, byDestination },
    ...(summary.oldestFailedAt !== undefined ? { oldestFailedAt: isoFromMillis(summary.oldestFailedAt) } : {}),
    ...(summary.lastError !== undefined ? { lastError: summary.lastError } : {}),
    ...(lastDelivery ? { lastDeliveredAt: isoFromMillis(lastDelivery.at), lastLatencyMs: lastDelivery.latencyMs } : {}),
    receipts: summary.newest.map(({ body, deliveries }) => {
      const described = deliveries.map(describeDelivery);
      return { ...Receipt.parse(JSON.parse(body)), delivery: headline(described), deliveries: described };
    }),
  };
}
export type ConversationSummary = NonNullable<Awaited<ReturnType<typeof conversationSummary>>>;

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

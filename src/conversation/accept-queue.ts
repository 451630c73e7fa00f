/**
 * How a receipt is stored (docs/design.md, "A burst into one conversation"): into its
 * conversation's object, coalesced with the isolate's concurrent stores into the same conversation
 * (accept-batch.ts); when the object cannot take it (overloaded, unreachable, failing), into the
 * accept queue (the optional `ACCEPT_QUEUE` binding, a Cloudflare Queue), and the provider is
 * answered only once the queue has it. The queue's consumer (`drainAcceptQueue`, the Worker's
 * `queue` handler) stores each batch in the objects later: grouped per conversation, in message
 * order, one `acceptMany` per conversation. Without the binding, or when the queue fails too, the
 * store throws and the provider is answered 503 (which Easemob, Stream and Sendbird retry).
 */
import { z } from "zod";
import { log } from "../log";
import { Receipt } from "../receipt";
import { AcceptBatcher, MAX_ACCEPT_BATCH, type AcceptMany } from "./accept-batch";
import type { AcceptResult } from "./object";
import { conversationStub } from "../conversation-stub";

/** A queued message's body: JSON, validated when drained (a deploy may change the receipt's shape). */
export const QueuedReceipt = z.object({ receipt: Receipt });
export type QueuedReceipt = z.infer<typeof QueuedReceipt>;

/**
 * Longest wait before a batch that failed is delivered again (the first waits 2 s, doubling): with
 * wrangler.toml's `max_retries = 100`, a message outlasts about 3.7 days of a refusing object
 * before it moves to the dead-letter queue, whose consumer (this handler too) tries as long again.
 */
const MAX_RETRY_DELAY_SECONDS = 3600;
/** wrangler.toml's dead-letter queue of the accept queue (consumed by the same handler). */
export const ACCEPT_DEAD_LETTER_QUEUE = "receipt-relay-accept-dlq";

/** What storing needs: the conversation objects and, when bound (wrangler.toml, `[[queues.producers]]`), the accept queue. */
export type StoreEnv = Pick<Env, "CONVERSATION"> & { ACCEPT_QUEUE?: { send(body: QueuedReceipt, options?: QueueSendOptions): Promise<unknown> } };
/** Sends a batch of one conversation's receipts to its object (tests hand in one that refuses). */
export type SendTo = (conversation: string) => AcceptMany;
const toObject =
  (env: StoreEnv): SendTo =>
  (conversation) =>
  (receipts) =>
    conversationStub(env, conversation).acceptMany(receipts);

/** Durable Objects mark an overloaded object's refusals (`.overloaded`) and transient failures (`.retryable`). */
const ObjectError = z.object({ overloaded: z.boolean().optional(), retryable: z.boolean().optional() });
const kindOf = (error: unknown): "overloaded" | "retryable" | "other" => {
  const flags = ObjectError.safeParse(error).data;
  return flags?.overloaded ? "overloaded" : flags?.retryable ? "retryable" : "other";
};

const batcher = new AcceptBatcher();

/**
 * Stores a receipt: "accepted" or "duplicate" from its conversation's object, or "accepted" once
 * the accept queue holds it (its duplicate check happens when it is drained). Throws when neither
 * has it. Every error of the object goes to the queue, not only `.overloaded` and `.retryable`
 * ones: an error after the commit (the alarm's arming) leaves a copy that is drained as a duplicate.
 */
export async function storeReceipt(env: StoreEnv, receipt: Receipt, sendTo: SendTo = toObject(env)): Promise<AcceptResult> {
  try {
    return await batcher.store(receipt, sendTo(receipt.conversation));
  } catch (error) {
    const queue = env.ACCEPT_QUEUE;
    const details = { conversation: receipt.conversation, receiptId: receipt.id, kind: kindOf(error), error: String(error) };
    if (!queue) throw error;
    try {
      await queue.send({ receipt }, { contentType: "json" });
    } catch (queueError) {
      log("error", "accept_queue_failed", { ...details, queueError: String(queueError) });
      throw error;
    }
    log("warn", "accept_queued", details);
    return "accepted";
  }
}

/**
 * The `queue` handler: stores a batch of queued receipts in their objects. Per conversation, in
 * message order, in calls of at most MAX_ACCEPT_BATCH; conversations side by side. A message is
 * acknowledged only once its call committed; when a call fails, that message and the later ones
 * of its conversation are delivered again after a back-off (the object's duplicate check makes a
 * repeat harmless). A body that is not a queued receipt is retried too, so that, past the
 * consumer's `max_retries`, the dead-letter queue keeps it for an operator.
 */
export async function drainAcceptQueue(batch: MessageBatch<unknown>, env: StoreEnv, sendTo: SendTo = toObject(env)): Promise<void> {
  const byConversation = new Map<string, { message: Message<unknown>; receipt: Receipt }[]>();
  for (const message of batch.messages) {
    const parsed = QueuedReceipt.safeParse(message.body);
    if (!parsed.success) {
      log("error", "accept_queue_invalid", { messageId: message.id, attempts: message.attempts, problem: parsed.error.issues[0]?.message ?? "" });
      message.retry({ delaySeconds: retryDelay(message.attempts) });
      continue;
    }
    const { receipt } = parsed.data;
    const group = byConversation.get(receipt.conversation) ?? [];
    group.push({ message, receipt });
    byConversation.set(receipt.conversation, group);
  }
  await Promise.all(
    [...byConversation].map(async ([conversation, items]) => {
      for (let from = 0; from < items.length; from += MAX_ACCEPT_BATCH) {
        const chunk = items.slice(from, from + MAX_ACCEPT_BATCH);
        try {
          const results = await sendTo(conversation)(chunk.map((item) => item.receipt));
          for (const item of chunk) item.message.ack();
          log("info", "accept_queue_drained", {
            queue: batch.queue,
            conversation,
            receipts: chunk.length,
            duplicates: results.filter((result) => result === "duplicate").length,
          });
        } catch (error) {
          // In order: none of this conversation's later messages is stored before this one.
          for (const item of items.slice(from)) item.message.retry({ delaySeconds: retryDelay(item.message.attempts) });
          // On the dead-letter queue a receipt has waited days already: an error an operator must see.
          const level = batch.queue === ACCEPT_DEAD_LETTER_QUEUE ? "error" : "warn";
          log(level, "accept_queue_retry", { queue: batch.queue, conversation, receipts: items.length - from, kind: kindOf(error), error: String(error) });
          return;
        }
      }
    }),
  );
}

/** 2 s after the first delivery, doubling, at most MAX_RETRY_DELAY_SECONDS (`attempts` counts from 1). */
const retryDelay = (attempts: number) => Math.min(2 ** Math.max(1, attempts), MAX_RETRY_DELAY_SECONDS);

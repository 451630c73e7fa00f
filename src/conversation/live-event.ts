/**
 * The live tail's events (docs/dashboard.md, "Live tail"): the conversation's object sends them
 * (live-tail.ts) and the dashboard's browser script reads them (src/dashboard/browser/tail.ts), both
 * typed from this one schema. The script bundles this module, so it imports zod/mini (what it uses
 * adds about 9 KB gzipped; zod's classic API would add 100 KB) and nothing that needs the Workers runtime.
 */
import * as z from "zod/mini";

/** What came of one delivery attempt (the same four as the delivery metrics, src/ops/metrics.ts). */
export const DeliveryOutcome = z.enum(["delivered", "retry", "give_up", "dead_letter"]);
export type DeliveryOutcome = z.infer<typeof DeliveryOutcome>;

/**
 * An accepted receipt as far as the pages read it. The object sends the whole Receipt
 * (src/receipt.ts); its other fields are not checked, and left out of what a parse returns, so the
 * script need not bundle that schema.
 */
export const LiveReceipt = z.object({
  id: z.string(),
  event: z.string(),
  readAt: z.string(),
  readers: z.array(z.string()),
  messages: z.array(z.object({ id: z.optional(z.string()), seq: z.optional(z.number()) })),
  upTo: z.optional(z.object({ seq: z.optional(z.number()), time: z.optional(z.string()) })),
});
export type LiveReceipt = z.infer<typeof LiveReceipt>;

/** The greeting of a new viewer: the socket is live. */
export const HelloEvent = z.object({ type: z.literal("hello"), conversation: z.string(), at: z.string() });
export type HelloEvent = z.infer<typeof HelloEvent>;

/** A receipt the object accepted (a duplicate sends nothing). */
export const ReceiptEvent = z.object({ type: z.literal("receipt"), seq: z.number(), acceptedAt: z.string(), receipt: LiveReceipt });
export type ReceiptEvent = z.infer<typeof ReceiptEvent>;

/** One delivery attempt of some receipts to one destination. */
export const DeliveryEvent = z.object({
  type: z.literal("delivery"),
  destination: z.string(),
  // At least one: the pages key the event's row on the first.
  receiptIds: z.array(z.string()).check(z.minLength(1)),
  outcome: DeliveryOutcome,
  status: z.optional(z.number()),
  error: z.optional(z.string()),
  ms: z.number(),
  attempt: z.number(),
  at: z.string(),
});
export type DeliveryEvent = z.infer<typeof DeliveryEvent>;

/** Dead letters put back in the outbox (a retry from the dashboard or the API). */
export const RequeuedEvent = z.object({ type: z.literal("requeued"), count: z.number(), at: z.string() });
export type RequeuedEvent = z.infer<typeof RequeuedEvent>;

// A plain union: the four `type`s exclude each other, so it parses as discriminatedUnion would, and
// leaves 3 KB of zod out of the browser script.
export const LiveEvent = z.union([HelloEvent, ReceiptEvent, DeliveryEvent, RequeuedEvent]);
export type LiveEvent = z.infer<typeof LiveEvent>;

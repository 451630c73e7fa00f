/** What the test origin and the tests that script it share (no Node imports: workerd reads it too). */
import { z } from "zod";

/** One answer of the origin: a status (optionally late, with headers), or a dropped connection. */
export const Step = z.union([
  z.object({
    status: z.number().int(),
    retryAfter: z.string().optional(),
    /** Wait this long before answering (longer than FORWARD_TIMEOUT_MS makes a timeout). */
    delayMs: z.number().optional(),
    /** Answer only when the test says so (`release` in origin-control.ts), not after a wall-clock hold. */
    hold: z.literal(true).optional(),
    /** A Location header, for redirects. */
    location: z.string().optional(),
  }),
  /** Hang up without answering: the relay sees a network error, as when the origin is down. */
  z.object({ refuse: z.literal(true) }),
]);
export type Step = z.infer<typeof Step>;

/**
 * A second secret the origin also verifies with, for FORWARD_SECRET rotation: a delivery signed
 * with both the test secret and this one verifies with each of them on its own.
 */
export const ROTATED_FORWARD_SECRET = "whsec_cm90YXRlZC1mb3J3YXJkLXNlY3JldC0zMi1ieXRlcyE=";

export const Attempt = z.object({
  id: z.string(),
  conversation: z.string(),
  /** What the origin answered; 0 while it has not answered yet, and for good when the relay hung up
   * first (its timeout) or the origin hung up on purpose (a `refuse` step). */
  status: z.number(),
  /** The origin hung up on purpose (a `refuse` step). */
  refused: z.boolean(),
  verified: z.boolean(),
  /** The secrets, of those the origin knows, that each verify this delivery's signature on their own. */
  verifiedWith: z.array(z.string()),
  /** How many signatures the webhook-signature header carried. */
  signatures: z.number(),
  at: z.number(),
  method: z.string(),
  path: z.string(),
  /** The verified body's `data`: the normalized receipt (or, for a batch, the receipts). */
  data: z.unknown().optional(),
  /** The receipts it carried, in order: one, or a batch's. */
  receiptIds: z.array(z.string()),
  batch: z.boolean(),
});
export type Attempt = z.infer<typeof Attempt>;

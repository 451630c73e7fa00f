/** What the test origin and the tests that script it share (no Node imports: workerd reads it too). */
import { z } from "zod";

export const Step = z.object({
  status: z.number().int(),
  retryAfter: z.string().optional(),
  /** Wait this long before answering (longer than FORWARD_TIMEOUT_MS makes a timeout). */
  delayMs: z.number().optional(),
  /** A Location header, for redirects. */
  location: z.string().optional(),
});
export type Step = z.infer<typeof Step>;

export interface Attempt {
  id: string;
  conversation: string;
  /** What the origin answered; 0 when the relay had hung up before the answer. */
  status: number;
  verified: boolean;
  at: number;
  method: string;
  path: string;
  /** The verified body's `data`: the normalized receipt. */
  data?: unknown;
}

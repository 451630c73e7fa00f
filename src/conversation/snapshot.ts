/** The KV read model: what the object publishes about a conversation, and the dead-letter index. */
import { z } from "zod";
import { Receipt } from "../receipt";
import { ReadState } from "./read-state";

export const Snapshot = z.object({
  conversation: z.string(),
  updatedAt: z.string(),
  /** Newest first, at most RECENT_LIMIT. */
  receipts: z.array(Receipt),
  reads: z.array(ReadState),
  deliveries: z.object({ pending: z.number(), failed: z.number() }),
});
export type Snapshot = z.infer<typeof Snapshot>;

export const DeadLetterEntry = z.object({
  conversation: z.string(),
  failed: z.number(),
  oldestFailedAt: z.string(),
  lastError: z.string(),
});
export type DeadLetterEntry = z.infer<typeof DeadLetterEntry>;

/** Stored as the KV key's metadata, so that listing the index needs no further reads. */
export const DeadLetterMetadata = DeadLetterEntry.pick({ failed: true, oldestFailedAt: true });

export const snapshotKey = (conversation: string) => `conversations/${conversation}`;
export const DEAD_LETTER_PREFIX = "dead-letters/";
export const deadLetterKey = (conversation: string) => `${DEAD_LETTER_PREFIX}${conversation}`;

/** The KV read model: what the object publishes about a conversation. */
import { z } from "zod";
import { utf8 } from "../crypto/encoding";
import { sha256Hex } from "../crypto/hash";
import { Receipt } from "../receipt";
import { ReadState } from "./read-state";

export const Snapshot = z.object({
  conversation: z.string(),
  updatedAt: z.string(),
  /** Newest first, at most RECENT_LIMIT. */
  receipts: z.array(Receipt),
  /** In reader order: every reader, or when `readsTruncated`, the newest by `lastReadAt` (publisher.ts, MAX_SNAPSHOT_READERS). */
  reads: z.array(ReadState),
  /** How many readers the conversation has; absent in snapshots written before the bound. */
  readers: z.number().optional(),
  readsTruncated: z.boolean().optional(),
  /** Over every destination, and per destination (absent in snapshots written before destinations). */
  deliveries: z.object({
    pending: z.number(),
    failed: z.number(),
    destinations: z.record(z.string(), z.object({ pending: z.number(), failed: z.number() })).optional(),
  }),
});
export type Snapshot = z.infer<typeof Snapshot>;

export const SNAPSHOT_PREFIX = "conversations/";
/**
 * Before the D1 index (migrations/0001), each conversation with dead letters had a KV entry here.
 * Nothing writes or reads them now; the key stays only so that a conversation's object can delete
 * its old entry once (`publishToKv`).
 */
const DEAD_LETTER_PREFIX = "dead-letters/";
/** KV's limit on a key's length. */
const MAX_KV_KEY_BYTES = 512;

/**
 * `<prefix><conversation>`, or for a conversation too long for a KV key, `<prefix>#<sha-256>`
 * (conversation keys start with a provider's name, so they never start with `#`).
 */
async function kvKey(prefix: string, conversation: string): Promise<string> {
  const plain = `${prefix}${conversation}`;
  if (utf8(plain).length <= MAX_KV_KEY_BYTES) return plain;
  return `${prefix}#${await sha256Hex(conversation)}`;
}

export const snapshotKey = (conversation: string) => kvKey(SNAPSHOT_PREFIX, conversation);
export const deadLetterKey = (conversation: string) => kvKey(DEAD_LETTER_PREFIX, conversation);

/** The one normalized receipt every provider's callback becomes: stored, snapshotted and forwarded. */
import { z } from "zod";

export const providerNames = ["easemob", "tencent", "openim", "stream", "sendbird", "talkjs", "whatsapp", "messenger", "instagram"] as const;
export const ProviderName = z.enum(providerNames);
export type ProviderName = z.infer<typeof ProviderName>;

const isoTime = z.iso.datetime();

/**
 * A provider's JSON body, kept as received and never read by the relay. Values are `any` rather
 * than `unknown` only so that the receipt's type survives the RPC boundary's type mapping.
 */
export const JsonObject = z.record(z.string(), z.any());
export type JsonObject = z.infer<typeof JsonObject>;

export const ReadMessage = z.object({
  id: z.string().optional(),
  seq: z.number().optional(),
  readCount: z.number().optional(),
  unreadCount: z.number().optional(),
  readers: z.array(z.string()).optional(),
});
export type ReadMessage = z.infer<typeof ReadMessage>;

export const Receipt = z.object({
  id: z.string().min(1),
  provider: ProviderName,
  event: z.string().min(1),
  app: z.string().min(1),
  chat: z.enum(["single", "group"]),
  conversation: z.string().min(1),
  readers: z.array(z.string()),
  peer: z.string().optional(),
  group: z.string().optional(),
  messages: z.array(ReadMessage),
  upTo: z.object({ time: isoTime.optional(), seq: z.number().optional() }).optional(),
  readAt: isoTime,
  unreadTotal: z.number().optional(),
  platform: z.string().optional(),
  receivedAt: isoTime,
  raw: JsonObject,
  /** What the relay left out of `readers` and `messages` to stay within their bounds (`raw` keeps it all). */
  truncated: z.object({ readers: z.number().int().positive().optional(), messages: z.number().int().positive().optional() }).optional(),
});
export type Receipt = z.infer<typeof Receipt>;

/*
 * Bounds on what one callback may make (docs/design.md, "Bounds"), enforced for every provider in
 * `src/ingest.ts`, not in this schema: receipts stored before a bound existed must still parse.
 */

/** Readers named in one receipt: each becomes a read-state row. Sendbird's own cap, and above any single read report. */
export const MAX_READERS_PER_RECEIPT = 1000;
/** Messages named in one receipt. */
export const MAX_MESSAGES_PER_RECEIPT = 1000;
/**
 * Seen ids are kept this long for deduplication (providers retry within seconds; Easemob once), so
 * a resend within it is a duplicate (src/conversation/outbox.ts keeps them, at most DEDUP_MAX_IDS).
 */
export const DEDUP_WINDOW_MS = 48 * 3600 * 1000;
/** How far ahead of the relay's clock a provider's event time may be. */
export const MAX_FUTURE_SKEW_MS = 5 * 60 * 1000;
/**
 * How old a signed event may be. An accepted receipt's id is kept at least DEDUP_WINDOW_MS after
 * it was accepted, and its event time was at most MAX_FUTURE_SKEW_MS ahead then: so any resend
 * that passes this check comes while the id is still known (47 h 55 min).
 */
export const MAX_EVENT_AGE_MS = DEDUP_WINDOW_MS - MAX_FUTURE_SKEW_MS;

/**
 * The receipt within MAX_READERS_PER_RECEIPT and MAX_MESSAGES_PER_RECEIPT: the first readers and
 * the last messages kept, and what was left out counted in `truncated`. A message's own readers
 * keep only the readers kept. Truncating rather than refusing: Tencent and OpenIM never retry,
 * no provider retries a 4xx, and `raw` still holds the whole body for the origin.
 */
export function withinBounds(receipt: Receipt): Receipt {
  const readers = receipt.readers.slice(0, MAX_READERS_PER_RECEIPT);
  // The last messages: lists run oldest first (OpenIM's seqs sorted, Tencent's MsgSeq as sent), and the newest move read state.
  const messages = receipt.messages.slice(Math.max(0, receipt.messages.length - MAX_MESSAGES_PER_RECEIPT));
  const droppedReaders = receipt.readers.length - readers.length;
  const droppedMessages = receipt.messages.length - messages.length;
  if (droppedReaders === 0 && droppedMessages === 0) return receipt;
  const kept = new Set(readers);
  return {
    ...receipt,
    readers,
    messages:
      droppedReaders === 0
        ? messages
        : messages.map((message) => (message.readers ? { ...message, readers: message.readers.filter((reader) => kept.has(reader)) } : message)),
    truncated: { ...(droppedReaders > 0 ? { readers: droppedReaders } : {}), ...(droppedMessages > 0 ? { messages: droppedMessages } : {}) },
  };
}

/** Conversation keys: `provider:app:u:userA:userB` (sorted) or `provider:app:g:group`, each part
 * percent-encoded so that no part can contain the separator and the key is path-safe. */
export function singleConversationKey(provider: ProviderName, app: string, userA: string, userB: string): string {
  const [first, second] = userA <= userB ? [userA, userB] : [userB, userA];
  return [provider, app, "u", first, second].map(encodeURIComponent).join(":");
}

export function groupConversationKey(provider: ProviderName, app: string, group: string): string {
  return [provider, app, "g", group].map(encodeURIComponent).join(":");
}

/** For group reads whose group the provider does not name (OpenIM): one stream per reader. */
export function readerConversationKey(provider: ProviderName, app: string, reader: string): string {
  return [provider, app, "r", reader].map(encodeURIComponent).join(":");
}

/** A key part as written: a part that is not valid percent-encoding (a key not made here) is kept as is. */
function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/**
 * Provider, app and chat kind read back from a conversation key (docs/design.md, "Conversation
 * keys"): `r` keys are group reads. Lenient, for keys from storage or a URL: missing parts are "".
 */
export function parseConversationKey(key: string): { provider: string; app: string; chat: "single" | "group" | "unknown" } {
  const [provider = "", app = "", kind = ""] = key.split(":");
  const chat = kind === "u" ? "single" : kind === "g" || kind === "r" ? "group" : "unknown";
  return { provider: decodePart(provider), app: decodePart(app), chat };
}

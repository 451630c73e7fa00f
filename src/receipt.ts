/** The one normalized receipt every provider's callback becomes: stored, snapshotted and forwarded. */
import { z } from "zod";

export const providerNames = ["easemob", "tencent", "openim", "stream", "sendbird"] as const;
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
});
export type Receipt = z.infer<typeof Receipt>;

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

/** Milliseconds since the epoch to ISO-8601 UTC. */
export function isoFromMillis(millis: number): string {
  return new Date(millis).toISOString();
}

/**
 * Instagram messaging: `messaging_seen` (`object: "instagram"`, `entry[].messaging[].read.mid`):
 * the user (`sender`) has seen the message `mid` sent by the professional account (`recipient`).
 * Other messaging events are counted and ignored. Meta's envelope, signature and handshake:
 * meta.ts. Facts and sources: docs/providers/instagram.md.
 */
import { z } from "zod";
import { singleConversationKey } from "../receipt";
import { isoFromMillis } from "../time";
import { identityId } from "./provider";
import { MessageId, messagingProvider } from "./meta";

export const instagram = messagingProvider({
  name: "instagram",
  object: "instagram",
  allowSetting: "INSTAGRAM_ACCOUNT_IDS",
  allowWhat: "Instagram account id",
  read: z.looseObject({ mid: MessageId }),
  samples: [{ label: "messaging_seen", fixture: "instagram-messaging_seen" }],
  freshRead: ({ message }) => ({ mid: `mid.${message}` }),
  async toReceipt({ account, reader, timestamp, read, raw }, receivedAt) {
    return {
      // One receipt per reader and message: a resend is a duplicate.
      id: await identityId("instagram", [account, reader, read.mid]),
      provider: "instagram",
      event: "messaging_seen",
      app: account,
      chat: "single",
      conversation: singleConversationKey("instagram", account, account, reader),
      readers: [reader],
      peer: account,
      messages: [{ id: read.mid }],
      readAt: isoFromMillis(timestamp),
      receivedAt,
      raw,
    };
  },
});

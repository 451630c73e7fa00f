/**
 * Messenger Platform: `message_reads` (`object: "page"`, `entry[].messaging[].read.watermark`):
 * everything the page sent at or before the watermark has been read by the user (`sender`). A
 * "read up to" receipt, like Tencent's `C2C.CallbackAfterMsgReport`. Other messaging events are
 * counted and ignored. Meta's envelope, signature and handshake: meta.ts. Facts and sources:
 * docs/providers/messenger.md.
 */
import { z } from "zod";
import { singleConversationKey } from "../receipt";
import { isoFromMillis } from "../time";
import { identityId } from "./provider";
import { messagingProvider, Millis } from "./meta";

export const messenger = messagingProvider({
  name: "messenger",
  object: "page",
  allowSetting: "MESSENGER_PAGE_IDS",
  allowWhat: "page id",
  read: z.looseObject({ watermark: Millis }),
  samples: [{ label: "message_reads", fixture: "messenger-message_reads" }],
  // Everything the page sent up to a second ago is read: the receipt's id is the reader's watermark.
  freshRead: ({ now }) => ({ watermark: now - 1000 }),
  async toReceipt({ account: page, reader, timestamp, read, raw }, receivedAt) {
    return {
      // One receipt per reader and watermark: a resend is a duplicate.
      id: await identityId("messenger", [page, reader, read.watermark]),
      provider: "messenger",
      event: "message_reads",
      app: page,
      chat: "single",
      conversation: singleConversationKey("messenger", page, page, reader),
      readers: [reader],
      peer: page,
      messages: [],
      upTo: { time: isoFromMillis(read.watermark) },
      readAt: isoFromMillis(timestamp),
      receivedAt,
      raw,
    };
  },
});

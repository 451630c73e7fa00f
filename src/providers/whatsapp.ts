/**
 * WhatsApp Cloud API: message status webhooks (`field: "messages"`, `value.statuses[]`). A
 * `read` status is a read receipt of one message (its wamid) by one user; `played` (a voice
 * message played) is one too, under the same receipt id, so that a message both read and played
 * makes one receipt. `sent`, `delivered`, `failed` and inbound messages are counted and ignored.
 * Meta's envelope, signature and handshake: meta.ts. Facts and sources: docs/providers/whatsapp.md.
 */
import { z } from "zod";
import { groupConversationKey, singleConversationKey, type JsonObject, type Receipt } from "../receipt";
import { isoFromMillis } from "../time";
import { identityId } from "./provider";
import { arrayOf, countInto, entriesOf, fieldOf, invalidAt, MessageId, MetaId, metaProvider, SecondsText, type MetaReceipt } from "./meta";

/** Statuses that say the user saw the message. */
const READ_STATUSES = new Set(["read", "played"]);

const Entry = z.looseObject({ id: MetaId.optional(), changes: z.array(z.looseObject({ field: z.string().min(1).max(128), value: z.unknown() })) });
const MessagesValue = z.looseObject({
  metadata: z.looseObject({ phone_number_id: MetaId, display_phone_number: z.string().max(64).optional() }),
  statuses: z.array(z.unknown()).optional(),
  messages: z.array(z.unknown()).optional(),
});
/** Any status: only its name is read until it is a read status. */
const AnyStatus = z.looseObject({ status: z.string().min(1).max(64) });
/** https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/ */
const ReadStatus = z.looseObject({
  id: MessageId,
  status: z.string(),
  timestamp: SecondsText,
  recipient_id: MetaId,
  /** In a group: the reader (`recipient_id` is then the group). */
  recipient_participant_id: MetaId.optional(),
  recipient_type: z.string().max(32).optional(),
});

const statusesOf = (json: JsonObject) => entriesOf(json).flatMap((entry) => arrayOf(fieldOf(entry, "changes")).map((change) => fieldOf(change, "value")));

export const whatsapp = metaProvider({
  name: "whatsapp",
  object: "whatsapp_business_account",
  allowSetting: "WHATSAPP_PHONE_NUMBER_IDS",
  allowWhat: "phone number id",
  countItems: (json) => statusesOf(json).reduce<number>((sum, value) => sum + arrayOf(fieldOf(value, "statuses")).length, 0),
  businessIds: (json) =>
    statusesOf(json)
      .map((value) => fieldOf(fieldOf(value, "metadata"), "phone_number_id"))
      .filter((id): id is string => typeof id === "string"),

  async receipts(json, receivedAt) {
    const receipts: MetaReceipt[] = [];
    const ignored: Record<string, number> = {};
    for (const [e, value] of arrayOf(json.entry).entries()) {
      const entry = Entry.safeParse(value);
      if (!entry.success) return invalidAt(["entry", e], entry.error.issues);
      for (const [c, change] of entry.data.changes.entries()) {
        // Other fields (account_update, message_template_status_update, ...): not receipts.
        if (change.field !== "messages") {
          countInto(ignored, `change.${change.field}`);
          continue;
        }
        const parsed = MessagesValue.safeParse(change.value);
        if (!parsed.success) return invalidAt(["entry", e, "changes", c, "value"], parsed.error.issues);
        const { metadata, statuses = [], messages = [] } = parsed.data;
        const { statuses: _statuses, messages: _messages, ...valueRest } = parsed.data;
        if (messages.length > 0) ignored.message = (ignored.message ?? 0) + messages.length;
        const phoneNumberId = metadata.phone_number_id;
        for (const [s, status] of statuses.entries()) {
          const at = ["entry", e, "changes", c, "value", "statuses", s];
          const any = AnyStatus.safeParse(status);
          if (!any.success) return invalidAt(at, any.error.issues);
          if (!READ_STATUSES.has(any.data.status)) {
            countInto(ignored, `status.${any.data.status}`);
            continue;
          }
          const read = ReadStatus.safeParse(status);
          if (!read.success) return invalidAt(at, read.error.issues);
          const ms = Number(read.data.timestamp) * 1000;
          const group = read.data.recipient_participant_id !== undefined || read.data.recipient_type === "group";
          const reader = read.data.recipient_participant_id ?? read.data.recipient_id;
          if (group && read.data.recipient_participant_id === undefined) {
            return invalidAt([...at, "recipient_participant_id"], [{ path: [], message: "is required for a group's status" }]);
          }
          const receipt: Receipt = {
            // One receipt per message and reader: a resend, and a `played` after a `read`, are duplicates.
            id: await identityId("whatsapp", [phoneNumberId, read.data.id, reader]),
            provider: "whatsapp",
            event: `status.${read.data.status}`,
            app: phoneNumberId,
            chat: group ? "group" : "single",
            conversation: group
              ? groupConversationKey("whatsapp", phoneNumberId, read.data.recipient_id)
              : singleConversationKey("whatsapp", phoneNumberId, phoneNumberId, read.data.recipient_id),
            readers: [reader],
            ...(group ? { group: read.data.recipient_id } : { peer: phoneNumberId }),
            messages: [{ id: read.data.id }],
            readAt: isoFromMillis(ms),
            receivedAt,
            // The one status in Meta's own shape (the whole batch could be 64 KiB, for each receipt).
            raw: {
              object: "whatsapp_business_account",
              entry: [
                {
                  ...(entry.data.id !== undefined ? { id: entry.data.id } : {}),
                  changes: [{ field: "messages", value: { ...valueRest, statuses: [status] } }],
                },
              ],
            },
          };
          receipts.push({ receipt, eventTime: { ms, field: `${at.join(".")}.timestamp` } });
        }
      }
    }
    return { ok: true, value: { receipts, ignored } };
  },
});

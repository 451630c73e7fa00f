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
import {
  arrayOf,
  countInto,
  entriesOf,
  objectOrEmpty,
  fieldOf,
  invalidAt,
  invalidItem,
  mapEntries,
  MessageId,
  MetaId,
  metaProvider,
  SecondsText,
  type MetaReceipt,
} from "./meta";

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
/**
 * A business-scoped user id (BSUID): two letters, a dot and up to 128 characters; Meta says its
 * form may change, so anything plausible is taken.
 * https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids
 */
const BusinessScopedId = z
  .string()
  .min(1)
  .max(256, "must be at most 256 characters")
  .refine((text) => !/[\uD800-\uDFFF]/u.test(text), "must be valid Unicode (it holds a lone surrogate)");
/** https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/ */
const ReadStatus = z
  .looseObject({
    id: MessageId,
    status: z.string(),
    timestamp: SecondsText,
    /** The user's WhatsApp id (phone number), or the group's id for a group message. Omitted when Meta sends a BSUID instead. */
    recipient_id: MetaId.optional(),
    recipient_user_id: BusinessScopedId.optional(),
    /** In a group: the reader (`recipient_id` is then the group), or its BSUID. */
    recipient_participant_id: MetaId.optional(),
    recipient_participant_user_id: BusinessScopedId.optional(),
    /** The spelling of Meta's Groups API examples. */
    participant_recipient_id: MetaId.optional(),
    recipient_type: z.string().max(32).optional(),
  })
  .transform((status, ctx) => {
    const participant = status.recipient_participant_id ?? status.recipient_participant_user_id ?? status.participant_recipient_id;
    const group = participant !== undefined || status.recipient_type === "group";
    if (group) {
      if (status.recipient_id === undefined) ctx.addIssue({ code: "custom", path: ["recipient_id"], message: "is required for a group's status (the group)" });
      if (participant === undefined)
        ctx.addIssue({ code: "custom", path: ["recipient_participant_id"], message: "is required for a group's status (the reader)" });
      return status.recipient_id !== undefined && participant !== undefined ? { ...status, group: status.recipient_id, reader: participant } : z.NEVER;
    }
    const user = status.recipient_id ?? status.recipient_user_id;
    if (user === undefined) {
      ctx.addIssue({ code: "custom", path: ["recipient_id"], message: "is required (or recipient_user_id, the user's business-scoped id)" });
      return z.NEVER;
    }
    return { ...status, group: undefined, reader: user };
  });

/** Each `changes[].value` of a sample body changed by `change`. */
const mapValues = (json: JsonObject, change: (value: JsonObject) => JsonObject): JsonObject =>
  mapEntries(json, (entry) => ({
    ...entry,
    changes: arrayOf(entry.changes).map((item) => ({ ...objectOrEmpty(item), value: change(objectOrEmpty(fieldOf(item, "value"))) })),
  }));

const statusesOf = (json: JsonObject) => entriesOf(json).flatMap((entry) => arrayOf(fieldOf(entry, "changes")).map((change) => fieldOf(change, "value")));

export const whatsapp = metaProvider({
  name: "whatsapp",
  object: "whatsapp_business_account",
  allowSetting: "WHATSAPP_PHONE_NUMBER_IDS",
  allowWhat: "phone number id",
  samples: [
    { label: "statuses (1 read)", fixture: "whatsapp-statuses-read" },
    { label: "statuses (3 read, 1 delivered, 1 sent)", fixture: "whatsapp-statuses-read", variant: "batch" },
  ],
  // The user is the conversation; `reader` is a second user in the batch, so that it spans two conversations.
  fresh: (json, sample, { conversation, reader, message, now }) =>
    mapValues(json, (value) => {
      const statuses = arrayOf(value.statuses).map(objectOrEmpty);
      const fresh = (status: JsonObject, at: number, recipient: string, name = "read") => ({
        ...status,
        id: `wamid.${message}.${at}`,
        status: name,
        timestamp: String(Math.floor(now / 1000)),
        recipient_id: recipient,
      });
      if (sample.variant !== "batch") return { ...value, statuses: statuses.map((status, at) => fresh(status, at, conversation)) };
      const [first = {}] = statuses;
      const batch: [string, string][] = [
        [conversation, "read"],
        [conversation, "read"],
        [reader, "read"],
        [reader, "delivered"],
        [conversation, "sent"],
      ];
      return { ...value, statuses: batch.map(([recipient, name], at) => fresh(first, at, recipient, name)) };
    }),
  address: (json, id) => mapValues(json, (value) => ({ ...value, metadata: { ...objectOrEmpty(value.metadata), phone_number_id: id } })),
  countItems: (json) => statusesOf(json).reduce<number>((sum, value) => sum + arrayOf(fieldOf(value, "statuses")).length, 0),
  businessIds: (json) =>
    statusesOf(json)
      .map((value) => fieldOf(fieldOf(value, "metadata"), "phone_number_id"))
      .filter((id): id is string => typeof id === "string"),

  async receipts(json, receivedAt) {
    const receipts: MetaReceipt[] = [];
    const ignored: Record<string, number> = {};
    const invalid: string[] = [];
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
          if (!any.success) {
            invalid.push(invalidItem(at, any.error.issues));
            continue;
          }
          if (!READ_STATUSES.has(any.data.status)) {
            countInto(ignored, `status.${any.data.status}`);
            continue;
          }
          const read = ReadStatus.safeParse(status);
          if (!read.success) {
            invalid.push(invalidItem(at, read.error.issues));
            continue;
          }
          const ms = Number(read.data.timestamp) * 1000;
          const { group, reader } = read.data;
          const receipt: Receipt = {
            // One receipt per message and reader: a resend, and a `played` after a `read`, are duplicates.
            id: await identityId("whatsapp", [phoneNumberId, read.data.id, reader]),
            provider: "whatsapp",
            event: `status.${read.data.status}`,
            app: phoneNumberId,
            chat: group !== undefined ? "group" : "single",
            conversation:
              group !== undefined
                ? groupConversationKey("whatsapp", phoneNumberId, group)
                : singleConversationKey("whatsapp", phoneNumberId, phoneNumberId, reader),
            readers: [reader],
            ...(group !== undefined ? { group } : { peer: phoneNumberId }),
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
    return { ok: true, value: { receipts, ignored, invalid } };
  },
});

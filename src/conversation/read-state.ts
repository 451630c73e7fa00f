/** Per-reader "has read up to" state, folded from receipts. Pure: tested without an object. */
import { z } from "zod";
import type { Receipt } from "../receipt";

export const ReadState = z.object({
  reader: z.string(),
  /** The latest readAt seen for this reader. */
  lastReadAt: z.string(),
  /** The receipt that set lastReadAt. */
  receiptId: z.string(),
  /** The last message id named in that receipt, where it named one. */
  messageId: z.string().optional(),
  /** The highest message seq this reader has read (messages' seq and upTo.seq). */
  seq: z.number().optional(),
  /** The latest "everything before this time is read" mark. */
  time: z.string().optional(),
  /** The reader's unread total as of the latest receipt that carried one. */
  unreadTotal: z.number().optional(),
});
export type ReadState = z.infer<typeof ReadState>;

const maxOf = (a: number | undefined, b: number | undefined) => (a === undefined ? b : b === undefined ? a : Math.max(a, b));
const laterOf = (a: string | undefined, b: string | undefined) => (a === undefined ? b : b === undefined ? a : a >= b ? a : b);

/**
 * Folds one receipt into one reader's state. Receipts may arrive out of order: marks (seq, time)
 * only move forward, and the "latest" fields follow the receipt with the latest readAt.
 */
export function foldReadState(current: ReadState | undefined, receipt: Receipt, reader: string): ReadState {
  // A group receipt may list per-message readers (Tencent); a message without a list counts for all.
  const messages = receipt.messages.filter((message) => !message.readers || message.readers.includes(reader));
  const seqs = messages.map((message) => message.seq).filter((seq): seq is number => seq !== undefined);
  const receiptSeq = maxOf(seqs.length ? Math.max(...seqs) : undefined, receipt.upTo?.seq);
  const lastMessageId = [...messages].reverse().find((message) => message.id !== undefined)?.id;
  const isLatest = current === undefined || receipt.readAt >= current.lastReadAt;

  const next: ReadState = {
    reader,
    lastReadAt: isLatest ? receipt.readAt : current.lastReadAt,
    receiptId: isLatest ? receipt.id : current.receiptId,
  };
  const messageId = isLatest ? (lastMessageId ?? current?.messageId) : current.messageId;
  if (messageId !== undefined) next.messageId = messageId;
  const seq = maxOf(current?.seq, receiptSeq);
  if (seq !== undefined) next.seq = seq;
  const time = laterOf(current?.time, receipt.upTo?.time);
  if (time !== undefined) next.time = time;
  const unreadTotal = isLatest && receipt.unreadTotal !== undefined ? receipt.unreadTotal : current?.unreadTotal;
  if (unreadTotal !== undefined) next.unreadTotal = unreadTotal;
  return next;
}

/**
 * Folds receipts, in order, into their readers' states: each reader's stored state is loaded once
 * (`load`) and comes out once, however many receipts of the batch name it, so a batch writes one
 * row per reader rather than one per receipt and reader.
 */
export function foldReadStates(receipts: readonly Receipt[], load: (reader: string) => ReadState | undefined): Map<string, ReadState> {
  const states = new Map<string, ReadState>();
  for (const receipt of receipts) {
    for (const reader of receipt.readers) {
      states.set(reader, foldReadState(states.has(reader) ? states.get(reader) : load(reader), receipt, reader));
    }
  }
  return states;
}

/** The largest page of read state the object, the API and the dashboard return (docs/design.md, "Bounds"). */
export const MAX_READS_PAGE = 1000;

/** A page of read state in reader order, with the number of readers; `next` (a reader) when more may follow. */
export const ReadsPage = z.object({ reads: z.array(ReadState), readers: z.number(), next: z.string().optional() });
export type ReadsPage = z.infer<typeof ReadsPage>;

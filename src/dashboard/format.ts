/**
 * How the dashboard writes times, durations, readers and messages: one module for the
 * server-rendered pages and the browser script (src/dashboard/browser/), so that a row the live
 * tail adds reads exactly like one the page rendered. Whatever it imports the script bundles too:
 * nothing here may need the Workers runtime.
 */
import { isoFromMillis } from "../time";

/** "2026-12-03 10:00:00 UTC"; anything that is not a time, as it came. */
export function timeText(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isNaN(ms)
    ? iso
    : isoFromMillis(ms)
        .replace("T", " ")
        .replace(/\.\d+Z$/, " UTC");
}

/** In ms, s, min or h, whichever reads best; "-" when unknown. */
export function durationText(ms: number | null | undefined): string {
  if (typeof ms !== "number" || Number.isNaN(ms)) return "-";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** Readers named per receipt row: a group receipt names up to 1,000, and the row stays small. */
export const READERS_SHOWN = 10;
/** Message ids named per receipt row; the receipt keeps them all. */
export const MESSAGES_SHOWN = 10;

/** The first READERS_SHOWN readers, then how many more; "-" for none. */
export function readersText(readers: readonly string[]): string {
  if (readers.length === 0) return "-";
  const shown = readers.slice(0, READERS_SHOWN).join(", ");
  return readers.length > READERS_SHOWN ? `${shown} and ${readers.length - READERS_SHOWN} more` : shown;
}

/** What a receipt says it read: some messages (by id or seq), and perhaps everything up to a seq or time. */
export interface ReadMessages {
  messages: readonly { id?: string | undefined; seq?: number | undefined }[];
  upTo?: { seq?: number | undefined; time?: string | undefined } | undefined;
}

/**
 * Message ids, else #seq, for the first MESSAGES_SHOWN messages (up to 1,000 a receipt, docs/design.md,
 * "Bounds"), then "up to". Type checks, not just presence: the script passes what a socket sent.
 */
export function messagesText(receipt: ReadMessages): string {
  const parts = receipt.messages.slice(0, MESSAGES_SHOWN).map((message) => {
    if (typeof message.id === "string") return message.id;
    return typeof message.seq === "number" ? `#${message.seq}` : "?";
  });
  if (receipt.messages.length > MESSAGES_SHOWN) parts.push(`and ${receipt.messages.length - MESSAGES_SHOWN} more`);
  const upTo = receipt.upTo;
  if (typeof upTo?.seq === "number") parts.push(`up to #${upTo.seq}`);
  else if (typeof upTo?.time === "string") parts.push(`up to ${timeText(upTo.time)}`);
  return parts.join(", ") || "-";
}

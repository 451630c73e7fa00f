/**
 * The conversation index (D1) a page at a time, as the API and the dashboard show it: every
 * conversation filtered by provider, status or key prefix, and the conversations holding dead
 * letters of one destination. Data only: the callers turn it into JSON or a page
 * (docs/operations.md, "The conversation index").
 */
import { z } from "zod";
import { fromBase64, toBase64, utf8 } from "../crypto/encoding";
import { describeRow, destinationsOf, IndexStatus, listIndex, MAX_INDEX_PAGE, type IndexRow } from "../ops/conversation-index";

/** What a deployment without the index is told to do (the API's 503 index_disabled, the destinations overview). */
export const INDEX_OFF = "the conversation index is off: bind a D1 database as DB (wrangler.toml, [[d1_databases]]) to turn it on";

/** Rows a page holds unless `limit` says otherwise. */
const INDEX_PAGE = 100;

/** The cursor is the last key of the page, base64url: opaque to callers, and safe in a URL. */
export const encodeCursor = (key: string) => toBase64(utf8(key)).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");

function decodeCursor(cursor: string): string | undefined {
  const standard = cursor.replaceAll("-", "+").replaceAll("_", "/");
  const bytes = fromBase64(standard.padEnd(Math.ceil(standard.length / 4) * 4, "="));
  if (!bytes) return undefined;
  try {
    const key = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
    return key.length > 0 ? key : undefined;
  } catch {
    return undefined;
  }
}

/** An opaque `cursor` parameter (encodeCursor), decoded; a failure names it. */
export const Cursor = z
  .string()
  .optional()
  .transform((value, ctx) => {
    if (value === undefined) return undefined;
    const key = decodeCursor(value);
    if (key === undefined) ctx.addIssue({ code: "custom", message: "not a cursor this API returned" });
    return key;
  });

/** What a page of the index is filtered by (GET /v1/conversations; the dashboard's forms take the same rules). */
export const ListQuery = {
  provider: z.string().min(1).max(64).optional(),
  status: IndexStatus.optional(),
  prefix: z.string().min(1).max(4096).optional(),
  cursor: Cursor,
  limit: z.coerce.number().int().min(1).max(MAX_INDEX_PAGE).optional(),
};
export const ListParams = z.object(ListQuery);
export type ListParams = z.infer<typeof ListParams>;

/** A page of the index in key order; `cursor` when more may follow. */
export async function conversationsPage(db: D1Database, params: ListParams) {
  const { rows, next } = await listIndex(db, params, params.limit ?? INDEX_PAGE, params.cursor);
  return { conversations: rows.map(describeRow), ...(next !== undefined ? { cursor: encodeCursor(next) } : {}) };
}
export type ConversationsPage = Awaited<ReturnType<typeof conversationsPage>>;

/** A page of the conversations holding dead letters of `destination`, each row with that destination's part. */
export async function destinationDeadLettersPage(db: D1Database, destination: string, params: Omit<ListParams, "status">) {
  const { rows, next } = await listIndex(db, { ...params, status: "failing", destination }, params.limit ?? INDEX_PAGE, params.cursor);
  return {
    destination,
    conversations: rows.map((row) => describeFailingRow(row, destination)),
    ...(next !== undefined ? { cursor: encodeCursor(next) } : {}),
  };
}

/** An index row with one destination's part of it (`destination`), as the dead-letters list shows it. */
function describeFailingRow(row: IndexRow, destination: string) {
  const summary = destinationsOf(row)[destination];
  return {
    ...describeRow(row),
    destination: {
      name: destination,
      pending: summary?.pending ?? 0,
      failed: summary?.failed ?? 0,
      oldestFailedAt: summary?.oldestFailedAt ?? null,
      lastError: summary?.lastError ?? null,
    },
  };
}

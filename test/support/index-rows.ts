/** Rows of the D1 conversation index written directly, for tests of what reads it (alerts, stats). */
import { env } from "cloudflare:workers";
import { writeIndexRow, type IndexContent } from "../../src/ops/conversation-index";
import { parseConversationKey } from "../../src/receipt";

export const iso = (ms: number) => new Date(ms).toISOString();

/** Writes `key`'s index row as of `at`: one accepted receipt, nothing pending or failed, unless `content` says otherwise. */
export async function indexRow(key: string, content: Partial<IndexContent>, at: number): Promise<void> {
  const base: IndexContent = {
    key,
    ...parseConversationKey(key),
    accepted: 1,
    last_receipt_at: iso(at),
    pending: 0,
    failed: 0,
    oldest_failed_at: null,
    last_error: null,
    last_delivered_at: null,
    last_latency_ms: null,
    activity: null,
    destinations: null,
    unrouted: 0,
  };
  await writeIndexRow(env.DB, { ...base, ...content }, at);
}

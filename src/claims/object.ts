/**
 * Relay-wide claims of signed nonces (docs/design.md, "Replay"). Easemob signs only a callback's
 * callId and timestamp, so the same signature could carry another body into another conversation:
 * the first authentic use of a callId claims it for its conversation, for as long as the callback
 * would pass the age check. One small SQLite object per shard of keys (see `shard.ts`).
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import type { ClaimResult } from "../ingest";

/**
 * Expired claims are deleted at most once a minute, in one statement. Without an index on the
 * expiry a claim writes one row (an index would double it), and the delete scans a table that
 * holds only the last few minutes' claims of one shard: rows read cost a thousandth of rows written.
 */
const PRUNE_EVERY_MS = 60_000;

const ClaimRow = z.object({ conversation: z.string(), expires_at: z.number() });

export class CallbackClaims extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** In memory: after a restart the first claim prunes, which is what we want anyway. */
  private prunedAt = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, conversation TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    `);
  }

  /**
   * "claimed" for a first use (or one whose earlier claim expired), "same" when the key was claimed
   * for this conversation (a provider's retry), "conflict" when for another (a replay).
   */
  async claim(key: string, conversation: string, expiresAt: number): Promise<ClaimResult> {
    const now = Date.now();
    return this.ctx.storage.transactionSync((): ClaimResult => {
      const row = this.sql.exec("SELECT conversation, expires_at FROM claims WHERE key = ?", key).toArray()[0];
      const held = row ? ClaimRow.parse(row) : undefined;
      if (held && held.expires_at >= now) return held.conversation === conversation ? "same" : "conflict";
      this.sql.exec(
        "INSERT INTO claims (key, conversation, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE SET conversation = ?2, expires_at = ?3",
        key,
        conversation,
        expiresAt,
      );
      if (now - this.prunedAt >= PRUNE_EVERY_MS) {
        this.sql.exec("DELETE FROM claims WHERE expires_at < ?", now);
        this.prunedAt = now;
      }
      return "claimed";
    });
  }
}

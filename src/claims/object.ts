/**
 * Relay-wide claims of signed nonces (docs/design.md, "Reused signatures and callback claims"). Easemob signs only a callback's
 * callId and timestamp, so the same signature could carry another body into another conversation:
 * the first authentic use of a callId claims it for its body (a SHA-256 of the bytes) and its
 * conversation, for as long as the callback would pass the age check. One small SQLite object per
 * shard of keys (see `shard.ts`).
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import type { ClaimResult } from "./claim-result";

/**
 * Expired claims are never deleted (a delete is a second row written per claim): at most once a
 * minute the object reads which have expired (rows read cost a thousandth of rows written), and
 * each new claim takes over one of those rows, in the one UPDATE that records it. So a claim costs
 * one row written, expiry included; the table holds as many rows as the most claims ever live at
 * once in this shard (a few minutes' worth at the default MAX_EVENT_AGE_SECONDS). Without an index
 * on the expiry a claim writes one row (an index would double it).
 */
const PRUNE_EVERY_MS = 60_000;
/** Expired rows remembered for reuse, at most (the next scan finds more). */
const MAX_REUSABLE = 1000;

/** A claim row; `digest` is null in rows written before schema v2 (they expire within MAX_EVENT_AGE_SECONDS). */
const ClaimRow = z.object({ conversation: z.string(), expires_at: z.number(), digest: z.string().nullable() });
const VersionRow = z.object({ value: z.string() });
const KeyRow = z.object({ key: z.string() });

/**
 * The schema, by version; a deployed object keeps its table, so a change is a new step, run in
 * `migrate` before any request (never edit a shipped step). v1 (as first shipped): claims without
 * a digest, no version recorded. v2: `digest` in the same row (no extra row written per claim),
 * and the version in `state`.
 */
export const CLAIMS_SCHEMA_V1 =
  "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, conversation TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;";
export const CLAIMS_SCHEMA_VERSION = 2;

function migrate(sql: SqlStorage): void {
  const tables = new Set(
    sql
      .exec("SELECT name FROM sqlite_master WHERE type = 'table'")
      .toArray()
      .map((row) => String(row.name)),
  );
  const row = tables.has("state") ? sql.exec("SELECT value FROM state WHERE key = 'schema_version'").toArray()[0] : undefined;
  const version = row ? Number(VersionRow.parse(row).value) : tables.has("claims") ? 1 : 0;
  if (version >= CLAIMS_SCHEMA_VERSION) return;
  if (version === 0) sql.exec(CLAIMS_SCHEMA_V1);
  // v1 → v2: old rows keep a null digest and are judged by conversation alone until they expire.
  sql.exec("ALTER TABLE claims ADD COLUMN digest TEXT");
  sql.exec("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID");
  sql.exec("INSERT OR REPLACE INTO state (key, value) VALUES ('schema_version', ?)", String(CLAIMS_SCHEMA_VERSION));
}

export class CallbackClaims extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** In memory: after a restart the first claim looks for expired rows, which is what we want anyway. */
  private prunedAt = 0;
  /** Keys of expired claims whose rows new claims may take over, oldest first. */
  private reusable: string[] = [];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.storage.transactionSync(() => migrate(this.sql));
  }

  /**
   * "claimed" for a first use (or one whose earlier claim expired), "same" when the key was claimed
   * for this body and conversation (a provider's retry), "conflict" for another body or
   * conversation (a reused signature). `digest`: SHA-256 of the body's bytes.
   */
  async claim(key: string, conversation: string, expiresAt: number, digest: string): Promise<ClaimResult> {
    const now = Date.now();
    return this.ctx.storage.transactionSync((): ClaimResult => {
      const row = this.sql.exec("SELECT conversation, expires_at, digest FROM claims WHERE key = ?", key).toArray()[0];
      const held = row ? ClaimRow.parse(row) : undefined;
      if (held && held.expires_at >= now) {
        return held.conversation === conversation && (held.digest === null || held.digest === digest) ? "same" : "conflict";
      }
      if (now - this.prunedAt >= PRUNE_EVERY_MS) {
        this.reusable = this.sql
          .exec("SELECT key FROM claims WHERE expires_at < ? LIMIT ?", now, MAX_REUSABLE)
          .toArray()
          .map((expired) => KeyRow.parse(expired).key);
        this.prunedAt = now;
      }
      // The key's own expired row, else another expired row taken over, else a new row: one row written each way.
      if (!held) {
        for (let slot = this.reusable.shift(); slot !== undefined; slot = this.reusable.shift()) {
          const written = this.sql.exec(
            "UPDATE claims SET key = ?1, conversation = ?2, expires_at = ?3, digest = ?4 WHERE key = ?5 AND expires_at < ?6",
            key,
            conversation,
            expiresAt,
            digest,
            slot,
            now,
          ).rowsWritten;
          if (written > 0) return "claimed";
        }
      }
      this.sql.exec(
        "INSERT INTO claims (key, conversation, expires_at, digest) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO UPDATE SET conversation = ?2, expires_at = ?3, digest = ?4",
        key,
        conversation,
        expiresAt,
        digest,
      );
      return "claimed";
    });
  }
}

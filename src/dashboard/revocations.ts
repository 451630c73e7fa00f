/**
 * Dashboard sessions ended by sign-out (docs/dashboard.md, "Sign-in and sessions"): one small
 * SQLite object for the whole relay holds the id of each signed-out session until its cookie
 * would have expired anyway. Durable storage, so a revocation survives restarts and deploys; one
 * object, so every Worker sees a sign-out at once (KV would lag by up to a minute). Rows are
 * written only at sign-out, which takes a valid session, and are deleted once expired.
 */
import { DurableObject } from "cloudflare:workers";

const SCHEMA = "CREATE TABLE IF NOT EXISTS revoked (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;";

export class SessionRevocations extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(SCHEMA);
  }

  /** Records a signed-out session until `expiresAt` (ms), and forgets those already expired. */
  revoke(id: string, expiresAt: number, now: number): void {
    const sql = this.ctx.storage.sql;
    sql.exec("DELETE FROM revoked WHERE expires_at <= ?", now);
    if (expiresAt > now) sql.exec("INSERT OR REPLACE INTO revoked (id, expires_at) VALUES (?, ?)", id, expiresAt);
  }

  isRevoked(id: string): boolean {
    return this.ctx.storage.sql.exec("SELECT 1 FROM revoked WHERE id = ?", id).toArray().length > 0;
  }
}

/** The one object, by a fixed name. */
export function revocationsStub(env: Env) {
  return env.SESSION_REVOCATIONS.get(env.SESSION_REVOCATIONS.idFromName("dashboard-sessions"));
}

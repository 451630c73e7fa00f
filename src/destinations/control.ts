/**
 * Paused destinations (docs/destinations.md, "Pause and resume"): operational state, not
 * configuration, so it survives deploys and is changed at run time by the API and the dashboard.
 * One small SQLite object for the relay holds the paused names (a row per paused destination,
 * written only by a pause or a resume). Conversation objects learn of it through `pausedOf`: each
 * isolate asks this object at most once per PAUSE_CACHE_MS, so a pause holds new attempts within
 * that time plus one attempt in flight, at one object request per isolate per interval.
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import { isoFromMillis } from "../time";

const SCHEMA = "CREATE TABLE IF NOT EXISTS paused (name TEXT PRIMARY KEY, since INTEGER NOT NULL) WITHOUT ROWID;";
const PausedRow = z.object({ name: z.string(), since: z.number() });

/** How long an isolate trusts what it last read: a pause takes effect within this (the issue asks 10 s). */
export const PAUSE_CACHE_MS = 5_000;

export class DestinationControl extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(SCHEMA);
  }

  /** Paused destinations and since when (ISO-8601). */
  paused(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const row of this.ctx.storage.sql.exec("SELECT name, since FROM paused ORDER BY name")) {
      const { name, since } = PausedRow.parse(row);
      out[name] = isoFromMillis(since);
    }
    return out;
  }

  /** Pauses `name`; pausing a paused destination changes nothing (its `since` stays). */
  pause(name: string, now: number): Record<string, string> {
    this.ctx.storage.sql.exec("INSERT INTO paused (name, since) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", name, now);
    return this.paused();
  }

  resume(name: string): Record<string, string> {
    this.ctx.storage.sql.exec("DELETE FROM paused WHERE name = ?", name);
    return this.paused();
  }
}

/** The binding, or undefined in a deployment whose wrangler.toml predates it (nothing is then paused). */
export const controlNamespace = (env: Env): DurableObjectNamespace<DestinationControl> | undefined =>
  (env as { DESTINATION_CONTROL?: DurableObjectNamespace<DestinationControl> }).DESTINATION_CONTROL;

export function controlStub(namespace: DurableObjectNamespace<DestinationControl>) {
  return namespace.get(namespace.idFromName("destinations"));
}

let cached: { at: number; paused: ReadonlySet<string> } | undefined;
let loading: Promise<ReadonlySet<string>> | undefined;

/**
 * The paused destinations as this isolate last read them (at most PAUSE_CACHE_MS old). When the
 * control object cannot be reached, the last answer stands (or nothing is paused): a failing
 * control object never stops deliveries.
 */
export async function pausedOf(env: Env, now = Date.now()): Promise<ReadonlySet<string>> {
  if (cached && now - cached.at < PAUSE_CACHE_MS) return cached.paused;
  const namespace = controlNamespace(env);
  if (!namespace) return new Set();
  loading ??= (async () => {
    try {
      const paused = new Set(Object.keys(await controlStub(namespace).paused()));
      cached = { at: Date.now(), paused };
      return paused;
    } catch {
      cached = { at: Date.now(), paused: cached?.paused ?? new Set() };
      return cached.paused;
    } finally {
      loading = undefined;
    }
  })();
  return loading;
}

/** What this isolate knows now, without asking (for arming an alarm). */
export const pausedKnown = (): ReadonlySet<string> => cached?.paused ?? new Set();

/** After this isolate paused or resumed a destination: read afresh next time. */
export function forgetPaused(): void {
  cached = undefined;
}

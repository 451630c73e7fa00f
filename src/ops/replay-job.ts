/**
 * A bulk replay of dead letters as a durable job (`POST /v1/replays`): one SQLite Durable Object
 * per job (binding `REPLAYS`, named by the job id). At creation it copies, from the D1
 * conversation index, the keys of every conversation with dead letters that matches the filter
 * (of one destination when it names one: its rows' `destinations` JSON says failed > 0), or, for
 * `{ delivered: { conversation?, since, until }, destination? }`, takes that one conversation
 * (every conversation of the index when only the destination is given), whose delivered receipts
 * still kept are sent again: `redeliver()`, to that destination only when one is named;
 * then its alarm works through them in batches of REPLAY_BATCH, calling each conversation
 * object's `retryDeadLetters(destination?)` (which requeues them in their original order, each keeping its
 * webhook-id). Progress (a cursor over that copied list and the total requeued) is in its own SQLite,
 * updated once per batch, so the job survives evictions and restarts and resumes where it was.
 *
 * A conversation whose object fails is tried again (the batch stops there and the alarm comes
 * back after REPLAY_RETRY_MS); after REPLAY_MAX_TRIES failures in a row it is skipped and counted
 * in `skipped`, with the last error kept.
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import { conversationStub } from "../conversation-stub";
import { DESTINATION_NAME } from "../destinations/config";
import { failingKeys, indexDb, type IndexFilter } from "./conversation-index";
import { log } from "../log";
import { useLogLevel } from "../settings";
import { isoFromMillis } from "../time";

export const REPLAY_BATCH = 25;
const REPLAY_RETRY_MS = 30_000;
const REPLAY_MAX_TRIES = 5;
/** Keys read from D1 per query while copying the job's list. */
const KEYS_PAGE = 1000;

/** A destination's name (the rule of DESTINATIONS, src/destinations/config.ts). */
export const DestinationName = z.string().regex(DESTINATION_NAME, "must be a destination name: 1 to 32 lowercase letters, digits or dashes");

/** Every dead letter relay-wide, optionally of one provider, under a key prefix, or of one destination only. */
export const ReplayFilter = z.strictObject({
  provider: z.string().min(1).max(64).optional(),
  prefix: z.string().min(1).max(4096).optional(),
  destination: DestinationName.optional(),
});
/**
 * The delivered receipts still kept, delivered between since and until (ISO-8601; both optional),
 * to every destination or to `destination` only (which also gets the receipts accepted in the
 * window that it never had and that its match takes now: `redeliver`). Of one conversation, or,
 * given a destination, of every conversation in the index.
 */
export const DeliveredFilter = z
  .strictObject({
    delivered: z
      .strictObject({
        conversation: z.string().min(1).max(4096).optional(),
        since: z.iso.datetime({ offset: true }).optional(),
        until: z.iso.datetime({ offset: true }).optional(),
      })
      .refine((range) => !range.since || !range.until || Date.parse(range.since) <= Date.parse(range.until), {
        message: "since must not be after until",
        path: ["until"],
      }),
    destination: DestinationName.optional(),
  })
  .refine((filter) => filter.delivered.conversation !== undefined || filter.destination !== undefined, {
    message: "is required unless destination is given (a delivered replay of every conversation names its destination)",
    path: ["delivered", "conversation"],
  });
export type ReplayFilter = z.infer<typeof ReplayFilter>;
/** What a job replays: dead letters (ReplayFilter) or one conversation's delivered receipts (DeliveredFilter). */
export const ReplayJobFilter = z.union([DeliveredFilter, ReplayFilter]);
export type ReplayJobFilter = z.infer<typeof ReplayJobFilter>;

/** Validates a filter, judged by its own kind so that an error names the field that is wrong. */
export function parseReplayFilter(body: unknown) {
  const delivered = typeof body === "object" && body !== null && "delivered" in body;
  return delivered ? DeliveredFilter.safeParse(body) : ReplayFilter.safeParse(body);
}

const KeyOnly = z.object({ key: z.string() });

/** Every conversation's key in the index, in key order, a page at a time. */
async function allKeys(db: D1Database, limit: number, after?: string): Promise<string[]> {
  const result = await db
    .prepare("SELECT key FROM conversations WHERE key > ? ORDER BY key LIMIT ?")
    .bind(after ?? "", limit)
    .all();
  return result.results.map((row) => KeyOnly.parse(row).key);
}

export interface ReplayStatus {
  id: string;
  status: "running" | "done";
  filter: ReplayJobFilter;
  conversations: { done: number; total: number };
  requeued: number;
  skipped: number;
  createdAt: string;
  finishedAt?: string;
  lastError?: string;
}

const ValueRow = z.object({ value: z.string() });
const KeyRow = z.object({ pos: z.number(), conversation: z.string() });
const CountRow = z.object({ count: z.number() });

export class ReplayJob extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private running: Promise<void> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    useLogLevel(env);
  }

  /**
   * Creates the job: copies the matching conversations' keys and sets the alarm. Called once per id;
   * a second call answers the job as it is.
   */
  async start(id: string, filter: ReplayJobFilter): Promise<ReplayStatus> {
    const existing = this.status();
    if (existing) return existing;
    const keys: string[] = [];
    if ("delivered" in filter && filter.delivered.conversation !== undefined) {
      keys.push(filter.delivered.conversation);
    } else {
      const db = indexDb(this.env);
      if (!db) throw new Error("the conversation index (DB) is not bound");
      const next =
        "delivered" in filter
          ? (after: string | undefined) => allKeys(db, KEYS_PAGE, after)
          : filter.destination !== undefined
            ? (after: string | undefined) =>
                failingKeys(db, { provider: filter.provider, prefix: filter.prefix, destination: filter.destination }, KEYS_PAGE, after)
            : (after: string | undefined) => failingKeys(db, { provider: filter.provider, prefix: filter.prefix }, KEYS_PAGE, after);
      for (let after: string | undefined; ;) {
        const page = await next(after);
        keys.push(...page);
        if (page.length < KEYS_PAGE) break;
        after = page[page.length - 1];
      }
    }
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("CREATE TABLE job (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID");
      this.sql.exec("CREATE TABLE items (pos INTEGER PRIMARY KEY, conversation TEXT NOT NULL)");
      keys.forEach((key, i) => this.sql.exec("INSERT INTO items (pos, conversation) VALUES (?, ?)", i + 1, key));
      this.set("id", id);
      this.set("filter", JSON.stringify(filter));
      this.set("created_at", String(now));
      this.set("total", String(keys.length));
      this.set("cursor", "0");
      this.set("requeued", "0");
      this.set("skipped", "0");
      if (keys.length === 0) this.set("finished_at", String(now));
    });
    if (keys.length > 0) await this.ctx.storage.setAlarm(now);
    log("info", "replay_started", { replay: id, conversations: keys.length });
    const status = this.status();
    if (!status) throw new Error("replay job not stored");
    return status;
  }

  /** The job's progress, or null for an id never started (reading creates no storage). */
  async progress(): Promise<ReplayStatus | null> {
    return this.status();
  }

  override alarm(): Promise<void> {
    const run = this.running.then(() => this.runBatch());
    this.running = run.catch(() => undefined);
    return run;
  }

  /** One batch: up to REPLAY_BATCH conversations, progress recorded after each. */
  private async runBatch(): Promise<void> {
    if (!this.started() || this.text("finished_at")) return;
    const id = this.text("id");
    const filter = ReplayJobFilter.parse(JSON.parse(this.text("filter")));
    const cursor = Number(this.text("cursor"));
    const batch = this.sql
      .exec("SELECT pos, conversation FROM items WHERE pos > ? ORDER BY pos LIMIT ?", cursor, REPLAY_BATCH)
      .toArray()
      .map((row) => KeyRow.parse(row));
    for (const item of batch) {
      try {
        const stub = conversationStub(this.env, item.conversation);
        const result =
          "delivered" in filter
            ? await stub.redeliver(
                Date.parse(filter.delivered.since ?? "1970-01-01T00:00:00Z"),
                Date.parse(filter.delivered.until ?? "9999-12-31T23:59:59Z"),
                filter.destination,
              )
            : await stub.retryDeadLetters(filter.destination);
        this.ctx.storage.transactionSync(() => {
          this.set("cursor", String(item.pos));
          this.set("requeued", String(Number(this.text("requeued")) + (result?.requeued ?? 0)));
          if (this.text("tries")) this.sql.exec("DELETE FROM job WHERE key = 'tries'");
          // A conversation the relay never stored: nothing to replay, and the caller should know.
          if (result === null) {
            this.set("skipped", String(Number(this.text("skipped")) + 1));
            this.set("last_error", `${item.conversation}: the relay has never stored a receipt of this conversation`);
          }
        });
      } catch (error) {
        const tries = Number(this.text("tries") || 0) + 1;
        log("error", "replay_failed", { replay: id, conversation: item.conversation, tries, error: String(error) });
        this.ctx.storage.transactionSync(() => {
          this.set("last_error", `${item.conversation}: ${String(error)}`);
          if (tries < REPLAY_MAX_TRIES) {
            this.set("tries", String(tries));
          } else {
            this.set("cursor", String(item.pos));
            this.set("skipped", String(Number(this.text("skipped")) + 1));
            this.sql.exec("DELETE FROM job WHERE key = 'tries'");
          }
        });
        if (tries < REPLAY_MAX_TRIES) {
          await this.ctx.storage.setAlarm(Date.now() + REPLAY_RETRY_MS);
          return;
        }
      }
    }
    const total = Number(this.text("total"));
    if (Number(this.text("cursor")) >= total) {
      this.set("finished_at", String(Date.now()));
      log("info", "replay_done", { replay: id, requeued: Number(this.text("requeued")), skipped: Number(this.text("skipped")) });
      return;
    }
    // More to do: the next batch in a fresh alarm run, so that one run stays short.
    await this.ctx.storage.setAlarm(Date.now());
  }

  private status(): ReplayStatus | null {
    if (!this.started()) return null;
    const total = Number(this.text("total"));
    const finishedAt = this.text("finished_at");
    const lastError = this.text("last_error");
    const done = Number(this.text("cursor"));
    return {
      id: this.text("id"),
      status: finishedAt ? "done" : "running",
      filter: ReplayJobFilter.parse(JSON.parse(this.text("filter"))),
      conversations: { done, total },
      requeued: Number(this.text("requeued")),
      skipped: Number(this.text("skipped")),
      createdAt: isoFromMillis(Number(this.text("created_at"))),
      ...(finishedAt ? { finishedAt: isoFromMillis(Number(finishedAt)) } : {}),
      ...(lastError ? { lastError } : {}),
    };
  }

  private started(): boolean {
    const row = this.sql.exec("SELECT count(*) AS count FROM sqlite_master WHERE type = 'table' AND name = 'job'").toArray()[0];
    return CountRow.parse(row).count > 0;
  }

  private text(key: string): string {
    const row = this.sql.exec("SELECT value FROM job WHERE key = ?", key).toArray()[0];
    return row ? ValueRow.parse(row).value : "";
  }

  private set(key: string, value: string): void {
    this.sql.exec("INSERT INTO job (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2", key, value);
  }
}

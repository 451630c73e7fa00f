/**
 * Publication of a conversation (docs/design.md, "The KV read model"): the KV snapshot and the
 * conversation's row of the D1 index, each written at most once per interval, side by side, each
 * with its own back-off. The object says when something changed (`changed`) and runs `run` from
 * its alarm; this module decides what is due, reads what to write from storage (publisher.ts,
 * ops/conversation-index.ts) and records how it went.
 */
import { log } from "../log";
import { nextActivity } from "../ops/activity";
import {
  activityOf,
  INDEX_MIN_INTERVAL_MS,
  type IndexContent,
  indexContent,
  indexDb,
  indexProblemOf,
  parseIndexedRow,
  writeIndexRow,
} from "../ops/conversation-index";
import { settingsOf } from "../settings";
import type { Outbox } from "./outbox";
import { destinationSummaries, publishToKv, snapshotJson } from "./publisher";
import type { SmallState } from "./small-state";

type Output = "kv" | "index";
/** Before the outputs were split, one "publish" job kept these; still honoured once, then deleted. */
const LEGACY_PUBLISH_KEYS = ["publish_failures", "publish_retry_at"] as const;

/** What publication needs of its object. `env` is read on each use (a test may swap it). */
export interface PublicationHost {
  env(): Env;
  sql: SqlStorage;
  outbox: Outbox;
  small: SmallState;
  conversation(): string | undefined;
}

export class Publication {
  /** Changes since the last publication, in memory; after a restart, whether storage changed since. */
  private version = 0;
  private readonly published: Record<Output, number> = { kv: 0, index: 0 };
  /** When the index row was last written by this instance: its interval, while KV (whose time is `published_at`) fails. */
  private indexPublishedAt = 0;
  /** Duplicates per activity bucket since the last publication (src/ops/activity.ts): they leave no row. */
  private readonly duplicates = new Map<number, number>();

  constructor(private readonly host: PublicationHost) {}

  /** Something changed that the next publication shows. */
  changed(): void {
    this.version++;
  }

  /** A duplicate, counted in the activity of the next index row. */
  duplicate(bucket: number): void {
    this.duplicates.set(bucket, (this.duplicates.get(bucket) ?? 0) + 1);
  }

  /** When an output is next due, for the alarm. */
  alarmTimes(): number[] {
    return (["kv", "index"] as const).filter((output) => this.unpublished(output)).map((output) => this.dueAt(output));
  }

  async run(): Promise<void> {
    try {
      await this.publish();
    } catch (error) {
      // Reading the object's own rows failed (a storage error): both outputs wait their back-off.
      log("error", "publish_failed", { conversation: this.host.conversation(), error: String(error) });
      this.host.small.backOff("kv");
      this.host.small.backOff("index");
    }
  }

  /**
   * Publishes what changed to each output that is due: the snapshot to KV (unless
   * SNAPSHOT_INTERVAL_SECONDS is 0) and the conversation's row of the D1 index (when `DB` is
   * bound). Everything is read before the first await, so RPCs that run meanwhile cannot make it
   * inconsistent; their changes go out next time.
   *
   * The two outputs are written side by side and settle apart: each failure backs off its own
   * output only (docs/design.md, "The KV read model"), and is logged once when it starts
   * (`kv_publish_failed`, `index_unavailable`) and once when it ends (`publish_recovered`). The D1
   * row, with its activity buckets (src/ops/activity.ts), is written only when its content changed
   * (its text is kept as `indexed_row`). `published_at` paces both: the snapshot's time, or with
   * SNAPSHOT_INTERVAL_SECONDS=0 the row's (then at most once a minute, INDEX_MIN_INTERVAL_MS).
   * Nothing more is written in the common case: back-off state only on failure.
   */
  private async publish(): Promise<void> {
    const conversation = this.host.conversation();
    if (!conversation) return;
    const version = this.version;
    const now = Date.now();
    const { settings } = settingsOf(this.host.env());
    const db = indexDb(this.host.env());
    // Before the D1 index, each conversation kept a KV dead-letter entry: removed once, never written again.
    const legacyEntry = this.host.small.text("indexed_entry") !== "";
    const snapshotOn = settings.SNAPSHOT_INTERVAL_SECONDS > 0;
    // An output that is off has nothing to catch up on.
    for (const [output, on] of [
      ["kv", snapshotOn || legacyEntry],
      ["index", db !== undefined],
    ] as const) {
      if (on) continue;
      this.published[output] = version;
      this.host.small.recovered(output);
    }
    const kvDue = this.unpublished("kv") && now >= this.dueAt("kv");
    const indexDue = db !== undefined && this.unpublished("index") && now >= this.dueAt("index");
    if (!kvDue && !indexDue) return;

    const snapshot = kvDue && snapshotOn ? snapshotJson(this.host.sql, this.host.outbox, conversation, settings.RECENT_LIMIT, now) : undefined;
    const indexedRow = this.host.small.text("indexed_row");
    const duplicates = new Map(this.duplicates);
    let content: IndexContent | undefined;
    if (indexDue) {
      const previous = parseIndexedRow(indexedRow);
      const source = {
        accepted: this.host.outbox.acceptedSince(previous?.accepted ?? 0),
        settled: (through: number) => this.host.outbox.settledSince(through, now),
      };
      const activity = nextActivity(source, activityOf(previous), duplicates, now);
      content = indexContent(conversation, {
        accepted: this.host.outbox.maxSeq,
        lastAcceptedAt: this.host.outbox.lastAcceptedAt(),
        unrouted: this.host.outbox.unrouted(),
        destinations: destinationSummaries(this.host.outbox, now),
        activity,
      });
    }
    const row = content ? JSON.stringify(content) : indexedRow;
    const [kv, index] = await Promise.allSettled([
      kvDue ? publishToKv(this.host.env().RECEIPTS_KV, conversation, snapshot, legacyEntry) : undefined,
      db && content && row !== indexedRow ? writeIndexRow(db, content, now) : undefined,
    ]);
    const kvOk = kvDue && kv.status === "fulfilled";
    const indexOk = indexDue && index.status === "fulfilled";
    this.host.small.transaction(() => {
      if (kvDue) this.settle("kv", kv, conversation);
      if (indexDue) this.settle("index", index, conversation);
      if (kvOk && legacyEntry) this.host.small.delete("indexed_entry");
      if (indexOk && row !== indexedRow) this.host.small.set("indexed_row", row);
      if ((kvOk && snapshot !== undefined) || (indexOk && !snapshotOn)) this.host.small.set("published_at", String(now));
      if ((kvOk || indexOk) && this.host.small.text(LEGACY_PUBLISH_KEYS[1]) !== "") {
        this.host.small.delete(...LEGACY_PUBLISH_KEYS);
      }
    });
    if (kvOk) this.published.kv = version;
    if (indexOk) {
      this.published.index = version;
      this.indexPublishedAt = now;
      // Counted in this row now; those that came in meanwhile stay for the next one.
      for (const [bucket, n] of duplicates) {
        const left = (this.duplicates.get(bucket) ?? 0) - n;
        if (left > 0) this.duplicates.set(bucket, left);
        else this.duplicates.delete(bucket);
      }
    }
  }

  /**
   * Whether `output` has changes to write: since its last write in memory, or, after a restart
   * (memory lost), while it is failing (the other output may have caught up with `published_at`).
   */
  unpublished(output: Output): boolean {
    return this.version > this.published[output] || this.host.small.number(`${output}_failures`) > 0;
  }

  /** Records one output's result: its back-off, and a log line when a kind of failure starts or ends. */
  private settle(output: Output, result: PromiseSettledResult<unknown>, conversation: string): void {
    const failures = this.host.small.number(`${output}_failures`);
    if (result.status === "fulfilled") {
      if (failures > 0) log("info", "publish_recovered", { conversation, output, failures });
      this.host.small.recovered(output);
      return;
    }
    const problem = output === "index" ? indexProblemOf(result.reason) : undefined;
    const kind = problem?.kind ?? "failing";
    this.host.small.backOff(output);
    // One line per kind of failure, not per attempt: a missing table fails every publication.
    if (failures > 0 && this.host.small.text(`${output}_error`) === kind) return;
    this.host.small.set(`${output}_error`, kind);
    const retryInMs = this.host.small.number(`${output}_retry_at`) - Date.now();
    if (problem) {
      const missing = problem.kind === "unmigrated" ? { missing: problem.missing } : {};
      log("warn", "index_unavailable", { conversation, kind, ...missing, error: problem.message, retryInMs });
    } else log("error", "kv_publish_failed", { conversation, error: String(result.reason).slice(0, 300), retryInMs });
  }

  /**
   * When `output` may next be written. KV takes one write per second per key, and a snapshot is
   * worth one per interval (the D1 row one per interval too, and one a minute at most when there
   * is no snapshot); after failures, the output's own back-off decides.
   */
  dueAt(output: Output): number {
    const { settings } = settingsOf(this.host.env());
    const interval =
      settings.SNAPSHOT_INTERVAL_SECONDS === 0 && indexDb(this.host.env()) ? INDEX_MIN_INTERVAL_MS : Math.max(settings.SNAPSHOT_INTERVAL_SECONDS * 1000, 1000);
    const legacyRetryAt = this.host.small.number(LEGACY_PUBLISH_KEYS[1]);
    if (this.host.small.number(`${output}_failures`) > 0) return Math.max(this.host.small.number(`${output}_retry_at`), legacyRetryAt);
    // While KV fails, `published_at` stands still: the row keeps its own pace from memory.
    const kvFailing = this.host.small.number("kv_failures") > 0;
    const last =
      output === "index" && kvFailing ? Math.max(this.host.small.number("published_at"), this.indexPublishedAt) : this.host.small.number("published_at");
    return Math.max(last + interval, legacyRetryAt);
  }
}

/**
 * The object's `state` table: its few values (schema version, conversation key, publication time,
 * `reads_folded_to`, each job's back-off), in memory so that reading them costs no SQL (the alarm
 * check after every batch reads a dozen keys). Loaded on first use and again when the object says
 * (each alarm run); every write goes through `set`/`delete`; a transaction that throws forgets
 * memory (`transaction`), so a rolled-back value is never kept. Written only when a value changes.
 */
import { z } from "zod";

/** When a job fails (KV down or over quota, a storage error, a destination held), it is tried again
 * after 30 s, doubling with each failure in a row up to an hour. */
export const RECOVERY_FIRST_MS = 30_000;
export const RECOVERY_MAX_MS = 3600_000;

/**
 * The jobs with their own back-off: each destination's deliveries (`delivery:<name>`) and its held
 * rechecks (`held:<name>`), and the two outputs of a publication, the KV snapshot (`kv`) and the D1
 * index row (`index`), which fail and retry apart.
 */
export type Job = `delivery:${string}` | "kv" | "index" | `held:${string}`;

const KeyValueRow = z.object({ key: z.string(), value: z.string() });

export class SmallState {
  private values: Map<string, string> | undefined;

  constructor(
    private readonly sql: SqlStorage,
    private readonly storage: DurableObjectStorage,
  ) {}

  /** Reads the table afresh on next use (each alarm run: memory never drifts from storage for longer). */
  forget(): void {
    this.values = undefined;
  }

  text(key: string): string {
    if (!this.values) {
      // Assigned only once whole: a read that fails leaves nothing half-loaded behind.
      const loaded = new Map<string, string>();
      for (const row of this.sql.exec("SELECT key, value FROM state")) {
        const { key, value } = KeyValueRow.parse(row);
        loaded.set(key, value);
      }
      this.values = loaded;
    }
    return this.values.get(key) ?? "";
  }

  number(key: string): number {
    return Number(this.text(key) || 0);
  }

  set(key: string, value: string): void {
    this.sql.exec("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2", key, value);
    this.values?.set(key, value);
  }

  delete(...keys: string[]): void {
    this.sql.exec(`DELETE FROM state WHERE key IN (${keys.map(() => "?").join(", ")})`, ...keys);
    for (const key of keys) this.values?.delete(key);
  }

  /** `transactionSync`, forgetting memory when it throws: storage rolled back, memory reloads. */
  transaction<T>(body: () => T): T {
    try {
      return this.storage.transactionSync(body);
    } catch (error) {
      this.values = undefined;
      throw error;
    }
  }

  /** Records one more failure of `job` in a row and when to try it again. */
  backOff(job: Job): void {
    const failures = this.number(`${job}_failures`) + 1;
    const wait = Math.min(RECOVERY_FIRST_MS * 2 ** (failures - 1), RECOVERY_MAX_MS);
    this.set(`${job}_failures`, String(failures));
    this.set(`${job}_retry_at`, String(Date.now() + wait));
  }

  /** Clears `job`'s back-off (and the kind of failure last logged); writes only when there was one. */
  recovered(job: Job): void {
    if (this.number(`${job}_failures`) === 0) return;
    this.delete(`${job}_failures`, `${job}_retry_at`, `${job}_error`);
  }
}

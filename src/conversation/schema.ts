/**
 * The conversation object's SQLite schema and its migrations (docs/design.md, "Storage").
 *
 * Deployed objects keep their tables forever, so every change is a numbered step here, run in
 * order before any request reaches the object, and recorded as `schema_version` in `state`.
 * A new object is created at the latest version directly. Never edit a step that has shipped:
 * add the next one.
 */
import { z } from "zod";

/** Delivery status codes, stored as small integers (per destination since v4). */
export const PENDING = 0;
export const DELIVERED = 1;
export const FAILED = 2;
/** v4: the destination's match no longer takes the receipt when its turn came, or its dead letter was purged: settled, never sent. */
export const SKIPPED = 3;

/**
 * v2: one row per receipt that is also its delivery state; no secondary index (each index
 * would add a row written per insert, update and delete). The receipt id is looked up in memory,
 * loaded from this table when the object starts. `seq` is assigned by the object (the rowid, no
 * AUTOINCREMENT bookkeeping table). `state` holds the object's few values, written only when they change.
 * Kept as shipped: step 2 creates it, step 3 changes it.
 */
export const SCHEMA_V2 = `
  CREATE TABLE receipts (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    read_at TEXT NOT NULL,
    body TEXT NOT NULL,
    status INTEGER NOT NULL,
    accepted_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_attempt_at INTEGER,
    last_status INTEGER,
    last_error TEXT,
    settled_at INTEGER,
    batch INTEGER
  );
  CREATE TABLE reads (reader TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`;

/**
 * v3: v2 plus `attempt_log`, each attempt of the receipt as JSON, `[[startedAt, ms,
 * status|null, error|null], …]` (outbox.ts, ATTEMPT_LOG_MAX newest). Written in the same UPDATE as
 * the attempt's result, so it costs no row written; kept across replays. Kept as shipped.
 */
export const SCHEMA_V3 = SCHEMA_V2.replace("    batch INTEGER\n", "    batch INTEGER,\n    attempt_log TEXT\n");

/**
 * v4 (latest): destinations (docs/destinations.md). A receipt is stored once; `routes` names the
 * destinations it is owed to, fixed at acceptance (`,crm,origin,`, '' when none matched: unrouted);
 * `deliveries` is its delivery state per destination, a JSON object `{name: DeliveryRecord}`
 * (outbox.ts), written in the one UPDATE that records an attempt's result. A destination without
 * an entry has not been attempted yet. So a receipt costs one row written to store, one per
 * destination to settle, and none to prune (its row is reused by a later receipt, outbox.ts).
 */
const LATEST = `
  CREATE TABLE receipts (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    read_at TEXT NOT NULL,
    body TEXT NOT NULL,
    accepted_at INTEGER NOT NULL,
    routes TEXT NOT NULL DEFAULT '',
    deliveries TEXT
  );
  CREATE TABLE reads (reader TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`;

/** The one destination every receipt went to before v4 (ORIGIN_URL): its state moves under this name. */
export const LEGACY_DESTINATION = "origin";

/** v1, as shipped first: kept to describe what step 2 migrates from (and for its test). */
export const SCHEMA_V1 = `
  CREATE TABLE IF NOT EXISTS receipts (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, seen_at INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS seen_by_age ON seen (seen_at);
  CREATE TABLE IF NOT EXISTS reads (reader TEXT PRIMARY KEY, state TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY, receipt_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'failed')), attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL, last_attempt_at INTEGER,
    last_status INTEGER, last_error TEXT, failed_at INTEGER);
  CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, seq);
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

export const SCHEMA_VERSION = 4;

const tableExists = (sql: SqlStorage, name: string) => sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", name).toArray().length > 0;

const ValueRow = z.object({ value: z.string() });

/** The stored schema version: 0 for an object that never stored anything. */
export function schemaVersion(sql: SqlStorage): number {
  if (tableExists(sql, "state")) {
    const row = sql.exec("SELECT value FROM state WHERE key = 'schema_version'").toArray()[0];
    return row ? Number(ValueRow.parse(row).value) : SCHEMA_VERSION;
  }
  return tableExists(sql, "meta") ? 1 : 0;
}

/** Creates the latest schema in an empty object. */
export function createLatest(sql: SqlStorage): void {
  sql.exec(LATEST);
  // `reads_folded_to`: read state is written behind the receipts from v4 on (reads.ts).
  sql.exec("INSERT INTO state (key, value) VALUES ('schema_version', ?), ('reads_folded_to', '0')", String(SCHEMA_VERSION));
}

const V1Receipt = z.object({ seq: z.number(), id: z.string(), body: z.string() });
const V1Outbox = z.object({
  seq: z.number(),
  receipt_id: z.string(),
  body: z.string(),
  status: z.enum(["pending", "failed"]),
  attempts: z.number(),
  next_attempt_at: z.number(),
  created_at: z.number(),
  last_attempt_at: z.number().nullable(),
  last_status: z.number().nullable(),
  last_error: z.string().nullable(),
  failed_at: z.number().nullable(),
});
const V1Seen = z.object({ id: z.string(), seen_at: z.number() });
const V1Meta = z.object({ key: z.string(), value: z.string() });
/** What step 2 needs of a stored receipt or webhook body. */
const ReadAtOf = z.looseObject({ readAt: z.string() });
const WebhookData = z.looseObject({ data: z.looseObject({ readAt: z.string() }) });

/**
 * v1 → v2. v1 kept receipts, a separate `seen` id table, an `outbox` of pending and failed
 * deliveries (with the whole webhook body), and `meta`. Now:
 * - a receipt with an outbox row keeps that row's delivery state; one without was delivered (or,
 *   under v1, stored while forwarding was off: it is not sent now, as v1 promised);
 * - an outbox row whose receipt was already pruned from `receipts` comes back from its webhook body;
 * - a seen id with no receipt becomes a tombstone row (empty body) that only deduplicates, until pruned;
 * - `meta` values move to `state`; the published version becomes the published sequence number.
 */
function migrateV1toV2(sql: SqlStorage, now: number): void {
  const receipts = sql
    .exec("SELECT seq, id, body FROM receipts")
    .toArray()
    .map((row) => V1Receipt.parse(row));
  const outbox = new Map(
    sql
      .exec("SELECT * FROM outbox")
      .toArray()
      .map((row) => V1Outbox.parse(row))
      .map((row) => [row.seq, row]),
  );
  const seen = sql
    .exec("SELECT id, seen_at FROM seen ORDER BY seen_at")
    .toArray()
    .map((row) => V1Seen.parse(row));
  const meta = new Map(
    sql
      .exec("SELECT key, value FROM meta")
      .toArray()
      .map((row) => {
        const parsed = V1Meta.parse(row);
        return [parsed.key, parsed.value];
      }),
  );
  sql.exec("ALTER TABLE receipts RENAME TO receipts_v1");
  sql.exec("ALTER TABLE reads RENAME TO reads_v1");
  sql.exec(SCHEMA_V2);
  sql.exec("INSERT INTO reads (reader, state) SELECT reader, state FROM reads_v1");

  const insert = (seq: number, id: string, readAt: string, body: string, status: number, acceptedAt: number, delivery?: z.infer<typeof V1Outbox>) =>
    sql.exec(
      `INSERT INTO receipts (seq, id, read_at, body, status, accepted_at, attempts, next_attempt_at, last_attempt_at, last_status, last_error, settled_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      seq,
      id,
      readAt,
      body,
      status,
      acceptedAt,
      delivery?.attempts ?? 0,
      delivery?.next_attempt_at ?? 0,
      delivery?.last_attempt_at ?? null,
      delivery?.last_status ?? null,
      delivery?.last_error ?? null,
      delivery?.failed_at ?? null,
    );

  const known = new Set<string>();
  const seenAt = new Map(seen.map((row) => [row.id, row.seen_at]));
  for (const receipt of receipts) {
    const delivery = outbox.get(receipt.seq);
    outbox.delete(receipt.seq);
    const readAt = ReadAtOf.safeParse(JSON.parse(receipt.body)).data?.readAt ?? "";
    const status = delivery ? (delivery.status === "pending" ? PENDING : FAILED) : DELIVERED;
    insert(receipt.seq, receipt.id, readAt, receipt.body, status, delivery?.created_at ?? seenAt.get(receipt.id) ?? now, delivery);
    known.add(receipt.id);
  }
  for (const delivery of outbox.values()) {
    // Pruned from the recent receipts but not yet delivered: the webhook body holds the receipt.
    const data = WebhookData.safeParse(JSON.parse(delivery.body)).data?.data;
    if (!data) continue;
    insert(
      delivery.seq,
      delivery.receipt_id,
      data.readAt,
      JSON.stringify(data),
      delivery.status === "pending" ? PENDING : FAILED,
      delivery.created_at,
      delivery,
    );
    known.add(delivery.receipt_id);
  }
  // Seen ids without a row: tombstones below every real sequence number, oldest first.
  const tombstones = seen.filter((row) => !known.has(row.id));
  tombstones.forEach((row, index) => insert(index - tombstones.length, row.id, "", "", DELIVERED, row.seen_at));

  const carried = [
    "conversation",
    "delivery_failures",
    "delivery_retry_at",
    "publish_failures",
    "publish_retry_at",
    "held_failures",
    "held_retry_at",
    "published_at",
  ];
  for (const key of carried) {
    const value = meta.get(key);
    if (value !== undefined) sql.exec("INSERT INTO state (key, value) VALUES (?, ?)", key, value);
  }
  // `published_seq` is written but never read: whether a migrated conversation is due again is
  // decided at load from `published_at` (carried above) and the outbox's last change (object.ts).
  // Kept so that the migration writes what it always has.
  const unpublished = Number(meta.get("version") ?? 0) > Number(meta.get("published_version") ?? 0);
  const maxSeq = receipts.reduce((max, receipt) => Math.max(max, receipt.seq), 0);
  sql.exec("INSERT INTO state (key, value) VALUES ('published_seq', ?)", String(unpublished ? -1 : maxSeq));
  sql.exec("INSERT INTO state (key, value) VALUES ('schema_version', '2')");
  sql.exec("DROP TABLE receipts_v1; DROP TABLE reads_v1; DROP TABLE outbox; DROP TABLE seen; DROP TABLE meta");
}

/** v2 → v3: the attempt log (empty for attempts made before; `attempts` still counts them). */
function migrateV2toV3(sql: SqlStorage): void {
  sql.exec("ALTER TABLE receipts ADD COLUMN attempt_log TEXT");
}

/**
 * v3 → v4: each receipt with a body is owed to `origin` (the ORIGIN_URL destination), with its
 * v3 delivery state as that destination's record: pending and failed receipts go on to `origin`
 * after the upgrade, delivered ones keep their history. Tombstones stay unrouted. A new table and
 * one copy (each row written once), rather than nine DROP COLUMNs that rewrite the table each.
 */
function migrateV3toV4(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE receipts_v4 (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, read_at TEXT NOT NULL, body TEXT NOT NULL, accepted_at INTEGER NOT NULL,
    routes TEXT NOT NULL DEFAULT '', deliveries TEXT)`);
  sql.exec(
    `INSERT INTO receipts_v4 (seq, id, read_at, body, accepted_at, routes, deliveries)
     SELECT seq, id, read_at, body, accepted_at,
       CASE WHEN body = '' THEN '' ELSE ',' || ?1 || ',' END,
       CASE WHEN body = '' OR (status = ?2 AND attempts = 0) THEN NULL ELSE json_object(?1, json_object(
         's', status, 'n', attempts, 't', next_attempt_at, 'a', last_attempt_at, 'c', last_status, 'e', last_error,
         'd', settled_at, 'b', batch, 'l', json(coalesce(attempt_log, '[]')))) END
     FROM receipts`,
    LEGACY_DESTINATION,
    PENDING,
  );
  sql.exec("DROP TABLE receipts");
  sql.exec("ALTER TABLE receipts_v4 RENAME TO receipts");
  // Before v4 every receipt was folded into `reads` when accepted; from now on it is written behind (reads.ts).
  sql.exec("INSERT INTO state (key, value) SELECT 'reads_folded_to', CAST(coalesce(max(seq), 0) AS TEXT) FROM receipts");
}

/** Ordered steps: `steps[n]` takes version n+1 to n+2. */
const steps: ((sql: SqlStorage, now: number) => void)[] = [migrateV1toV2, migrateV2toV3, (sql) => migrateV3toV4(sql)];

/** Brings the schema to the latest version; returns the version it found. Run inside a transaction. */
export function migrate(sql: SqlStorage, now: number): number {
  const found = schemaVersion(sql);
  if (found === 0) return 0;
  for (let version = found; version < SCHEMA_VERSION; version++) {
    const step = steps[version - 1];
    if (!step) throw new Error(`no migration from schema version ${version}`);
    step(sql, now);
  }
  if (found < SCHEMA_VERSION) sql.exec("UPDATE state SET value = ? WHERE key = 'schema_version'", String(SCHEMA_VERSION));
  return found;
}

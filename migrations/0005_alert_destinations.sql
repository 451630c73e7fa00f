-- Alert state per destination (src/ops/alerts.ts, docs/alerts-and-stats.md#alert-state): one row
-- per destination, `id` its name (DESTINATIONS; `origin` for ORIGIN_URL), with the columns of
-- migration 0002 unchanged. The table of 0002 allowed one row only (`id INTEGER PRIMARY KEY
-- CHECK (id = 1)`), and SQLite cannot change a column's type or drop a CHECK in place, so the
-- table is rebuilt: its row, the relay-wide state from before destinations, becomes `origin`'s.
CREATE TABLE alert_state_by_destination (
  id TEXT PRIMARY KEY NOT NULL,
  checked_at INTEGER NOT NULL,
  dead_letter_since INTEGER NOT NULL,
  dead_letter_sent_at INTEGER,
  origin_failing_sent_at INTEGER,
  recovered_sent_at INTEGER,
  failing_raised INTEGER NOT NULL DEFAULT 0
);
INSERT INTO alert_state_by_destination (id, checked_at, dead_letter_since, dead_letter_sent_at, origin_failing_sent_at, recovered_sent_at, failing_raised)
  SELECT 'origin', checked_at, dead_letter_since, dead_letter_sent_at, origin_failing_sent_at, recovered_sent_at, failing_raised FROM alert_state;
DROP TABLE alert_state;
ALTER TABLE alert_state_by_destination RENAME TO alert_state;

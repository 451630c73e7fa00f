-- Alert state (src/ops/alerts.ts): one row, written by the Cron Trigger once a minute at most.
-- Times are milliseconds since the epoch.
--   dead_letter_since: dead letters first failed at or before this are already covered (alerted, or
--     found nothing); the next dead_letter digest covers those after it.
--   *_sent_at: when the last alert of that kind was delivered (at most one per kind per 15 minutes).
--   failing_raised: 1 once an origin_failing alert went out, until a recovered alert does.
CREATE TABLE alert_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  checked_at INTEGER NOT NULL,
  dead_letter_since INTEGER NOT NULL,
  dead_letter_sent_at INTEGER,
  origin_failing_sent_at INTEGER,
  recovered_sent_at INTEGER,
  failing_raised INTEGER NOT NULL DEFAULT 0
);

-- The relay-wide conversation index (src/ops/conversation-index.ts): one row per conversation,
-- written by that conversation's object when it publishes (at most once per
-- SNAPSHOT_INTERVAL_SECONDS, once a minute when that is 0) and only when the row changed. The
-- objects are the truth; a row may lag its object by one interval.
CREATE TABLE conversations (
  key TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  app TEXT NOT NULL,
  chat TEXT NOT NULL,
  accepted INTEGER NOT NULL,
  last_receipt_at TEXT,
  pending INTEGER NOT NULL,
  failed INTEGER NOT NULL,
  oldest_failed_at TEXT,
  last_error TEXT,
  last_delivered_at TEXT,
  last_latency_ms INTEGER,
  updated_at TEXT NOT NULL
);

-- Listing one provider's conversations in key order.
CREATE INDEX conversations_by_provider ON conversations (provider, key);
-- Conversations with dead letters (the failing view and bulk replay): a partial index holds only
-- those, so an upsert of a healthy conversation writes no row here.
CREATE INDEX conversations_failing ON conversations (key) WHERE failed > 0;

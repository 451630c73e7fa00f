-- Each conversation's recent activity (src/ops/activity.ts): receipts accepted, duplicates,
-- deliveries, retries and dead letters in 5-minute buckets over the last day, as JSON, written with
-- the rest of the row (no extra row written). GET /v1/stats sums it per provider. Rows written
-- before this migration have none until their conversation next publishes.
ALTER TABLE conversations ADD COLUMN activity TEXT;

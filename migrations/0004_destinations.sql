-- Destinations (docs/destinations.md): each conversation's row says, per destination, what is
-- pending, its dead letters (count, oldest, last error), its last delivery and the last hour's
-- delivery latencies (a histogram), as JSON written with the rest of the row (no extra row
-- written); and how many of its kept receipts matched no destination. GET /v1/destinations and
-- GET /v1/stats sum them. Rows written before this migration have none until their conversation
-- next publishes.
ALTER TABLE conversations ADD COLUMN destinations TEXT;
ALTER TABLE conversations ADD COLUMN unrouted INTEGER NOT NULL DEFAULT 0;
-- Conversations with dead letters for one destination are found through the `failed > 0` partial
-- index and then filtered on this JSON: no new index, so no extra row written per upsert.

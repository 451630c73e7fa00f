/**
 * Runs before each test file (vitest.config.ts, `setupFiles`): applies the D1 migrations
 * (migrations/*.sql, read in Node by vitest.config.ts and bound as TEST_MIGRATIONS) to the test
 * database, as `wrangler d1 migrations apply` would. Applied migrations are recorded, so a second
 * run applies nothing.
 */
import { applyD1Migrations, type D1Migration } from "cloudflare:test";
import { env } from "cloudflare:workers";

const { TEST_MIGRATIONS } = env as unknown as { TEST_MIGRATIONS: D1Migration[] };
await applyD1Migrations(env.DB, TEST_MIGRATIONS);

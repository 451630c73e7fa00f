import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { testSettings } from "./test/support/settings.ts";
// The dashboard's browser script, built into the string module the Worker imports (not committed).
import "./src/dashboard/browser/build.mjs";

export default defineConfig({
  plugins: [
    cloudflareTest(async ({ inject }) => ({
      wrangler: { configPath: "./wrangler.toml" },
      // Every setting is bound here, so a developer's .dev.vars cannot change what the tests see.
      // TEST_MIGRATIONS: the D1 migrations, applied by test/support/d1-setup.ts.
      miniflare: {
        bindings: {
          ...testSettings,
          ORIGIN_URL: `http://127.0.0.1:${inject("originPort")}/receipts`,
          TEST_MIGRATIONS: await readD1Migrations(fileURLToPath(new URL("./migrations", import.meta.url))),
        },
        // A D1 database no migration is ever applied to: an index whose tables are missing (test/index-unavailable.test.ts).
        d1Databases: { UNMIGRATED_DB: "unmigrated-test-db" },
      },
    })),
  ],
  test: {
    globalSetup: ["./test/support/global-setup.ts"],
    setupFiles: ["./test/support/d1-setup.ts", "./test/support/quiesce.ts"],
    // Files run in parallel: the one origin answers each conversation as its test scripted it, and
    // no test changes it for others. Two workers keep the pool lean (each runs its own workerd).
    // test/support/quiesce.ts leaves no alarm behind a file: one firing as the pool moves on made
    // runs hang now and then with every test passed.
    maxWorkers: 2,
    testTimeout: 30_000,
    // The relay logs a JSON line per event; show them only for failing tests.
    silent: "passed-only",
  },
});

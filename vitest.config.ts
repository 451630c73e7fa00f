import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { testSettings } from "./test/support/settings.ts";

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: "./wrangler.toml" },
      // Every setting is bound here, so a developer's .dev.vars cannot change what the tests see.
      miniflare: {
        bindings: { ...testSettings, ORIGIN_URL: `http://127.0.0.1:${inject("originPort")}/receipts` },
      },
    })),
  ],
  test: {
    globalSetup: ["./test/support/global-setup.ts"],
    // One origin serves the run and one test takes its listener down: files run one at a time.
    fileParallelism: false,
    testTimeout: 30_000,
    // The relay logs a JSON line per event; show them only for failing tests.
    silent: "passed-only",
  },
});

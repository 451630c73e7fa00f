// @ts-check
// Command-line flags for the scripts that take named flags (check-config, smoke, deploy): parsed
// with node:util's parseArgs, `--help` and a bad flag answered alike everywhere.
import { parseArgs } from "node:util";

/**
 * The flags' values; or, for `--help` (usage printed, exit 0) and a flag parseArgs refuses
 * (message and usage on stderr, exit 2), the exit code to end with.
 * @param {Record<string, { type: "string" | "boolean", short?: string }>} options the flags, as parseArgs takes them (`--help`/`-h` is added)
 * @param {string} usage
 * @param {string[]} [args]
 * @returns {{ values: Record<string, string | boolean | undefined>, exitCode?: undefined } | { values?: undefined, exitCode: number }}
 */
export function parseFlags(options, usage, args = process.argv.slice(2)) {
  try {
    const { values } = parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true });
    if (values.help) {
      console.log(usage);
      return { exitCode: 0 };
    }
    return { values };
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n${usage}`);
    return { exitCode: 2 };
  }
}

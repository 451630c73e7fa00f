// The bench's command-line options. `options` is filled once by parseOptions (the entry calls it
// first), so that every module reads the same values.

export const OPTIONS = {
  seconds: { value: 5, min: 1, max: 120, help: "seconds per load run" },
  connections: { value: 8, min: 1, max: 256, help: "concurrent connections per load run" },
  pairs: { value: 3, min: 1, max: 20, help: "ABBA pairs (no-op, relay) per scenario" },
  "hot-seconds": { value: 10, min: 2, max: 300, help: "seconds of load on the hot conversation" },
  "quiet-seconds": { value: 65, min: 5, max: 600, help: "measured window of the quiet storage cases (> the 60 s snapshot interval)" },
  "quiet-conversations": { value: 100, min: 1, max: 5000, help: "conversations in the quiet storage cases" },
  "quiet-spacing": { value: 3, min: 1, max: 60, help: "seconds between two receipts of one quiet conversation" },
  "destinations-seconds": { value: 20, min: 5, max: 300, help: "seconds of steady load in each destinations case (1, 2 and 3 destinations)" },
  "destinations-rate": { value: 40, min: 1, max: 500, help: "receipts per second in the destinations cases, over 20 conversations" },
  "burst-seconds": { value: 10, min: 1, max: 60, help: "seconds of each load run of the burst into one conversation" },
  "burst-connections": { value: 32, min: 1, max: 256, help: "concurrent connections of the burst into one conversation" },
  "burst-pairs": { value: 1, min: 1, max: 10, help: "no-op/relay pairs of the burst into one conversation" },
};
const LOG_LEVELS = ["debug", "info", "warn", "error"];
const FLAGS = {
  quick: "smoke run: 1 pair of 2 s runs, 5 s hot load, 12 s quiet window (its KV figure is then not steady state)",
};

export const options = {};

/** Parses argv into `options` (and returns it); `--help` prints the options and exits. */
export function parseOptions(argv, scenarioIds) {
  const values = Object.fromEntries(Object.entries(OPTIONS).map(([name, option]) => [name, option.value]));
  values.quick = false;
  values.only = undefined;
  values["log-level"] = "warn";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") {
      console.log("usage: node bench/run.mjs [options]   (npm run bench -- [options])");
      for (const [name, { value, help }] of Object.entries(OPTIONS)) console.log(`  --${name.padEnd(20)} ${help} (default ${value})`);
      for (const [name, help] of Object.entries(FLAGS)) console.log(`  --${name.padEnd(20)} ${help}`);
      console.log(`  --${"only".padEnd(20)} run only the scenarios whose id matches this regex (ids: ${scenarioIds.join(", ")})`);
      console.log(`  --${"log-level".padEnd(20)} the relay's LOG_LEVEL: ${LOG_LEVELS.join(", ")} (default warn, as deployed)`);
      process.exit(0);
    }
    const name = arg.replace(/^--/, "");
    if (name in FLAGS) {
      values[name] = true;
      continue;
    }
    if (name === "log-level") {
      values[name] = argv[++i];
      if (!LOG_LEVELS.includes(values[name])) fail(`bad --log-level: one of ${LOG_LEVELS.join(", ")}`);
      continue;
    }
    if (name === "only") {
      try {
        values.only = new RegExp(argv[++i] ?? "");
      } catch {
        fail(`bad --only regex`);
      }
      continue;
    }
    const option = OPTIONS[name];
    const value = Number(argv[i + 1]);
    if (!arg.startsWith("--") || !option || !Number.isInteger(value) || value < option.min || value > option.max) {
      fail(`bad option ${arg} ${argv[i + 1] ?? ""}: see --help (each takes an integer within its bounds)`);
    }
    values[name] = value;
    i++;
  }
  if (values.quick) {
    const given = (name) => argv.includes(`--${name}`);
    if (!given("seconds")) values.seconds = 2;
    if (!given("pairs")) values.pairs = 1;
    if (!given("hot-seconds")) values["hot-seconds"] = 5;
    if (!given("quiet-seconds")) values["quiet-seconds"] = 12;
    if (!given("quiet-conversations")) values["quiet-conversations"] = 40;
    if (!given("burst-seconds")) values["burst-seconds"] = 5;
    if (!given("destinations-seconds")) values["destinations-seconds"] = 8;
  }
  return Object.assign(options, values);
}

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(2);
}

/** Whether a scenario (or the hot, quiet or burst phase) is to run under `--only`. */
export const wanted = (id) => !options.only || options.only.test(id);

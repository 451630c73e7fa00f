#!/usr/bin/env node
// `npm run check`, first step: fails on what would make a deploy of wrangler.toml go wrong.
//   - a placeholder KV namespace id or D1 database_id (zeros, <id>): leave the id out instead, and
//     `wrangler deploy` provisions the resource (docs/deploy.md); a D1 binding with neither
//     database_id nor database_name (`npm run deploy` finds the database by its name);
//   - a [[ratelimits]] binding without namespace_id, or with a period other than 10 or 60;
//   - a [vars] value the relay would refuse, judged by the relay's own schemas (src/settings.ts,
//     src/destinations/config.ts and each provider's `settings`); a [vars] name the relay does not
//     read; a secret in [vars].
// Usage: node scripts/check-config.mjs [--env NAME] [--config PATH]
//   CLOUDFLARE_ENV=NAME does what --env does (for `npm run check`, whose arguments would go to
//   wrangler; wrangler reads it too).
import { parseFlags } from "./lib/cli.mjs";
import { loadRelay, root } from "./samples.mjs";

const usage = "usage: node scripts/check-config.mjs [--env NAME] [--config PATH]";
const flags = parseFlags({ env: { type: "string" }, config: { type: "string" } }, usage);
if (!flags.values) process.exit(flags.exitCode);
const options = flags.values;
const envName = options.env ?? (process.env.CLOUDFLARE_ENV || undefined);
const configPath = options.config ?? `${root}wrangler.toml`;
const shownPath = options.config ?? "wrangler.toml";

/** @type {string[]} */
const errors = [];
/** @type {string[]} */
const notes = [];

// wrangler's own reader (the pinned wrangler's: `experimental_` is fine at a pinned version).
const { experimental_readRawConfig } = await import("wrangler");
let raw;
try {
  raw = experimental_readRawConfig({ config: configPath }).rawConfig;
} catch (error) {
  console.error(`✗ ${shownPath} cannot be read: ${error.message}`);
  process.exit(1);
}

// Bindings and [vars] are not inherited by an environment: [env.NAME] declares its own.
const section = envName === undefined ? raw : raw.env?.[envName];
const where = (table) => (envName === undefined ? table : table.replace(/^(\[+)/, `$1env.${envName}.`));
if (section === undefined) {
  console.error(`✗ ${shownPath} has no [env.${envName}] section`);
  process.exit(1);
}

/** All zeros (dashes aside), or an obvious stand-in like <id> or xxxx. */
const isPlaceholder = (id) => /^[0-]+$/.test(id) || /[<>]|x{4}|your|placeholder|todo/i.test(id);

for (const [i, namespace] of (section.kv_namespaces ?? []).entries()) {
  const name = `${where("[[kv_namespaces]]")} ${namespace.binding ?? `#${i + 1}`}`;
  if (namespace.id === undefined) notes.push(`${name}: no id: \`wrangler deploy\` creates a namespace for it, or keeps the deployed Worker's`);
  else if (typeof namespace.id !== "string" || isPlaceholder(namespace.id)) {
    errors.push(`${name}: id "${namespace.id}" is a placeholder: remove the line, and \`wrangler deploy\` creates the namespace`);
  } else if (!/^[0-9a-f]{32}$/i.test(namespace.id)) errors.push(`${name}: id "${namespace.id}" is not a KV namespace id (32 hexadecimal digits)`);
}

for (const [i, database] of (section.d1_databases ?? []).entries()) {
  const name = `${where("[[d1_databases]]")} ${database.binding ?? `#${i + 1}`}`;
  if (database.database_id !== undefined && (typeof database.database_id !== "string" || isPlaceholder(database.database_id))) {
    errors.push(
      `${name}: database_id "${database.database_id}" is a placeholder: remove the line, and \`wrangler deploy\` creates or binds the database named by database_name`,
    );
  } else if (database.database_id === undefined && !database.database_name) {
    errors.push(
      `${name}: give it a database_name (e.g. "receipt-relay"): \`wrangler deploy\` creates the database under it and \`npm run deploy\` finds it by it to apply migrations`,
    );
  } else if (database.database_id === undefined) {
    notes.push(`${name}: no database_id: \`wrangler deploy\` creates database "${database.database_name}", or binds it if it exists`);
  }
}

for (const [i, limiter] of (section.ratelimits ?? []).entries()) {
  const name = `${where("[[ratelimits]]")} ${limiter.name ?? `#${i + 1}`}`;
  if (limiter.namespace_id === undefined || limiter.namespace_id === "") {
    errors.push(`${name}: namespace_id is missing: set any number unique to this limiter in your account, e.g. namespace_id = "1001"`);
  } else if (!/^\d+$/.test(String(limiter.namespace_id)))
    errors.push(`${name}: namespace_id "${limiter.namespace_id}" must be a positive whole number, as a string`);
  if (!limiter.simple || !Number.isInteger(limiter.simple.limit) || limiter.simple.limit < 1) {
    errors.push(`${name}: simple.limit must be a positive whole number, e.g. simple = { limit = 20, period = 60 }`);
  }
  if (limiter.simple && limiter.simple.period !== 10 && limiter.simple.period !== 60) errors.push(`${name}: simple.period must be 10 or 60 (seconds)`);
}

// [vars]: each value as the relay would judge it, setting by setting. A rule that ties a setting
// to another (FORWARD_SECRET with ORIGIN_URL) is not judged: the other is usually a secret.
const vars = section.vars ?? {};
const { parseSettings, parseGroup, parseDestinations, providers } = await loadRelay();
const relaySettingNames = Object.keys(parseSettings({}).settings);
const known = new Map(relaySettingNames.map((name) => [name, "the relay"]));
known.set("DESTINATIONS", "the relay");
for (const provider of Object.values(providers)) for (const name of Object.keys(provider.settings.shape)) known.set(name, provider.name);
const present = (setting) => Object.hasOwn(vars, setting);

// DESTINATIONS (src/destinations/config.ts): a JSON string, or an array of tables. Judged by the
// relay's own parser, as if every secret setting a destination names held a valid secret (they
// are secrets: this file cannot see them). The settings it names are settings the relay reads.
if (present("DESTINATIONS")) {
  let elements = vars.DESTINATIONS;
  if (typeof elements === "string") {
    try {
      elements = JSON.parse(elements);
    } catch {
      elements = [];
    }
  }
  const standIn = `whsec_${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64")}`;
  const env = { ...vars };
  for (const element of Array.isArray(elements) ? elements : []) {
    const secret = element && typeof element === "object" ? element.secret : undefined;
    if (typeof secret !== "string" || !/^[A-Z][A-Z0-9_]*$/.test(secret)) continue;
    known.set(secret, "DESTINATIONS");
    // A secret put in [vars] is reported below; its value is not judged here.
    env[secret] = standIn;
    if (typeof vars[secret] === "string" && vars[secret].trim() !== "" && !/SECRET|TOKEN/.test(secret)) {
      errors.push(
        `${where("[vars]")} ${secret} is a secret (DESTINATIONS names it): remove it from ${shownPath} and run \`npx wrangler secret put ${secret}\``,
      );
    }
  }
  const defaults = { schedule: [5], timeoutMs: 10_000, batchMax: 1 };
  for (const { setting, problem } of parseDestinations(env, defaults).problems) {
    if (setting === "DESTINATIONS") errors.push(`${where("[vars]")} DESTINATIONS ${problem} (the relay would refuse it; it configures destinations)`);
  }
}

/** Each refused setting once, with what it configures (MAX_EVENT_AGE_SECONDS serves several providers). */
const refused = new Map();
const refuse = (setting, problem, feature) => {
  const entry = refused.get(setting) ?? { problem, features: [] };
  entry.features.push(feature);
  refused.set(setting, entry);
};
// DESTINATIONS is judged above, with its secrets stood in for.
for (const problem of parseSettings(vars).problems) {
  if (present(problem.setting) && problem.setting !== "DESTINATIONS") refuse(problem.setting, problem.problem, problem.feature);
}
for (const provider of Object.values(providers)) {
  for (const problem of parseGroup(provider.settings, vars).problems) if (present(problem.setting)) refuse(problem.setting, problem.problem, provider.name);
}
for (const [setting, { problem, features }] of refused) {
  const value = vars[setting];
  const what = typeof value === "string" ? problem : `must be a quoted string: ${setting} = "${value}"`;
  errors.push(`${where("[vars]")} ${setting} ${what} (the relay would refuse it; it configures ${features.join(", ")})`);
}
for (const name of Object.keys(vars)) {
  if (!known.has(name)) errors.push(`${where("[vars]")} ${name}: the relay reads no setting of this name (a typo?); settings: README.md, "Settings"`);
  else if (/SECRET|TOKEN/.test(name) && typeof vars[name] === "string" && vars[name].trim() !== "") {
    errors.push(`${where("[vars]")} ${name} is a secret: remove it from ${shownPath} and run \`npx wrangler secret put ${name}\``);
  }
}

const unique = [...new Set(errors)];
const label = envName === undefined ? shownPath : `${shownPath} [env.${envName}]`;
for (const note of notes) console.log(`  note: ${note}`);
if (unique.length > 0) {
  console.error(`✗ ${label}: ${unique.length} problem${unique.length === 1 ? "" : "s"} to fix before deploying:`);
  for (const failure of unique) console.error(`  - ${failure}`);
  process.exit(1);
}
console.log(`✓ ${label}: ids, rate limiters and [vars] (${Object.keys(vars).length} checked with the relay's schemas) are fine`);

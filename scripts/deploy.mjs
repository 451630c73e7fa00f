#!/usr/bin/env node
// `npm run deploy`: the whole deploy in one command (docs/deploy.md).
//   check → logged in? → does the D1 database exist? →
//     first deploy: queues → deploy (wrangler creates the KV namespace and the D1 database) → migrations
//     upgrade:      migrations (new columns exist before the code that uses them) → queues → deploy
//   → each provider's callback URL and what is still unset, from the deployed /healthz.
// Usage: npm run deploy -- [--secrets FILE] [--env NAME] [--url URL] [--dry-run]
// The plan and the summary are pure functions, tested by test/scripts/deploy-test.mjs.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseFlags } from "./lib/cli.mjs";
import { loadRelay } from "./samples.mjs";

export const usage = `usage: npm run deploy -- [--secrets FILE] [--env NAME] [--url URL] [--dry-run]
  --secrets FILE  upload the secrets in FILE with the deploy (JSON, or NAME=value lines as in
                  .dev.vars; git-ignored names: *.vars, *.vars.json). Others are kept.
  --env NAME      deploy [env.NAME] of wrangler.toml (e.g. staging)
  --url URL       where the relay answers, when wrangler prints no URL (routes only)
  --dry-run       print the plan, run the check and \`wrangler deploy --dry-run\`; no account needed`;

/**
 * What to paste in each registered provider's console (`Provider.console`, src/providers/): its
 * callback path, OpenIM's token as a placeholder (never printed), and a note.
 */
const { registry } = await loadRelay();
/** @type {Record<string, string>} */
export const callbackPaths = Object.fromEntries(registry.map((provider) => [provider.name, provider.console?.path ?? `/v1/hooks/${provider.name}`]));
/** @type {Record<string, string | undefined>} */
const callbackNotes = Object.fromEntries(registry.map((provider) => [provider.name, provider.console?.note]));

/**
 * @typedef {{ binding: string, database_name?: string, database_id?: string, migrations_dir?: string, migrations_table?: string }} Database
 * @typedef {{ name: string, command: string[], why: string, env?: Record<string, string> }} Step
 */

/** `--env NAME` for wrangler, when one is given. */
const envArgs = (env) => (env ? ["--env", env] : []);

/** What runs before the plan can be chosen: local check, login, and whether the database exists. */
export function preflight({ env, database }) {
  /** @type {Step[]} */
  const steps = [
    {
      name: "check",
      command: ["npm", "run", "check"],
      why: "wrangler.toml, types and the bundle, before anything is uploaded",
      ...(env ? { env: { CLOUDFLARE_ENV: env } } : {}),
    },
    { name: "login", command: ["wrangler", "whoami", "--json"], why: "logged in to Cloudflare (wrangler login, or CLOUDFLARE_API_TOKEN)" },
  ];
  if (database) {
    steps.push({
      name: "find-database",
      command: ["wrangler", "d1", "list", "--json"],
      why: `does D1 database "${database.database_name}" exist? no: first deploy; yes: upgrade`,
    });
  }
  return steps;
}

/**
 * The deploy itself, in order. First deploy: the database does not exist until `wrangler deploy`
 * provisions it, so migrations come after. Upgrade: migrations first, so the new code finds its
 * tables and columns (the relay tolerates an unmigrated index meanwhile, but need not).
 * `migrateConfig` is the temporary config that names the database_id, which
 * `wrangler d1 migrations apply --remote` requires and wrangler.toml no longer holds.
 */
export function deployPlan({ databaseExists, database, queues = [], env, secretsFile, migrateConfig = "<temporary config with the database_id>" }) {
  /** @type {Step} */
  const deploy = {
    name: "deploy",
    command: ["wrangler", "deploy", ...envArgs(env), ...(secretsFile ? ["--secrets-file", secretsFile] : [])],
    why: databaseExists ? "the new version; bindings stay as deployed" : "creates the KV namespace and the D1 database it does not find, then the Worker",
  };
  /** @type {Step[]} */
  const migrate = database
    ? [
        ...(databaseExists ? [] : [{ name: "find-database", command: ["wrangler", "d1", "list", "--json"], why: "the id of the database just created" }]),
        {
          name: "migrate",
          command: ["wrangler", "d1", "migrations", "apply", database.binding, "--remote", "--config", migrateConfig],
          why: `apply migrations/ not yet applied to "${database.database_name}"`,
        },
      ]
    : [];
  // wrangler deploy provisions KV and D1, not queues: it refuses to deploy without them.
  /** @type {Step[]} */
  const createQueues = queues.map((queue) => ({
    name: "queue",
    command: ["wrangler", "queues", "create", queue],
    why: "unless `wrangler queues info` finds it",
  }));
  const health = { name: "health", command: ["GET", "<deployed URL>/healthz"], why: "callback URLs and what is still unset" };
  return databaseExists ? [...migrate, ...createQueues, deploy, health] : [...createQueues, deploy, ...migrate, health];
}

/** The queues a config section uses: producers', consumers' and their dead-letter queues. */
export function queuesOf(section) {
  const { producers = [], consumers = [] } = section.queues ?? {};
  return [...new Set([...producers.map((p) => p.queue), ...consumers.flatMap((c) => [c.queue, c.dead_letter_queue])].filter(Boolean))];
}

/** A step as a person would type it. */
export const shown = (step) =>
  (step.env
    ? Object.entries(step.env)
        .map(([k, v]) => `${k}=${v} `)
        .join("")
    : "") + (step.command[0] === "wrangler" ? ["npx", ...step.command] : step.command).join(" ");

export function describePlan(steps) {
  return steps.map((step, i) => `  ${String(i + 1).padStart(2)}. ${shown(step).padEnd(62)} # ${step.why}`);
}

/** The D1 block of the config section, if any (the relay has one: DB). */
export function databaseOf(section) {
  const databases = section.d1_databases ?? [];
  return databases.find((d) => d.binding === "DB") ?? databases[0];
}

/** The database's id from `wrangler d1 list --json` output, or undefined when it does not exist. */
export function findDatabaseId(listOutput, name) {
  // The JSON array, past anything wrangler printed before it.
  const start = listOutput.search(/^\s*\[\s*(?:\{|\])/m);
  /** @type {{ uuid: string, name: string }[] | undefined} */
  let list;
  try {
    list = start < 0 ? undefined : JSON.parse(listOutput.slice(start));
  } catch {
    list = undefined;
  }
  if (!Array.isArray(list)) throw new Error(`unexpected output from wrangler d1 list --json: ${listOutput.slice(0, 200)}`);
  return list.find((db) => db.name === name)?.uuid;
}

/** A config for `wrangler d1 migrations apply --remote`: only the database, with its id. */
export function migrationConfig({ name, account_id }, database, databaseId, root) {
  const dir = database.migrations_dir ?? "migrations";
  return {
    name,
    ...(account_id ? { account_id } : {}),
    d1_databases: [
      {
        binding: database.binding,
        database_name: database.database_name,
        database_id: databaseId,
        migrations_dir: isAbsolute(dir) ? dir : resolve(root, dir),
        ...(database.migrations_table ? { migrations_table: database.migrations_table } : {}),
      },
    ],
  };
}

/** Names (never values) in a secrets file, as wrangler reads it: a JSON object, else .env lines. */
export function secretNames(text) {
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return Object.keys(parsed);
  } catch {
    // not JSON: .env lines
  }
  return [...text.matchAll(/^\s*(?:export\s+)?([\w.-]+)\s*=/gm)].map((m) => m[1]);
}

/**
 * What a deploy answers on: the "deploy" entry wrangler appends to WRANGLER_OUTPUT_FILE_PATH
 * (ND-JSON), whose `targets` are the lines it prints after "Deployed <name> triggers".
 */
export function targetsFromOutputFile(ndjson) {
  const entries = ndjson
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line));
  return entries.findLast((entry) => entry.type === "deploy")?.targets ?? [];
}

/** Where the relay answers: a custom domain first, then a whole-host route, then workers.dev. */
export function baseUrlOf(targets) {
  for (const target of targets) {
    const domain = /^([a-z0-9.-]+) \(custom domain/i.exec(target);
    if (domain) return `https://${domain[1]}`;
  }
  for (const target of targets) {
    const route = /^(?:https?:\/\/)?([a-z0-9.-]+)\/\*(?: |$)/i.exec(target);
    if (route) return `https://${route[1]}`;
  }
  return targets.find((target) => /^https:\/\/[^\s/]+\.workers\.dev$/.test(target));
}

/** Why a part of /healthz is not on, or undefined when it is. Unknown parts (an index) included. */
function offReason(part) {
  if (!part || typeof part !== "object" || typeof part.state !== "string" || ["on", "ok", "enabled"].includes(part.state)) return undefined;
  const missing = part.missing === undefined ? undefined : `missing ${[part.missing].flat().join(", ")}`;
  const why = part.reason ?? part.message ?? missing;
  return `${part.state}${why ? `: ${why}` : ""}`;
}

/**
 * The closing summary: the callback URL to paste per provider, then what is still unset or wrong.
 * @param {{ baseUrl?: string, health?: any, healthError?: string, secretsHint?: string, dryRun?: boolean }} input
 */
export function summary({ baseUrl, health, healthError, secretsHint = "prod.vars", dryRun = false }) {
  const host = baseUrl ?? "https://<host>";
  const lines = [];
  if (dryRun) lines.push("--dry-run: nothing deployed; once it is, the relay answers at its address:");
  else
    lines.push(
      baseUrl
        ? `deployed: ${baseUrl}${health ? `   /healthz: ${health.status}` : ""}`
        : "deployed (wrangler printed no URL: pass --url https://<host> to see it here)",
    );
  const providers = health?.providers ?? Object.fromEntries(Object.keys(callbackPaths).map((name) => [name, undefined]));
  const width = Math.max(...Object.keys(providers).map((name) => name.length));
  const urls = Object.keys(providers).map((name) => `${host}${callbackPaths[name] ?? `/v1/hooks/${name}`}`);
  const urlWidth = Math.max(...urls.map((url) => url.length));
  lines.push("", "callback URLs to paste in each provider's console:");
  Object.entries(providers).forEach(([name, status], i) => {
    const state = !status ? "" : status.state === "enabled" ? "enabled" : status.state === "disabled" ? `disabled: set ${status.missing}` : status.state;
    const note = callbackNotes[name] ? ` (${callbackNotes[name]})` : "";
    lines.push(`  ${name.padEnd(width)}  ${urls[i].padEnd(urlWidth)}  ${state}${note}`.trimEnd());
  });
  if (!health) {
    lines.push("", `what is still unset: unknown (${healthError ?? "/healthz not read"}); see ${host}/healthz`);
    return lines;
  }
  const todo = [];
  for (const [name, status] of Object.entries(health.providers ?? {})) {
    if (status.state === "disabled") todo.push(`${name}: ${status.missing} is not set (only needed if you use ${name})`);
  }
  for (const [key, part] of Object.entries(health)) {
    if (key === "providers" || key === "problems") continue;
    const reason = offReason(part);
    if (reason) todo.push(`${key}: ${reason}`);
  }
  for (const problem of health.problems ?? []) todo.push(`setting ${problem.setting} ${problem.problem} (turns off ${problem.feature})`);
  if (todo.length === 0) {
    lines.push("", "nothing unset: every provider, forwarding, the API and alerts are on");
  } else {
    lines.push("", "still unset or wrong:", ...todo.map((item) => `  - ${item}`));
    lines.push("", `set secrets in one go: npm run deploy -- --secrets ${secretsHint}   (or: npx wrangler secret bulk ${secretsHint})`);
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------

const root = fileURLToPath(new URL("..", import.meta.url));

class DeployError extends Error {}

/**
 * Runs a step. `capture`: stdout and stderr are returned (and still shown unless `quiet`).
 * `interactive`: the terminal's stdin, so wrangler can ask (e.g. before taking over a custom
 * domain's DNS record); otherwise stdin is closed and wrangler runs as in CI, without asking.
 */
function run(step, { capture = false, quiet = false, interactive = false, extraEnv = {} } = {}) {
  const [bin, ...args] = step.command;
  // RECEIPT_RELAY_WRANGLER: a stand-in for wrangler (test/scripts/deploy-test.mjs has no account).
  const wrangler = process.env.RECEIPT_RELAY_WRANGLER ?? createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
  const npm = process.env.npm_execpath;
  const [file, argv] = bin === "wrangler" ? [process.execPath, [wrangler, ...args]] : bin === "npm" && npm ? [process.execPath, [npm, ...args]] : [bin, args];
  const output = capture ? "pipe" : "inherit";
  const child = spawn(file, argv, {
    cwd: root,
    stdio: [interactive ? "inherit" : "ignore", output, output],
    env: { ...process.env, ...step.env, ...extraEnv },
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk) => {
    out += chunk;
    if (!quiet) process.stdout.write(chunk);
  });
  child.stderr?.on("data", (chunk) => {
    err += chunk;
    if (!quiet) process.stderr.write(chunk);
  });
  return new Promise((done, fail) => {
    child.on("error", fail);
    child.on("close", (code) => done({ code: code ?? 1, out, err }));
  });
}

async function readHealth(baseUrl) {
  let last = "";
  // A first deploy's workers.dev address can take a few seconds to answer.
  for (let attempt = 0; attempt < 6; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 5000));
    try {
      const response = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(10_000) });
      const text = await response.text();
      try {
        return { health: JSON.parse(text) };
      } catch {
        last = `${response.status} and not JSON`;
      }
    } catch (error) {
      last = error.cause?.message ?? error.message;
    }
  }
  return { healthError: `${baseUrl}/healthz: ${last}` };
}

async function main() {
  const flags = parseFlags({ secrets: { type: "string" }, env: { type: "string" }, url: { type: "string" }, "dry-run": { type: "boolean" } }, usage);
  if (!flags.values) return flags.exitCode;
  const options = flags.values;
  const { env, url } = options;
  const dryRun = Boolean(options["dry-run"]);
  if (url !== undefined && !/^https?:\/\/[^/]+$/.test(url)) {
    console.error(`--url: give the relay's origin, e.g. https://relay.example.com (got "${url}")\n${usage}`);
    return 2;
  }

  const { experimental_readRawConfig } = await import("wrangler");
  const raw = experimental_readRawConfig({ config: `${root}wrangler.toml` }).rawConfig;
  const section = env ? raw.env?.[env] : raw;
  if (!section) throw new DeployError(`wrangler.toml has no [env.${env}] section`);
  const database = databaseOf(section);
  const queues = queuesOf(section);
  if (database && !database.database_id && !database.database_name) {
    throw new DeployError("the [[d1_databases]] block needs a database_name (npm run check says more)");
  }

  // Relative to the repository, where every command runs (npm runs scripts there too).
  const secretsPath = options.secrets === undefined ? undefined : resolve(options.secrets);
  const secretsFile = secretsPath && (relative(root, secretsPath).startsWith("..") ? secretsPath : relative(root, secretsPath));
  if (secretsPath && secretsFile) {
    if (!existsSync(secretsPath)) throw new DeployError(`--secrets ${secretsFile}: no such file`);
    const names = secretNames(readFileSync(secretsPath, "utf8"));
    if (names.length === 0) throw new DeployError(`--secrets ${secretsFile}: no NAME=value lines and not a JSON object`);
    if (!isAbsolute(secretsFile)) {
      const ignored = await run({ command: ["git", "check-ignore", "-q", secretsFile] }, { capture: true, quiet: true }).catch(() => ({ code: 0 }));
      if (ignored.code === 1)
        throw new DeployError(`--secrets ${secretsFile} is in the repository and not git-ignored: name it *.vars (ignored) or keep it elsewhere`);
    }
    const vars = Object.keys(section.vars ?? {}).filter((name) => names.includes(name));
    if (vars.length > 0) throw new DeployError(`--secrets ${secretsFile}: ${vars.join(", ")} also in wrangler.toml [vars]: keep each setting in one place`);
    console.log(`secrets from ${secretsFile}: ${names.join(", ")} (values not shown)`);
  }

  const before = preflight({ env, database });
  if (dryRun) {
    console.log(`plan (--dry-run: nothing is uploaded):\n${describePlan(before).join("\n")}`);
    if (database) {
      console.log(
        `\nthen, when database "${database.database_name}" does not exist yet (first deploy):\n${describePlan(deployPlan({ databaseExists: false, database, queues, env, secretsFile })).join("\n")}`,
      );
      console.log(`\nor, when it exists (upgrade):\n${describePlan(deployPlan({ databaseExists: true, database, queues, env, secretsFile })).join("\n")}`);
    } else {
      console.log(`\nthen:\n${describePlan(deployPlan({ databaseExists: false, database, queues, env, secretsFile })).join("\n")}`);
    }
    console.log("\n$ npm run check");
    if ((await run(before[0])).code !== 0) throw new DeployError("npm run check failed: fix what it lists, then run again");
    const dry = {
      name: "deploy",
      command: ["wrangler", "deploy", "--dry-run", "--outdir", "dist", ...envArgs(env), ...(secretsFile ? ["--secrets-file", secretsFile] : [])],
      why: "",
    };
    console.log(`\n$ ${shown(dry)}`);
    if ((await run(dry)).code !== 0) throw new DeployError("wrangler deploy --dry-run failed");
    console.log(`\n${summary({ baseUrl: url, healthError: "--dry-run", dryRun: true }).join("\n")}`);
    return 0;
  }

  const extraEnv = {};
  for (const step of before) {
    if (step.name === "find-database") continue; // below
    console.log(`\n$ ${shown(step)}`);
    if (step.name === "check") {
      if ((await run(step)).code !== 0) throw new DeployError("npm run check failed: fix what it lists, then run again");
    } else if (step.name === "login") {
      const { code, out, err } = await run(step, { capture: true, quiet: true });
      let who;
      try {
        who = JSON.parse(out.slice(out.indexOf("{")));
      } catch {
        who = undefined;
      }
      if (!who && process.env.CLOUDFLARE_API_TOKEN) {
        // A CI token may lack the permissions whoami reads; the commands below say if it cannot deploy.
        console.log(`could not read the account behind CLOUDFLARE_API_TOKEN; going on:\n${err.trim()}`);
        who = { loggedIn: true, accounts: [] };
      }
      if (!who?.loggedIn) {
        throw new DeployError(
          code !== 0 && who?.loggedIn === false
            ? process.env.CLOUDFLARE_API_TOKEN
              ? "CLOUDFLARE_API_TOKEN is set but does not log in: check the token (docs/deploy.md#deploying-from-ci)"
              : "not logged in to Cloudflare: run `npx wrangler login`, or set CLOUDFLARE_API_TOKEN (and CLOUDFLARE_ACCOUNT_ID) as in docs/deploy.md#deploying-from-ci"
            : `could not tell whether you are logged in (\`npx wrangler whoami\` says more):\n${err.trim()}`,
        );
      }
      const accounts = who.accounts ?? [];
      console.log(`logged in${who.email ? ` as ${who.email}` : ""} (${who.authType ?? "?"})`);
      if (!process.env.CLOUDFLARE_ACCOUNT_ID && !section.account_id && !raw.account_id) {
        // The later steps run without a terminal (they cannot ask): the account is chosen here, once.
        if (accounts.length === 1) extraEnv.CLOUDFLARE_ACCOUNT_ID = accounts[0].id;
        else if (accounts.length > 1) {
          throw new DeployError(
            `you have ${accounts.length} accounts: choose one with CLOUDFLARE_ACCOUNT_ID=<id> npm run deploy …\n${accounts.map((a) => `    ${a.id}  ${a.name}`).join("\n")}`,
          );
        }
      }
    }
  }

  /** @returns {Promise<string | undefined>} */
  const lookUpDatabase = async (step) => {
    const { code, out, err } = await run(step, { capture: true, quiet: true, extraEnv });
    if (code !== 0) throw new DeployError(`wrangler d1 list failed:\n${err.trim()}`);
    return findDatabaseId(out, database.database_name);
  };
  let databaseId = database?.database_id;
  if (database && !databaseId) {
    console.log(`\n$ ${shown(before[2])}`);
    databaseId = await lookUpDatabase(before[2]);
  }
  const databaseExists = Boolean(databaseId);
  if (database)
    console.log(
      databaseExists
        ? `database "${database.database_name}" exists: upgrade (migrations, then deploy)`
        : `database "${database.database_name}" does not exist yet: first deploy (deploy, then migrations)`,
    );

  const tmp = mkdtempSync(join(tmpdir(), "receipt-relay-deploy-"));
  const migrateConfig = join(tmp, "wrangler.json");
  const outputFile = join(tmp, "wrangler-output.ndjson");
  const plan = deployPlan({ databaseExists, database, queues, env, secretsFile, migrateConfig });
  console.log(`\nplan:\n${describePlan(plan).join("\n")}`);
  let baseUrl = url;
  let deployed = false;
  try {
    for (const step of plan) {
      console.log(`\n$ ${step.name === "health" ? `GET ${baseUrl ?? "<no URL>"}/healthz` : shown(step)}`);
      if (step.name === "find-database") {
        databaseId = await lookUpDatabase(step);
        if (!databaseId) throw new DeployError(`wrangler deploy did not create database "${database.database_name}"`);
      } else if (step.name === "migrate") {
        const account = { name: raw.name, account_id: section.account_id ?? raw.account_id };
        writeFileSync(migrateConfig, JSON.stringify(migrationConfig(account, database, databaseId, root), null, 2));
        if ((await run(step, { extraEnv })).code !== 0) {
          throw new DeployError(
            deployed
              ? "the relay is deployed, but its D1 migrations failed: the index answers 503 until they are applied; run `npm run deploy` again"
              : "D1 migrations failed; nothing was deployed. Fix the migration, then run `npm run deploy` again",
          );
        }
      } else if (step.name === "queue") {
        const queue = step.command.at(-1);
        const info = await run({ command: ["wrangler", "queues", "info", queue] }, { capture: true, quiet: true, extraEnv });
        if (info.code === 0) console.log(`queue ${queue} exists`);
        else if (!/does not exist/.test(info.err + info.out)) throw new DeployError(`wrangler queues info ${queue} failed:\n${info.err.trim()}`);
        else if ((await run(step, { extraEnv })).code !== 0) throw new DeployError(`could not create queue ${queue} (see above)`);
      } else if (step.name === "deploy") {
        // Its URLs come from the output file, so its terminal stays its own (prompts work).
        const { code } = await run(step, { interactive: true, extraEnv: { ...extraEnv, WRANGLER_OUTPUT_FILE_PATH: outputFile } });
        if (code !== 0) throw new DeployError("wrangler deploy failed (see above)");
        deployed = true;
        baseUrl ??= baseUrlOf(existsSync(outputFile) ? targetsFromOutputFile(readFileSync(outputFile, "utf8")) : []);
      } else if (step.name === "health") {
        const read = baseUrl ? await readHealth(baseUrl) : { healthError: "no URL" };
        console.log(`\n${summary({ baseUrl, ...read, secretsHint: secretsFile ?? "prod.vars" }).join("\n")}`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => (process.exitCode = code),
    (error) => {
      console.error(`✗ ${error instanceof DeployError ? error.message : (error.stack ?? error)}`);
      process.exitCode = 1;
    },
  );
}

// scripts/deploy.mjs's plan and summary, in Node (not vitest: the script runs in Node, not
// workerd). Run: node --test test/scripts/deploy-test.mjs
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  baseUrlOf,
  callbackPaths,
  deployPlan,
  describePlan,
  findDatabaseId,
  migrationConfig,
  preflight,
  queuesOf,
  secretNames,
  summary,
  targetsFromOutputFile,
} from "../../scripts/deploy.mjs";

const database = { binding: "DB", database_name: "receipt-relay", migrations_dir: "migrations" };
const names = (steps) => steps.map((step) => step.name);

describe("the plan", () => {
  test("preflight: the check, the login, then whether the database exists", () => {
    const steps = preflight({ database });
    assert.deepEqual(names(steps), ["check", "login", "find-database"]);
    assert.deepEqual(steps[0].command, ["npm", "run", "check"]);
    assert.deepEqual(steps[1].command, ["wrangler", "whoami", "--json"]);
    assert.deepEqual(steps[2].command, ["wrangler", "d1", "list", "--json"]);
    assert.deepEqual(names(preflight({})), ["check", "login"]);
    assert.deepEqual(preflight({ env: "staging", database })[0].env, { CLOUDFLARE_ENV: "staging" });
  });

  test("first deploy: deploy (which creates the database), find its id, then migrate", () => {
    const steps = deployPlan({ databaseExists: false, database, migrateConfig: "/tmp/x/wrangler.json" });
    assert.deepEqual(names(steps), ["deploy", "find-database", "migrate", "health"]);
    assert.deepEqual(steps[0].command, ["wrangler", "deploy"]);
    assert.deepEqual(steps[2].command, ["wrangler", "d1", "migrations", "apply", "DB", "--remote", "--config", "/tmp/x/wrangler.json"]);
  });

  test("upgrade: migrate before the new code is deployed", () => {
    const steps = deployPlan({ databaseExists: true, database, migrateConfig: "/tmp/x/wrangler.json" });
    assert.deepEqual(names(steps), ["migrate", "deploy", "health"]);
  });

  test("queues are created before the deploy that needs them, migrations keep their place", () => {
    const queues = ["receipt-relay-accept", "receipt-relay-accept-dlq"];
    const first = deployPlan({ databaseExists: false, database, queues });
    assert.deepEqual(names(first), ["queue", "queue", "deploy", "find-database", "migrate", "health"]);
    assert.deepEqual(first[1].command, ["wrangler", "queues", "create", "receipt-relay-accept-dlq"]);
    assert.deepEqual(names(deployPlan({ databaseExists: true, database, queues })), ["migrate", "queue", "queue", "deploy", "health"]);
  });

  test("without a D1 binding: no migrations", () => {
    assert.deepEqual(names(deployPlan({ databaseExists: false })), ["deploy", "health"]);
  });

  test("--env and --secrets reach wrangler deploy", () => {
    const [deploy] = deployPlan({ databaseExists: false, env: "staging", secretsFile: "staging.vars" });
    assert.deepEqual(deploy.command, ["wrangler", "deploy", "--env", "staging", "--secrets-file", "staging.vars"]);
  });

  test("the printed plan reads as commands", () => {
    const lines = describePlan(preflight({ env: "staging", database }));
    assert.match(lines[0], /^ {3}1\. CLOUDFLARE_ENV=staging npm run check +# /);
    assert.match(lines[1], /^ {3}2\. npx wrangler whoami --json +# /);
  });

  test("the queues of a config: producers, consumers and dead-letter queues, once each", () => {
    const section = {
      queues: {
        producers: [{ binding: "ACCEPT_QUEUE", queue: "receipt-relay-accept" }],
        consumers: [{ queue: "receipt-relay-accept", dead_letter_queue: "receipt-relay-accept-dlq" }],
      },
    };
    assert.deepEqual(queuesOf(section), ["receipt-relay-accept", "receipt-relay-accept-dlq"]);
    assert.deepEqual(queuesOf({}), []);
  });
});

describe("the database", () => {
  const list = `[{"uuid":"0b7c6f1e-1111-4222-8333-444455556666","name":"receipt-relay","created_at":"2026-12-06T04:00:00.000Z","version":"production","num_tables":4,"file_size":65536}]`;

  test("its id from `wrangler d1 list --json`, or undefined before the first deploy", () => {
    assert.equal(findDatabaseId(list, "receipt-relay"), "0b7c6f1e-1111-4222-8333-444455556666");
    assert.equal(findDatabaseId(list, "receipt-relay-staging"), undefined);
    assert.equal(findDatabaseId("[]", "receipt-relay"), undefined);
    assert.equal(findDatabaseId(JSON.stringify(JSON.parse(list), null, 2), "receipt-relay"), "0b7c6f1e-1111-4222-8333-444455556666");
    assert.throws(() => findDatabaseId("✘ [ERROR] Authentication error", "receipt-relay"), /unexpected output/);
  });

  test("the temporary config for migrations names the id and an absolute migrations_dir", () => {
    const config = migrationConfig({ name: "receipt-relay" }, database, "0b7c6f1e", "/work/relay");
    assert.deepEqual(config, {
      name: "receipt-relay",
      d1_databases: [{ binding: "DB", database_name: "receipt-relay", database_id: "0b7c6f1e", migrations_dir: "/work/relay/migrations" }],
    });
  });
});

test("secrets files: names from JSON or .env lines, never values", () => {
  assert.deepEqual(secretNames('{ "EASEMOB_SECRET": "a", "ADMIN_TOKEN": "b" }'), ["EASEMOB_SECRET", "ADMIN_TOKEN"]);
  assert.deepEqual(secretNames("# comment\nEASEMOB_SECRET=a=b\nexport OPENIM_TOKEN = x\n\nnot a line\n"), ["EASEMOB_SECRET", "OPENIM_TOKEN"]);
});

describe("where it was deployed", () => {
  // What wrangler 4.86 appends to WRANGLER_OUTPUT_FILE_PATH: a session line, then the deploy's,
  // whose targets are what it prints after "Deployed receipt-relay triggers".
  const session = `{"version":1,"type":"wrangler-session","wrangler_version":"4.86.0","command_line_args":["deploy"],"log_file_path":"/x.log","timestamp":"2026-12-06T04:00:00.000Z"}`;

  test("workers.dev", () => {
    const file = `${session}\n{"type":"deploy","version":1,"worker_name":"receipt-relay","worker_tag":"abc","version_id":"6f2d","targets":["https://receipt-relay.acme.workers.dev","schedule: * * * * *","Producer for receipt-relay-accept","Consumer for receipt-relay-accept"]}\n`;
    const targets = targetsFromOutputFile(file);
    assert.equal(targets.length, 4);
    assert.equal(baseUrlOf(targets), "https://receipt-relay.acme.workers.dev");
    assert.deepEqual(targetsFromOutputFile(session), []);
  });

  test("a custom domain", () => {
    const file = [
      session,
      `{"type":"deploy","version":1,"worker_name":"receipt-relay","worker_tag":"abc","version_id":"6f2d","targets":["relay.example.com (custom domain)","https://receipt-relay.acme.workers.dev","schedule: * * * * *"],"timestamp":"2026-12-06T04:00:07.000Z"}`,
      "",
    ].join("\n");
    const targets = targetsFromOutputFile(file);
    assert.equal(targets.length, 3);
    assert.equal(baseUrlOf(targets), "https://relay.example.com", "a custom domain comes before workers.dev");
  });

  test("a whole-host route, and no URL at all", () => {
    assert.equal(baseUrlOf(["relay.example.com/* (zone name: example.com)", "schedule: * * * * *"]), "https://relay.example.com");
    assert.equal(baseUrlOf(["example.com/relay/* (zone name: example.com)"]), undefined);
    assert.equal(baseUrlOf([]), undefined);
  });
});

describe("the summary", () => {
  // /healthz of a fresh deploy with only Easemob's secret set (src/health.ts).
  const health = {
    status: "degraded",
    providers: {
      easemob: { state: "enabled" },
      tencent: { state: "disabled", missing: "TENCENT_SDKAPPID" },
      openim: { state: "disabled", missing: "OPENIM_TOKEN" },
      stream: { state: "disabled", missing: "STREAM_API_SECRET" },
      sendbird: { state: "misconfigured", problems: [{ setting: "SENDBIRD_API_TOKEN", problem: "must not be empty" }] },
    },
    forwarding: { state: "held", reason: "ORIGIN_URL is not set" },
    api: { state: "on" },
    alerts: { state: "off", reason: "ALERT_URL is not set" },
    index: { state: "unavailable", kind: "unmigrated", missing: ["conversations"], reason: "no such table: conversations" },
    problems: [{ setting: "SENDBIRD_API_TOKEN", problem: "must not be empty", feature: "sendbird" }],
    ignoredEventsSinceStart: {},
  };
  const text = summary({ baseUrl: "https://receipt-relay.acme.workers.dev", health, secretsHint: "prod.vars" }).join("\n");

  test("each provider's callback URL, with its state", () => {
    assert.match(text, /^deployed: https:\/\/receipt-relay\.acme\.workers\.dev {3}\/healthz: degraded$/m);
    assert.match(text, /^ {2}easemob +https:\/\/receipt-relay\.acme\.workers\.dev\/v1\/hooks\/easemob +enabled$/m);
    assert.match(
      text,
      /^ {2}tencent +https:\/\/receipt-relay\.acme\.workers\.dev\/v1\/hooks\/tencent +disabled: set TENCENT_SDKAPPID \(Tencent appends its own query\)$/m,
    );
    assert.match(text, /^ {2}openim +https:\/\/receipt-relay\.acme\.workers\.dev\/v1\/hooks\/openim\/<OPENIM_TOKEN> +disabled: set OPENIM_TOKEN/m);
    assert.match(text, /^ {2}stream +https:\/\/receipt-relay\.acme\.workers\.dev\/v1\/hooks\/stream +disabled: set STREAM_API_SECRET$/m);
    assert.match(text, /^ {2}sendbird +https:\/\/receipt-relay\.acme\.workers\.dev\/v1\/hooks\/sendbird +misconfigured$/m);
  });

  test("what is still unset or wrong, including parts it does not know by name", () => {
    const todo = text.slice(text.indexOf("still unset or wrong:"));
    assert.deepEqual(
      todo.split("\n").filter((line) => line.startsWith("  - ")),
      [
        "  - tencent: TENCENT_SDKAPPID is not set (only needed if you use tencent)",
        "  - openim: OPENIM_TOKEN is not set (only needed if you use openim)",
        "  - stream: STREAM_API_SECRET is not set (only needed if you use stream)",
        "  - forwarding: held: ORIGIN_URL is not set",
        "  - alerts: off: ALERT_URL is not set",
        "  - index: unavailable: no such table: conversations",
        "  - setting SENDBIRD_API_TOKEN must not be empty (turns off sendbird)",
      ],
    );
    assert.match(text, /npm run deploy -- --secrets prod\.vars/);
  });

  test("never a secret: OpenIM's token stays a placeholder", () => {
    const withToken = summary({ baseUrl: "https://h", health: { ...health, providers: { openim: { state: "enabled" } } } }).join("\n");
    assert.match(withToken, /\/v1\/hooks\/openim\/<OPENIM_TOKEN>/);
  });

  test("a part without a reason names what is missing", () => {
    const lines = summary({
      baseUrl: "https://h",
      health: { status: "degraded", providers: {}, index: { state: "unavailable", missing: ["conversations", "alerts"] } },
    });
    assert.ok(lines.includes("  - index: unavailable: missing conversations, alerts"));
  });

  test("--dry-run: the URLs it will have, nothing claimed as deployed", () => {
    const lines = summary({ healthError: "--dry-run", dryRun: true });
    assert.equal(lines[0], "--dry-run: nothing deployed; once it is, the relay answers at its address:");
    assert.ok(lines.some((line) => /^ {2}sendbird +https:\/\/<host>\/v1\/hooks\/sendbird$/.test(line)));
  });

  test("all set", () => {
    const ok = {
      status: "ok",
      providers: { easemob: { state: "enabled" } },
      forwarding: { state: "on" },
      api: { state: "on" },
      alerts: { state: "on", format: "standard" },
      problems: [],
    };
    const lines = summary({ baseUrl: "https://h", health: ok });
    assert.ok(lines.includes("nothing unset: every provider, forwarding, the API and alerts are on"));
    assert.ok(!lines.some((line) => line.includes("secrets in one go")));
  });

  test("without /healthz or a URL: every provider's path, and why the rest is unknown", () => {
    const lines = summary({ healthError: "https://h/healthz: fetch failed" });
    assert.equal(lines[0], "deployed (wrangler printed no URL: pass --url https://<host> to see it here)");
    for (const provider of Object.keys(callbackPaths)) {
      assert.ok(
        lines.some((line) => line.includes(`https://<host>/v1/hooks/${provider}`)),
        provider,
      );
    }
    assert.match(lines.at(-1), /unknown \(https:\/\/h\/healthz: fetch failed\)/);
  });
});

// The whole script against a stand-in wrangler (test/scripts/fake-wrangler.mjs) and a local
// /healthz: the commands it runs, in order, on a new account and then on the same account again.
describe("npm run deploy, end to end against a fake account", () => {
  const script = fileURLToPath(new URL("../../scripts/deploy.mjs", import.meta.url));
  const fake = fileURLToPath(new URL("./fake-wrangler.mjs", import.meta.url));
  const state = mkdtempSync(join(tmpdir(), "deploy-test-"));
  const secrets = join(state, "prod.vars");
  writeFileSync(secrets, "EASEMOB_SECRET=s3cret-value-never-printed\nADMIN_TOKEN=admin-token-never-printed\n");
  const healthz = {
    status: "degraded",
    providers: { easemob: { state: "enabled" }, openim: { state: "disabled", missing: "OPENIM_TOKEN" } },
    forwarding: { state: "held", reason: "ORIGIN_URL is not set" },
    api: { state: "on" },
    alerts: { state: "off", reason: "ALERT_URL is not set" },
    problems: [],
  };
  const server = createServer((request, response) => {
    response.writeHead(request.url === "/healthz" ? 200 : 404, { "content-type": "application/json" });
    response.end(JSON.stringify(healthz));
  });
  let url = "";
  before(async () => {
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => {
    server.close();
    rmSync(state, { recursive: true, force: true });
  });

  const deploy = (extraEnv = {}) => {
    const env = { ...process.env, RECEIPT_RELAY_WRANGLER: fake, npm_execpath: fake, FAKE_STATE: state, ...extraEnv };
    delete env.CLOUDFLARE_ACCOUNT_ID;
    delete env.CLOUDFLARE_ENV;
    writeFileSync(join(state, "calls.ndjson"), "");
    return new Promise((resolve) => {
      execFile(process.execPath, [script, "--url", url, "--secrets", secrets], { env }, (error, stdout, stderr) => {
        const calls = readFileSync(join(state, "calls.ndjson"), "utf8")
          .split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line));
        resolve({ code: error ? error.code : 0, stdout, stderr, calls });
      });
    });
  };
  /** Each call up to its first option: "deploy", "d1 migrations apply DB", "queues create <name>", … */
  const shape = (calls) =>
    calls.map(({ args }) => {
      const option = args.findIndex((arg) => arg.startsWith("-"));
      return args.slice(0, option < 0 ? undefined : option).join(" ");
    });

  test("not logged in: stops after the check with what to do", async () => {
    const { code, stderr, calls } = await deploy({ FAKE_LOGGED_OUT: "1" });
    assert.equal(code, 1);
    assert.match(stderr, /not logged in to Cloudflare: run `npx wrangler login`, or set CLOUDFLARE_API_TOKEN/);
    assert.deepEqual(shape(calls), ["run check", "whoami"]);
  });

  test("first deploy: queues, deploy (which creates the database), then migrations with its id", async () => {
    const { code, stdout, stderr, calls } = await deploy();
    assert.equal(code, 0, stderr);
    const order = shape(calls).filter((call) => !call.startsWith("queues info"));
    const deployAt = order.indexOf("deploy");
    assert.deepEqual(order.slice(0, 3), ["run check", "whoami", "d1 list"]);
    assert.ok(
      order.slice(3, deployAt).every((call) => call.startsWith("queues create")),
      order.join(", "),
    );
    assert.deepEqual(order.slice(deployAt), ["deploy", "d1 list", "d1 migrations apply DB"]);
    const deployCall = calls.find((call) => call.args[0] === "deploy");
    assert.deepEqual(deployCall.args, ["deploy", "--secrets-file", secrets]);
    assert.equal(deployCall.accountId, "acc0123", "the one account is chosen once for every step");
    const migrate = calls.find((call) => call.args.includes("migrations"));
    assert.deepEqual(migrate.args.slice(0, 6), ["d1", "migrations", "apply", "DB", "--remote", "--config"]);
    assert.equal(migrate.config.d1_databases[0].database_id, "d1-uuid-0001");
    assert.match(migrate.config.d1_databases[0].migrations_dir, /\/migrations$/);
    assert.ok(!existsSync(migrate.args[6]), "the temporary config is removed");
    assert.match(stdout, /first deploy \(deploy, then migrations\)/);
    assert.match(stdout, /openim +http:\/\/127\.0\.0\.1:\d+\/v1\/hooks\/openim\/<OPENIM_TOKEN> +disabled: set OPENIM_TOKEN/);
    assert.match(stdout, /forwarding: held: ORIGIN_URL is not set/);
    assert.doesNotMatch(stdout + stderr, /never-printed/);
  });

  test("upgrade: migrations before the deploy; existing queues are not created again", async () => {
    const { code, stdout, stderr, calls } = await deploy();
    assert.equal(code, 0, stderr);
    const order = shape(calls).filter((call) => !call.startsWith("queues info"));
    assert.deepEqual(order, ["run check", "whoami", "d1 list", "d1 migrations apply DB", "deploy"]);
    assert.match(stdout, /exists: upgrade \(migrations, then deploy\)/);
  });
});

// A stand-in for wrangler and npm in deploy-test.mjs: records each call in $FAKE_STATE/calls.ndjson
// and answers as a Cloudflare account would, with its resources in $FAKE_STATE/account.json.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";

const state = process.env.FAKE_STATE;
const accountFile = `${state}/account.json`;
const account = existsSync(accountFile) ? JSON.parse(readFileSync(accountFile, "utf8")) : { databases: [], queues: [] };
const save = () => writeFileSync(accountFile, JSON.stringify(account));
const args = process.argv.slice(2);
const command = args.filter((arg) => !arg.startsWith("-")).slice(0, 3);
const option = (name) => args[args.indexOf(name) + 1];

const call = { args, accountId: process.env.CLOUDFLARE_ACCOUNT_ID, cloudflareEnv: process.env.CLOUDFLARE_ENV };
if (args.includes("--config")) call.config = JSON.parse(readFileSync(option("--config"), "utf8"));
appendFileSync(`${state}/calls.ndjson`, JSON.stringify(call) + "\n");

const is = (...words) => words.every((word, i) => command[i] === word);
if (is("run", "check")) {
  console.log("✓ wrangler.toml: fine");
} else if (is("whoami")) {
  if (process.env.FAKE_LOGGED_OUT) {
    console.log('{"loggedIn":false}');
    process.exit(1);
  }
  console.log(JSON.stringify({ loggedIn: true, authType: "OAuth Token", email: "ops@example.com", accounts: [{ id: "acc0123", name: "Acme" }] }));
} else if (is("d1", "list")) {
  console.log(JSON.stringify(account.databases, null, 2));
} else if (is("d1", "migrations", "apply")) {
  console.log("✅ applied");
} else if (is("queues", "info")) {
  if (!account.queues.includes(command[2])) {
    console.error(`✘ [ERROR] Queue "${command[2]}" does not exist. To create it, run: wrangler queues create ${command[2]}`);
    process.exit(1);
  }
  console.log(`Queue Name: ${command[2]}`);
} else if (is("queues", "create")) {
  account.queues.push(command[2]);
  save();
} else if (is("deploy")) {
  // wrangler ≥ 4.45 provisions the D1 database named in the config when it does not exist.
  if (!account.databases.some((db) => db.name === "receipt-relay")) account.databases.push({ uuid: "d1-uuid-0001", name: "receipt-relay" });
  save();
  console.log("Uploaded receipt-relay (1.00 sec)\nDeployed receipt-relay triggers (0.50 sec)\n  https://receipt-relay.acme.workers.dev\n  schedule: * * * * *");
  if (process.env.WRANGLER_OUTPUT_FILE_PATH) {
    const entry = { type: "deploy", version: 1, worker_name: "receipt-relay", targets: ["https://receipt-relay.acme.workers.dev", "schedule: * * * * *"] };
    appendFileSync(process.env.WRANGLER_OUTPUT_FILE_PATH, JSON.stringify(entry) + "\n");
  }
} else {
  console.error(`fake wrangler: no answer for ${args.join(" ")}`);
  process.exit(2);
}

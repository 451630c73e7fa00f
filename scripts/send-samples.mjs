#!/usr/bin/env node
// Sends every provider's sample read receipt to a running relay, signed with the settings in
// .dev.vars, and prints each answer. Usage: npm run send-samples [-- http://127.0.0.1:8787]
// First it prints the dashboard's live page of every sample conversation (docs/dashboard.md,
// "Try it locally"): the keys are the same on every run, so that page, opened once, shows the
// next run's receipts arrive and reach the origin.
import { loadDevVars } from "./dev-vars.mjs";
import { buildSamples, configuredProviders, expectedReceipts, postSample } from "./samples.mjs";

const vars = loadDevVars();
const relay = process.argv[2] ?? process.env.RELAY_URL ?? "http://127.0.0.1:8787";
/** What one live page watches at most (MAX_LIVE_CONVERSATIONS in src/dashboard/inputs.ts). */
const MAX_LIVE_CONVERSATIONS = 20;

const samples = await buildSamples(vars);
/** Each conversation the samples go to, computed by the relay's own provider code. */
const conversations = new Set();
for (const sample of samples) {
  const expected = await expectedReceipts(sample).catch(() => ({ error: "unknown" }));
  for (const receipt of expected.receipts ?? []) conversations.add(receipt.conversation);
}

if (conversations.size > 0) {
  const query = [...conversations]
    .slice(0, MAX_LIVE_CONVERSATIONS)
    .map((conversation) => `conversation=${encodeURIComponent(conversation)}`)
    .join("&");
  console.log(
    `watch every sample conversation live: open ${relay}/dashboard/live?${query} (signed in), then run npm run send-samples again to watch them arrive`,
  );
}

for (const sample of samples) {
  let answer;
  try {
    answer = await postSample(relay, sample);
  } catch (error) {
    console.error(`cannot reach the relay at ${relay} (${error.cause?.code ?? error.message}): is \`npm run dev\` running?`);
    process.exit(1);
  }
  console.log(`${answer.status} ${sample.label.padEnd(48)} ${answer.text}`);
}

for (const { provider, state } of await configuredProviders(vars)) {
  if (state.state === "disabled") console.log(`skipped ${provider.name}: set ${state.missing} in .dev.vars`);
  if (state.state === "misconfigured")
    console.log(`skipped ${provider.name}: ${state.problems.map((problem) => `${problem.setting} ${problem.problem}`).join("; ")}`);
}

if (conversations.size > 0) {
  console.log(`\nwatch them in the dashboard (sign in with ADMIN_TOKEN from .dev.vars; send again to see them arrive live):`);
  for (const conversation of conversations) console.log(`  ${relay}/dashboard/conversations/${encodeURIComponent(conversation)}`);
}

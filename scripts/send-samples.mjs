#!/usr/bin/env node
// Sends every provider's sample read receipt to a running relay, signed with the settings in
// .dev.vars, and prints each answer. Usage: npm run send-samples [-- http://127.0.0.1:8787]
import { loadDevVars } from "./dev-vars.mjs";
import { buildSamples, enablingSettings, expectedReceipt, first, postSample } from "./samples.mjs";

const vars = loadDevVars();
const relay = process.argv[2] ?? process.env.RELAY_URL ?? "http://127.0.0.1:8787";

/** Each conversation the samples went to, with its dashboard page (live tail included). */
const conversations = new Set();
for (const sample of buildSamples(vars)) {
  const expected = await expectedReceipt(sample).catch(() => ({ error: "unknown" }));
  if (expected.conversation) conversations.add(expected.conversation);
  let answer;
  try {
    answer = await postSample(relay, sample);
  } catch (error) {
    console.error(`cannot reach the relay at ${relay} (${error.cause?.code ?? error.message}): is \`npm run dev\` running?`);
    process.exit(1);
  }
  console.log(`${answer.status} ${sample.label.padEnd(48)} ${answer.text}`);
}

for (const [provider, setting] of Object.entries(enablingSettings).filter(([, setting]) => !first(vars[setting]))) {
  console.log(`skipped ${provider}: set ${setting} in .dev.vars`);
}

if (conversations.size > 0) {
  console.log(`\nwatch them in the dashboard (sign in with ADMIN_TOKEN from .dev.vars; send again to see them arrive live):`);
  for (const conversation of conversations) console.log(`  ${relay}/dashboard/conversations/${encodeURIComponent(conversation)}`);
}

#!/usr/bin/env node
// Sends every provider's sample read receipt to a running relay, signed with the settings in
// .dev.vars, and prints each answer. Usage: npm run send-samples [-- http://127.0.0.1:8787]
import { loadDevVars } from "./dev-vars.mjs";
import { buildSamples, enablingSettings, first, postSample } from "./samples.mjs";

const vars = loadDevVars();
const relay = process.argv[2] ?? process.env.RELAY_URL ?? "http://127.0.0.1:8787";

for (const sample of buildSamples(vars)) {
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

// A node:test reporter for test/browser/run.mjs: counts the top-level tests and writes one JSON
// line at the end ({ passed, failed, skipped, failures: [{ name, error }] }), which the runner reads.
export default async function* summaryReporter(source) {
  const counts = { passed: 0, failed: 0, skipped: 0, failures: [] };
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    // Top-level tests only: each is one step of the scenario. Hooks that fail report as failures too.
    if (event.data.nesting !== 0) continue;
    if (event.data.skip !== undefined || event.data.todo !== undefined) counts.skipped++;
    else if (event.type === "test:pass") counts.passed++;
    else {
      counts.failed++;
      const error = event.data.details?.error;
      const message = String(error?.cause?.message ?? error?.message ?? error ?? "failed").split("\n")[0];
      counts.failures.push({ name: event.data.name, error: message.slice(0, 300) });
    }
  }
  yield `${JSON.stringify(counts)}\n`;
}

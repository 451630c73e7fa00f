// Output: the tables on stdout, markdown for the README, bench/results.svg, and bench/results.json
// (merged into the previous one after a `--only` run).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { root } from "../scripts/dev-vars.mjs";
import { options } from "./options.mjs";
import { PRICES } from "./prices.mjs";

// Columns that the scenario and burst tables share: both rows carry the relay's latencies and answers.
const ratioColumn = (field) => ["ratio", (row) => row[field]?.toFixed(2)];
const latencyColumns = [
  ["p50 ms", (row) => row.p50_ms],
  ["p99 ms", (row) => row.p99_ms],
];
const answersColumn = [
  "answers",
  (row) =>
    Object.entries(row.relay_status)
      .map(([code, count]) => `${code}×${count}`)
      .join(" "),
];

const scenarioColumns = [
  ["scenario", (s) => s.name],
  ["no-op req/s", (s) => s.noop_rps],
  ["relay req/s", (s) => s.relay_rps],
  ratioColumn("ratio"),
  ...latencyColumns,
  ["CPU µs/req", (s) => s.cpu_us],
  answersColumn,
  ["rows w", (s) => s.storage.rows_written_per_receipt],
  ["rows r", (s) => s.storage.rows_read_per_receipt],
  ["KV puts", (s) => s.storage.kv_puts_per_receipt],
  ["obj req", (s) => s.storage.object_requests_per_receipt],
  ["alarms", (s) => s.storage.alarm_runs_per_receipt],
  ["per", (s) => s.storage.basis],
];

const burstColumns = [
  ["connections", (b) => b.connections],
  ["no-op req/s", (b) => b.noop_rps],
  ["accepted/s", (b) => b.accepted_rps],
  ratioColumn("accepted_ratio"),
  ...latencyColumns,
  answersColumn,
  ["stored", (b) => b.stored],
  ["lost", (b) => b.lost],
  ["duplicated", (b) => b.duplicated],
  ["queued", (b) => b.queued],
  ["obj req", (b) => b.storage.object_requests_per_receipt],
  ["rows w", (b) => b.storage.rows_written_per_receipt],
  ["SQL stmts", (b) => b.storage.sql_statements_per_receipt],
];

const storageColumns = (usdWithoutAlarmRows) => [
  ["case", (s) => s.name],
  ["receipts", (s) => s.accepted],
  ["rows written", (s) => s.rows_written_per_receipt],
  ["rows read", (s) => s.rows_read_per_receipt],
  ["KV puts", (s) => s.kv_puts_per_receipt],
  ["object req", (s) => s.object_requests_per_receipt],
  ["alarm runs", (s) => s.alarm_runs_per_receipt],
  ["alarms set", (s) => s.alarms_set_per_receipt],
  ["$/M receipts", (s) => s.usd?.toFixed(2)],
  ["$/M, setAlarm free", (s) => usdWithoutAlarmRows[s.name]?.toFixed(2)],
];

function printTable(rows, columns) {
  const widths = columns.map(([title, get]) => Math.max(title.length, ...rows.map((row) => String(get(row) ?? "–").length)));
  const line = (cells) => cells.map((cell, i) => String(cell ?? "–")[i === 0 ? "padEnd" : "padStart"](widths[i])).join("  ");
  console.log(line(columns.map(([title]) => title)));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const row of rows) console.log(line(columns.map(([, get]) => get(row))));
}

function markdownTable(rows, columns) {
  const out = [`| ${columns.map(([title]) => title).join(" | ")} |`, `|${columns.map((_, i) => (i === 0 ? " --- " : " ---: ")).join("|")}|`];
  for (const row of rows) out.push(`| ${columns.map(([, get]) => get(row) ?? "–").join(" | ")} |`);
  return out.join("\n");
}

const escapeXml = (text) => String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

/** A hand-written SVG: relay/no-op ratio per scenario, and $ per million receipts per storage case. */
function svgChart(scenarios, costs, meta) {
  const width = 760;
  const left = 290;
  const barWidth = width - left - 70;
  const rowHeight = 22;
  const parts = [];
  let y = 40;
  parts.push(`<text x="16" y="24" font-size="15" font-weight="bold">receipt-relay benchmark: relay ÷ no-op throughput in workerd (${escapeXml(meta)})</text>`);
  const maxRatio = Math.max(1, ...scenarios.map((s) => s.ratio ?? 0));
  const scale = (value, max) => (Math.max(0, value) / max) * barWidth;
  const targetLine = (value, max, label, top, bottom) =>
    `<line x1="${left + scale(value, max)}" y1="${top}" x2="${left + scale(value, max)}" y2="${bottom}" stroke="#c0392b" stroke-dasharray="4 3"/>` +
    `<text x="${left + scale(value, max) + 3}" y="${top + 10}" font-size="10" fill="#c0392b">${escapeXml(label)}</text>`;
  const top = y;
  for (const s of scenarios) {
    const value = s.ratio ?? 0;
    parts.push(`<text x="${left - 8}" y="${y + 15}" font-size="12" text-anchor="end">${escapeXml(s.name)}</text>`);
    parts.push(`<rect x="${left}" y="${y + 4}" width="${scale(value, maxRatio).toFixed(1)}" height="${rowHeight - 8}" fill="#2e86c1"/>`);
    parts.push(`<text x="${left + scale(value, maxRatio) + 4}" y="${y + 15}" font-size="11">${value.toFixed(2)}</text>`);
    y += rowHeight;
  }
  parts.push(targetLine(0.35, maxRatio, "0.35", top - 8, y));
  parts.push(targetLine(0.7, maxRatio, "0.7", top - 8, y));
  y += 30;
  parts.push(
    `<text x="16" y="${y}" font-size="15" font-weight="bold">USD per million receipts (Workers Paid list prices, ${PRICES.checked}; target ≤ $6)</text>`,
  );
  y += 12;
  const entries = Object.entries(costs).filter(([, value]) => Number.isFinite(value));
  const maxCost = Math.max(8, ...entries.map(([, value]) => value));
  const costTop = y;
  for (const [name, value] of entries) {
    parts.push(`<text x="${left - 8}" y="${y + 15}" font-size="12" text-anchor="end">${escapeXml(name)}</text>`);
    parts.push(
      `<rect x="${left}" y="${y + 4}" width="${scale(value, maxCost).toFixed(1)}" height="${rowHeight - 8}" fill="${value <= 6 ? "#27ae60" : "#e67e22"}"/>`,
    );
    parts.push(`<text x="${left + scale(value, maxCost) + 4}" y="${y + 15}" font-size="11">$${value.toFixed(2)}</text>`);
    y += rowHeight;
  }
  parts.push(targetLine(6, maxCost, "$6", costTop - 4, y));
  y += 16;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join("\n")}\n</svg>\n`;
}

/** The previous bench/results.json with what a `--only` run measured in place of its parts. */
function mergedResults(fresh, ran) {
  let previous = {};
  try {
    previous = JSON.parse(readFileSync(join(root, "bench/results.json"), "utf8"));
  } catch {
    return fresh;
  }
  const merged = { ...previous, environment: fresh.environment, prices_usd_per_million: fresh.prices_usd_per_million };
  const byId = new Map((previous.scenarios ?? []).map((scenario) => [scenario.id, scenario]));
  for (const scenario of fresh.scenarios) byId.set(scenario.id, scenario);
  merged.scenarios = [...byId.values()];
  if (ran.hot) merged.hot_conversation = fresh.hot_conversation;
  if (ran.quiet || fresh.storage["busy conversation, forwarded"]) {
    for (const key of ["storage", "usd_per_million", "usd_per_million_if_set_alarm_is_free"]) merged[key] = { ...previous[key], ...fresh[key] };
  }
  if (ran.burst) merged.burst_one_conversation = fresh.burst_one_conversation;
  if (ran.destinations) {
    merged.destinations = fresh.destinations;
    for (const key of ["storage", "usd_per_million", "usd_per_million_if_set_alarm_is_free"]) merged[key] = { ...merged[key], ...fresh[key] };
  }
  const freshTargets = new Set(fresh.targets.map((target) => target.target));
  merged.targets = [...(previous.targets ?? []).filter((target) => !freshTargets.has(target.target)), ...fresh.targets];
  merged.partial_runs = [
    ...(previous.partial_runs ?? []),
    { at: fresh.generated_at, only: String(options.only), options: fresh.options, duration_s: fresh.duration_s },
  ].slice(-10);
  return merged;
}

/** The tables, the Easemob claims note, the targets and the relay's logged errors, on stdout. */
export function printSummary({ scenarios, hot, storageRows, usdWithoutAlarmRows, claimsNote, targets, burst }) {
  console.log(
    `\nScenarios (medians of ${options.pairs} ABBA pair(s); ratio = median of per-pair relay/no-op; p50/p99/CPU are the relay's; storage columns per accepted receipt, else per callback):\n`,
  );
  printTable(scenarios, scenarioColumns);
  if (hot.length > 0) {
    console.log("\nHot conversation, origin 50 ms away:\n");
    printTable(hot, [
      ["case", (h) => `FORWARD_BATCH_MAX=${h.batch_max}`],
      ["accepted/s", (h) => h.accepted_rps],
      ["forwarded/s", (h) => h.forwarded_rps],
      ["backlog mid", (h) => h.backlog_mid],
      ["backlog end", (h) => h.backlog_end],
      ["growing", (h) => (h.backlog_growing ? "yes" : "no")],
      ["receipts/delivery", (h) => h.receipts_per_delivery],
      ["drained in s", (h) => h.drained_within_s ?? "> 30"],
      ["capacity backlog", (h) => h.capacity_backlog],
      ["capacity receipts/s", (h) => h.capacity_rps ?? "n/a"],
    ]);
  }
  if (storageRows.length > 0) {
    console.log(
      `\nStorage and cost per receipt (USD per million with Workers Paid list prices of ${PRICES.checked}; setAlarm priced as a row written; CPU and duration not included):\n`,
    );
    printTable(storageRows, storageColumns(usdWithoutAlarmRows));
  }
  if (claimsNote) {
    console.log(
      `\nEasemob claims, per callback (not in the figures above): ${claimsNote.rows_written_per_callback} rows written, ${claimsNote.object_requests_per_callback} object requests ($${claimsNote.usd_per_million_callbacks} per million callbacks)`,
    );
  }
  if (targets.length > 0) {
    console.log("\nTargets:");
    for (const target of targets) console.log(`  ${target.met ? "met   " : "NOT MET"}  ${target.target}: ${target.value}`);
  }
  if (burst) {
    console.log("\nBurst into one conversation:\n");
    printTable([burst], burstColumns);
  }
  const logProblems = [...scenarios, ...hot, ...(burst ? [burst] : [])].filter((s) => s.relay_log.errors > 0);
  for (const s of logProblems) console.log(`\nbench: ${s.name}: the relay logged ${s.relay_log.errors} errors, e.g. ${s.relay_log.samples.join(" | ")}`);
}

/**
 * Writes bench/results.json and bench/results.svg. With --only, the parts that ran (`ran`: hot, quiet,
 * burst) replace theirs in the previous results; the rest is kept.
 */
export function writeResults(results, { scenarios, usd, meta, ran }) {
  mkdirSync(join(root, "bench"), { recursive: true });
  const written = options.only ? mergedResults(results, ran) : results;
  writeFileSync(join(root, "bench/results.json"), `${JSON.stringify(written, null, 2)}\n`);
  writeFileSync(join(root, "bench/results.svg"), svgChart(written.scenarios ?? scenarios, written.usd_per_million ?? usd, meta));
}

/** The tables again as markdown, for the README. */
export function printMarkdown({ scenarios, storageRows, usdWithoutAlarmRows, burst }) {
  console.log(`\nMarkdown (for the README):\n`);
  console.log(markdownTable(scenarios, scenarioColumns.slice(0, 7).concat(scenarioColumns.slice(8, 12))));
  if (storageRows.length > 0) console.log(`\n${markdownTable(storageRows, storageColumns(usdWithoutAlarmRows))}`);
  if (burst) console.log(`\n${markdownTable([burst], burstColumns)}`);
}

// The scenarios (one load shape each, run ABBA against the no-op worker) and the goals the results
// are checked against.
import { forwardingTo, generators, held, PROVIDERS, randomAddress, without } from "./callbacks.mjs";
import { round } from "./util.mjs";

export const SCENARIOS = [
  {
    id: "disabled",
    name: "provider disabled (503)",
    settings: () => without(held(), "EASEMOB_SECRET"),
    request: () => generators.easemob({ conversations: 1000 }),
  },
  {
    id: "refused",
    name: "refused: bad signature (401)",
    settings: () => held(),
    request: () => {
      const request = generators.easemob({ conversations: 1000, sign: false });
      return { ...request, headers: { ...request.headers, "cf-connecting-ip": randomAddress() } };
    },
  },
  {
    id: "duplicate",
    name: "duplicate (the same callback again)",
    settings: () => held(),
    setup: () => ({ fixedAt: Date.now() }),
    request: (state) => generators.easemob({ conversations: 1, fixedAt: state.fixedAt }),
  },
  { id: "accepted_1", name: "accepted, 1 conversation (held)", settings: () => held(), request: () => generators.easemob({ conversations: 1 }) },
  {
    id: "accepted_1000",
    name: "accepted, 1,000 conversations (held)",
    prime: 1000,
    settings: () => held(),
    request: () => generators.easemob({ conversations: 1000 }),
  },
  {
    id: "forwarded_1",
    name: "accepted + forwarded, 1 conversation",
    forwarded: true,
    settings: ({ origin }) => forwardingTo(origin),
    request: () => generators.easemob({ conversations: 1 }),
  },
  {
    id: "forwarded_1000",
    name: "accepted + forwarded, 1,000 conversations",
    forwarded: true,
    prime: 1000,
    settings: ({ origin }) => forwardingTo(origin),
    request: () => generators.easemob({ conversations: 1000 }),
  },
  // Every other registered provider (src/providers/index.ts): its plainest sample.
  ...PROVIDERS.filter((provider) => provider !== "easemob").map((provider) => ({
    id: `${provider}_1000`,
    name: `${provider}: accepted, 1,000 conversations (held)`,
    prime: 1000,
    settings: () => held(),
    request: () => generators[provider]({ conversations: 1000 }),
  })),
];
export const SCENARIO_IDS = [...SCENARIOS.map((scenario) => scenario.id), "hot", "quiet", "destinations", "burst"];

/** The goals, each with its measured value; a part that did not run (`--only`) has none. */
/** Rows written per receipt with `setAlarm` counted as a row (Cloudflare bills each as one). */
const rowsWithAlarms = (figures) => round(figures.rows_written_per_receipt + figures.alarms_set_per_receipt, 2);
/** USD per million with each Easemob callback's claim included (every receipt of these cases is an Easemob callback). */
const withClaims = (usd, claims) => (usd === undefined || !claims ? undefined : round(usd + claims.usd_per_million_callbacks, 3));

export function targetsOf({ scenarios, hot, burst, busy, quiet, usd, destinations, claims }) {
  const [one, two, three] = destinations?.cases ?? [];
  return [
    busy && ["rows written per forwarded receipt, busy conversation, setAlarm counted ≤ 2", rowsWithAlarms(busy.storage), (v) => v <= 2],
    quiet && ["rows written per forwarded receipt, quiet conversation, setAlarm counted ≤ 3", rowsWithAlarms(quiet), (v) => v <= 3],
    one &&
      two && ["each further matching destination: rows written per receipt ≤ +1 (2 vs 1)", round(rowsWithAlarms(two) - rowsWithAlarms(one), 2), (v) => v <= 1],
    claims && ["an Easemob callback's claim: rows written ≤ 1", claims.rows_written_per_callback, (v) => v <= 1],
    busy && [
      "USD per million forwarded receipts, busy, Easemob claims included ≤ 2.50",
      withClaims(usd["busy conversation, forwarded"], claims),
      (v) => v <= 2.5,
    ],
    quiet && [
      "USD per million forwarded receipts, quiet, Easemob claims included ≤ 3.50",
      withClaims(usd["quiet conversation, forwarded"], claims),
      (v) => v <= 3.5,
    ],
    destinations && [
      "3 destinations, one answering 503: the others' delivery p99 within 20 % of 1 destination's",
      destinations.p99_ratio_with_failing,
      (v) => v !== null && v <= 1.2,
    ],
    quiet && ["KV puts per receipt, quiet conversation, default interval ≤ 0.1", quiet.kv_puts_per_receipt, (v) => v <= 0.1],
    quiet && ["object requests per quiet forwarded receipt ≤ 2", quiet.object_requests_per_receipt, (v) => v <= 2],
    hot[1] && [
      "hot conversation, FORWARD_BATCH_MAX=100, origin 50 ms: forwarding capacity ≥ 1,000 receipts/s",
      hot[1].capacity_rps,
      (v) => v !== null && v >= 1000,
    ],
    hot[1] && ["hot conversation, FORWARD_BATCH_MAX=100: backlog not growing", hot[1].backlog_growing ? "growing" : "bounded", (v) => v === "bounded"],
    scenarios.find((s) => s.id === "accepted_1") && [
      "accepted into one conversation: relay/no-op ≥ 0.35",
      scenarios.find((s) => s.id === "accepted_1").ratio,
      (v) => v >= 0.35,
    ],
    scenarios.find((s) => s.id === "refused") && ["refused: relay/no-op ≥ 0.7", scenarios.find((s) => s.id === "refused").ratio, (v) => v >= 0.7],
    burst && ["burst into one conversation: accepted ≥ 1,000/s", burst.accepted_rps, (v) => v >= 1000],
    burst && ["burst into one conversation: every receipt answered 200 stored once", burst.lost + burst.duplicated, (v) => v === 0],
  ]
    .filter(Boolean)
    .map(([target, value, ok]) => ({ target, value, met: value !== null && value !== undefined && ok(value) }));
}

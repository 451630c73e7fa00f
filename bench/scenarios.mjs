// The scenarios (one load shape each, run ABBA against the no-op worker) and the goals the results
// are checked against.
import { forwardingTo, generators, held, randomAddress, without } from "./callbacks.mjs";

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
  ...["tencent", "openim", "stream", "sendbird"].map((provider) => ({
    id: `${provider}_1000`,
    name: `${provider}: accepted, 1,000 conversations (held)`,
    prime: 1000,
    settings: () => held(),
    request: () => generators[provider]({ conversations: 1000 }),
  })),
];
export const SCENARIO_IDS = [...SCENARIOS.map((scenario) => scenario.id), "hot", "quiet", "burst"];

/** The goals, each with its measured value; a part that did not run (`--only`) has none. */
export function targetsOf({ scenarios, hot, burst, busy, quiet, usd }) {
  return [
    busy && ["rows written per forwarded receipt, busy conversation ≤ 6", busy.storage.rows_written_per_receipt, (v) => v <= 6],
    quiet && ["rows written per forwarded receipt, quiet conversation ≤ 8", quiet.rows_written_per_receipt, (v) => v <= 8],
    quiet && ["KV puts per receipt, quiet conversation, default interval ≤ 0.1", quiet.kv_puts_per_receipt, (v) => v <= 0.1],
    quiet && ["object requests per quiet forwarded receipt ≤ 2", quiet.object_requests_per_receipt, (v) => v <= 2],
    quiet && ["USD per million receipts, quiet and forwarded ≤ 6", usd["quiet conversation, forwarded"], (v) => v <= 6],
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

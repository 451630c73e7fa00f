// The DESTINATIONS setting: each destination judged on its own, messages naming the setting and the
// field (never a value), and which receipts each destination is owed.
import { describe, expect, it } from "vitest";
import { toBase64 } from "../src/crypto/encoding";
import {
  DESTINATION_NAME,
  MatchSpec,
  matches,
  parseDestinations,
  routesOf,
  type DestinationConfig,
  type DestinationDefaults,
  type Match,
  type ParsedDestinations,
} from "../src/destinations/config";
import type { Receipt } from "../src/receipt";

/** A real Standard Webhooks secret: whsec_ and the base64 of 32 random bytes. */
function newSecret(): { text: string; key: Uint8Array } {
  const key = crypto.getRandomValues(new Uint8Array(32));
  return { text: `whsec_${toBase64(key)}`, key };
}

const defaults: DestinationDefaults = { schedule: [5, 30, 120], timeoutMs: 10_000, batchMax: 1 };
const crmSecret = newSecret();
const opsSecret = newSecret();
const originKey = newSecret();

const crm = { name: "crm", url: "https://crm.example/receipts", secret: "FORWARD_SECRET_CRM" };
const ops = { name: "ops", url: "http://ops.example:8080/hook", secret: "FORWARD_SECRET_OPS" };

/** Every secret value and raw DESTINATIONS text a test used: none may appear in any message. */
const used = new Set<string>([crmSecret.text, opsSecret.text, originKey.text]);

/** parseDestinations over DESTINATIONS (as given) and both secrets; checks that no message leaks. */
function parse(destinations: unknown, extra: Record<string, unknown> = {}, origin?: Parameters<typeof parseDestinations>[2]): ParsedDestinations {
  if (typeof destinations === "string") used.add(destinations);
  const env = { DESTINATIONS: destinations, FORWARD_SECRET_CRM: crmSecret.text, FORWARD_SECRET_OPS: opsSecret.text, ...extra };
  for (const value of Object.values(extra)) if (typeof value === "string") used.add(value);
  const parsed = parseDestinations(env, defaults, origin);
  expectNoLeak(parsed);
  return parsed;
}

function expectNoLeak(parsed: ParsedDestinations): void {
  const messages = [
    ...parsed.problems.map((problem) => problem.problem),
    ...parsed.destinations.flatMap((config) => (config.state === "misconfigured" ? [config.reason] : [])),
  ];
  for (const message of messages) {
    for (const value of used) if (value.length > 8) expect(message).not.toContain(value);
    expect(message).not.toMatch(/whsec_[A-Za-z0-9+/]/);
    // No secret's base64 body either (a message quoting part of a value).
    for (const value of used) if (value.startsWith("whsec_")) expect(message).not.toContain(value.slice(6, 20));
  }
}

/** The one destination parsed from a single element, and the problems. */
function one(element: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const parsed = parse(JSON.stringify([element]), extra);
  expect(parsed.destinations).toHaveLength(1);
  return { config: parsed.destinations[0] as DestinationConfig, problems: parsed.problems };
}

/** The reason of a single misconfigured destination, checked against its problems. */
function reasonOf(element: Record<string, unknown>, extra: Record<string, unknown> = {}): { reason: string; setting: string; config: DestinationConfig } {
  const { config, problems } = one(element, extra);
  expect(config.state).toBe("misconfigured");
  if (config.state !== "misconfigured") throw new Error("unreachable");
  expect(problems.length).toBeGreaterThan(0);
  expect(problems.map((problem) => problem.problem).join("; ")).toBe(config.reason);
  return { reason: config.reason, setting: config.setting, config };
}

const receipt = (overrides: Partial<Pick<Receipt, "provider" | "app" | "event" | "chat" | "conversation">> = {}) => ({
  provider: "easemob" as const,
  app: "org#app",
  event: "read_ack",
  chat: "single" as const,
  conversation: "easemob:org#app:single:alice|bob",
  ...overrides,
});

describe("DESTINATIONS: the setting's forms", () => {
  it("reads a JSON string: url, keys from the named setting, and the defaults", () => {
    const { destinations, problems } = parse(JSON.stringify([crm]));
    expect(problems).toEqual([]);
    expect(destinations).toEqual([
      {
        name: "crm",
        state: "active",
        destination: { name: "crm", url: crm.url, keys: [crmSecret.key], match: {}, timeoutMs: 10_000, schedule: [5, 30, 120], batchMax: 1 },
      },
    ]);
    const [config] = destinations;
    if (config?.state !== "active") throw new Error("not active");
    expect(config.destination.maxPerSecond).toBeUndefined();
    expect("maxPerSecond" in config.destination).toBe(false);
  });

  it("reads an already-parsed array (a structured [vars] value) the same way", () => {
    expect(parse([crm, ops])).toEqual(parse(JSON.stringify([crm, ops])));
    expect(parse([crm, ops]).destinations.map((config) => [config.name, config.state])).toEqual([
      ["crm", "active"],
      ["ops", "active"],
    ]);
  });

  it("reads every field, overriding the defaults", () => {
    const { config, problems } = one({
      ...crm,
      match: { provider: ["easemob", "tencent"], app: ["org#app"], event: ["read_ack"], chat: ["group"], conversationPrefix: ["easemob:"] },
      timeoutMs: 2500,
      retrySchedule: "1, 2.5,3",
      batchMax: 50,
      maxPerSecond: 200,
    });
    expect(problems).toEqual([]);
    expect(config).toEqual({
      name: "crm",
      state: "active",
      destination: {
        name: "crm",
        url: crm.url,
        keys: [crmSecret.key],
        match: { provider: ["easemob", "tencent"], app: ["org#app"], event: ["read_ack"], chat: ["group"], conversationPrefix: ["easemob:"] },
        timeoutMs: 2500,
        schedule: [1, 2.5, 3],
        batchMax: 50,
        maxPerSecond: 200,
      },
    });
  });

  it("takes retrySchedule as an array of seconds, and numbers written as strings", () => {
    const { config, problems } = one({ ...crm, retrySchedule: [0, 60, 86400], timeoutMs: "3000", batchMax: " 10 " });
    expect(problems).toEqual([]);
    expect(config).toMatchObject({ state: "active", destination: { schedule: [0, 60, 86400], timeoutMs: 3000, batchMax: 10 } });
  });

  it("reads several secrets, comma-separated, from the named setting", () => {
    const second = newSecret();
    const { config, problems } = one(crm, { FORWARD_SECRET_CRM: ` ${crmSecret.text} , ${second.text}` });
    expect(problems).toEqual([]);
    expect(config).toMatchObject({ state: "active", destination: { keys: [crmSecret.key, second.key] } });
  });

  it.each([undefined, null, "", "   "])("unset or empty (%j) configures nothing", (value) => {
    expect(parse(value)).toEqual({ destinations: [], problems: [] });
  });

  it("an empty array configures nothing", () => {
    expect(parse("[]")).toEqual({ destinations: [], problems: [] });
    expect(parse([])).toEqual({ destinations: [], problems: [] });
  });

  it.each([
    [`[{"name": "crm", "url": "https://crm.example", "secret": "${"whsec_c2VjcmV0"}"`, "it is not valid JSON"],
    [`whsec_notjson`, "it is not valid JSON"],
    [`{"name": "crm"}`, "it is an object"],
    [`"crm"`, "it is a string"],
    [`42`, "it is a number"],
    [{ name: "crm" }, "it is an object"],
    [7, "it is a number"],
  ])("refuses %j: not a JSON array, said without quoting it", (value, what) => {
    const { destinations, problems } = parse(value);
    expect(destinations).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(problems[0]?.setting).toBe("DESTINATIONS");
    expect(problems[0]?.problem).toMatch(/^must be a JSON array of destinations \(/);
    expect(problems[0]?.problem).toContain(what);
    expect(problems[0]?.problem).not.toContain("whsec_");
    expect(problems[0]?.problem).not.toContain("c2VjcmV0");
  });

  it("keeps the origin when DESTINATIONS is not an array", () => {
    const parsed = parse("nope", {}, { state: "active", url: "https://origin.example/r", keys: [originKey.key] });
    expect(parsed.destinations.map((config) => [config.name, config.state])).toEqual([["origin", "active"]]);
    expect(parsed.problems).toHaveLength(1);
  });
});

describe("DESTINATIONS: each field's validation", () => {
  it.each([
    [{ url: "ftp://crm.example" }, "destination crm: url must be an http:// or https:// URL"],
    [{ url: "not a url" }, "destination crm: url must be an http:// or https:// URL"],
    [{ url: 42 }, "destination crm: url must be an http:// or https:// URL"],
    [{ url: undefined }, "destination crm: url is missing"],
    [{ secret: undefined }, "destination crm: secret is missing (the name of the setting that holds its whsec_ secrets, like FORWARD_SECRET_CRM)"],
    [
      { secret: "forward_secret_crm" },
      "destination crm: secret must be the name of the setting that holds its whsec_ secrets, like FORWARD_SECRET_CRM, not the secrets themselves",
    ],
    [
      { secret: 5 },
      "destination crm: secret must be the name of the setting that holds its whsec_ secrets, like FORWARD_SECRET_CRM, not the secrets themselves",
    ],
    [{ timeoutMs: 99 }, "destination crm: timeoutMs must be at least 100"],
    [{ timeoutMs: 120_001 }, "destination crm: timeoutMs must be at most 120000"],
    [{ timeoutMs: 150.5 }, "destination crm: timeoutMs must be a whole number from 100 to 120000"],
    [{ timeoutMs: "soon" }, "destination crm: timeoutMs must be a whole number from 100 to 120000"],
    [{ timeoutMs: true }, "destination crm: timeoutMs must be a whole number from 100 to 120000"],
    [{ batchMax: 0 }, "destination crm: batchMax must be at least 1"],
    [{ batchMax: 1001 }, "destination crm: batchMax must be at most 1000"],
    [{ maxPerSecond: 0 }, "destination crm: maxPerSecond must be at least 1"],
    [{ maxPerSecond: 10_001 }, "destination crm: maxPerSecond must be at most 10000"],
    [{ maxPerSecond: "fast" }, "destination crm: maxPerSecond must be a whole number from 1 to 10000"],
    [{ retrySchedule: "5,x,120" }, "destination crm: retrySchedule must be comma-separated seconds, like 5,30,120"],
    [{ retrySchedule: "5,86401" }, "destination crm: retrySchedule has a step over 86400 seconds"],
    [{ retrySchedule: Array(31).fill(1).join(",") }, "destination crm: retrySchedule has more than 30 steps"],
    [{ retrySchedule: [5, 86401] }, "destination crm: retrySchedule has a step over 86400 seconds"],
    [{ retrySchedule: Array(31).fill(1) }, "destination crm: retrySchedule has more than 30 steps"],
    [{ retrySchedule: [] }, "destination crm: retrySchedule must have at least one step"],
    [{ retrySchedule: [5, -1] }, "destination crm: retrySchedule must be seconds, like [5, 30, 120]"],
    [{ retrySchedule: { every: 5 } }, 'destination crm: retrySchedule must be comma-separated seconds like "5,30,120", or an array of seconds'],
    [{ colour: "blue" }, "destination crm: has an unknown field colour (fields: name, url, secret, match, timeoutMs, retrySchedule, batchMax, maxPerSecond)"],
    [{ match: "everything" }, "destination crm: match must be an object with any of provider, app, event, chat, conversationPrefix"],
    [{ match: [] }, "destination crm: match must be an object with any of provider, app, event, chat, conversationPrefix"],
    [{ match: { channel: ["x"] } }, "destination crm: match has an unknown field channel (fields: provider, app, event, chat, conversationPrefix)"],
    [{ match: { provider: "easemob" } }, "destination crm: match.provider must be a non-empty array of non-empty strings"],
    [{ match: { app: [] } }, "destination crm: match.app must be a non-empty array of non-empty strings"],
    [{ match: { event: [""] } }, "destination crm: match.event must be a non-empty array of non-empty strings"],
    [{ match: { conversationPrefix: [1] } }, "destination crm: match.conversationPrefix must be a non-empty array of non-empty strings"],
    [{ match: { chat: ["channel"] } }, 'destination crm: match.chat must list only "single" or "group"'],
    [{ match: { chat: [] } }, 'destination crm: match.chat must be a non-empty array of "single" or "group"'],
  ])("%j: misconfigured with its message", (change, message) => {
    const { reason, setting } = reasonOf({ ...crm, ...change });
    expect(reason).toBe(message);
    expect(setting).toBe("DESTINATIONS");
  });

  it("names an unknown field only when it looks like one a person typed (never something pasted)", () => {
    const { reason } = reasonOf({ ...crm, [crmSecret.text]: true });
    expect(reason).toBe("destination crm: has an unknown field (unnamed) (fields: name, url, secret, match, timeoutMs, retrySchedule, batchMax, maxPerSecond)");
  });

  it("lists every problem of a destination, each also in problems", () => {
    const { reason } = reasonOf({ ...crm, url: "mailto:x", timeoutMs: 5, match: { chat: ["x"], foo: [] } });
    expect(reason).toBe(
      [
        "destination crm: url must be an http:// or https:// URL",
        'destination crm: match.chat must list only "single" or "group"',
        "destination crm: match has an unknown field foo (fields: provider, app, event, chat, conversationPrefix)",
        "destination crm: timeoutMs must be at least 100",
      ].join("; "),
    );
  });

  it("a secret setting that is named but unset: misconfigured under that setting", () => {
    for (const value of [undefined, "", "  "]) {
      const { reason, setting } = reasonOf(crm, { FORWARD_SECRET_CRM: value });
      expect(reason).toBe("destination crm: secret setting FORWARD_SECRET_CRM is not set");
      expect(setting).toBe("FORWARD_SECRET_CRM");
    }
    const parsed = parse(JSON.stringify([{ ...crm, secret: "NOT_DEFINED" }]));
    expect(parsed.problems).toEqual([{ setting: "NOT_DEFINED", problem: "destination crm: secret setting NOT_DEFINED is not set" }]);
  });

  it.each([
    ["not-a-secret-at-all", "destination crm: secret setting FORWARD_SECRET_CRM must list secrets that start with whsec_"],
    ["whsec_!!!not-base64!!!", "destination crm: secret setting FORWARD_SECRET_CRM must list secrets of the form whsec_ followed by base64"],
    [`whsec_${toBase64(new Uint8Array(8))}`, "destination crm: secret setting FORWARD_SECRET_CRM must list secrets of 24 to 64 key bytes"],
    ["SECRET_PLACEHOLDER_VALUE,", "destination crm: secret setting FORWARD_SECRET_CRM has an empty secret between commas"],
    [Array(6).fill(newSecret().text).join(","), "destination crm: secret setting FORWARD_SECRET_CRM must list at most 5 secrets"],
    [{ binding: true }, "destination crm: secret setting FORWARD_SECRET_CRM must be a string"],
  ])("a malformed secret value: misconfigured under the secret's setting, the value not quoted (%#)", (value, message) => {
    const { reason, setting, config } = reasonOf(crm, { FORWARD_SECRET_CRM: value });
    expect(reason).toBe(message);
    expect(setting).toBe("FORWARD_SECRET_CRM");
    // What parsed is kept: the url, and the match (everything, here).
    expect(config).toMatchObject({ url: crm.url, match: {} });
  });

  it("setting: DESTINATIONS when it holds a problem too, with every problem under its own setting", () => {
    const parsed = parse(JSON.stringify([{ ...crm, batchMax: 0 }]), { FORWARD_SECRET_CRM: "" });
    expect(parsed.destinations[0]).toMatchObject({ state: "misconfigured", setting: "DESTINATIONS" });
    expect(parsed.problems).toEqual([
      { setting: "FORWARD_SECRET_CRM", problem: "destination crm: secret setting FORWARD_SECRET_CRM is not set" },
      { setting: "DESTINATIONS", problem: "destination crm: batchMax must be at least 1" },
    ]);
  });

  it("keeps the match on a misconfigured destination when it parsed, and not when it did not", () => {
    expect(reasonOf({ ...crm, url: "nope", match: { app: ["a"] } }).config).toEqual({
      name: "crm",
      state: "misconfigured",
      reason: "destination crm: url must be an http:// or https:// URL",
      setting: "DESTINATIONS",
      match: { app: ["a"] },
    });
    const { config } = reasonOf({ ...crm, match: { app: "a" } });
    expect(config).not.toHaveProperty("match");
    expect(config).toHaveProperty("url", crm.url);
  });

  it("a problem in one destination leaves the others alone", () => {
    const parsed = parse([{ ...crm, url: "nope" }, ops]);
    expect(parsed.destinations.map((config) => [config.name, config.state])).toEqual([
      ["crm", "misconfigured"],
      ["ops", "active"],
    ]);
    expect(parsed.problems).toEqual([{ setting: "DESTINATIONS", problem: "destination crm: url must be an http:// or https:// URL" }]);
  });
});

describe("DESTINATIONS: names", () => {
  it("DESTINATION_NAME: 1 to 32 lowercase letters, digits or dashes", () => {
    for (const name of ["crm", "a", "x-1", "a".repeat(32)]) expect(DESTINATION_NAME.test(name)).toBe(true);
    for (const name of ["", "CRM", "a_b", "a b", "a".repeat(33), "crm!"]) expect(DESTINATION_NAME.test(name)).toBe(false);
  });

  it.each([
    [null, 'destination #2: must be an object like {"name": …, "url": …, "secret": …} (it is null)'],
    ["crm", 'destination #2: must be an object like {"name": …, "url": …, "secret": …} (it is a string)'],
    [[crm], 'destination #2: must be an object like {"name": …, "url": …, "secret": …} (it is an array)'],
    [{ url: crm.url, secret: crm.secret }, "destination #2: name is missing"],
    [{ ...crm, name: "CRM" }, "destination #2: name must be 1 to 32 lowercase letters, digits or dashes"],
    [{ ...crm, name: 7 }, "destination #2: name must be 1 to 32 lowercase letters, digits or dashes"],
    [{ ...crm, name: "" }, "destination #2: name must be 1 to 32 lowercase letters, digits or dashes"],
  ])("an element that cannot be named (%j) is skipped with a problem", (element, problem) => {
    const parsed = parse([ops, element]);
    expect(parsed.destinations.map((config) => config.name)).toEqual(["ops"]);
    expect(parsed.problems).toEqual([{ setting: "DESTINATIONS", problem }]);
  });

  it("never quotes a bad name (it could be anything pasted)", () => {
    const parsed = parse([{ ...crm, name: crmSecret.text }]);
    expect(parsed.problems).toEqual([{ setting: "DESTINATIONS", problem: "destination #1: name must be 1 to 32 lowercase letters, digits or dashes" }]);
  });

  it("a duplicate name: the second is skipped with a problem, the first kept as it is", () => {
    const parsed = parse([crm, ops, { ...crm, url: "https://other.example" }]);
    expect(parsed.destinations.map((config) => config.name)).toEqual(["crm", "ops"]);
    expect(parsed.destinations[0]).toMatchObject({ state: "active", destination: { url: crm.url } });
    expect(parsed.problems).toEqual([
      { setting: "DESTINATIONS", problem: "destination crm: the name is already used by an earlier destination (destination #3 is skipped)" },
    ]);
    // A misconfigured first one still holds its name.
    const broken = parse([{ ...crm, url: "nope" }, crm]);
    expect(broken.destinations.map((config) => [config.name, config.state])).toEqual([["crm", "misconfigured"]]);
    expect(broken.problems).toHaveLength(2);
  });
});

describe("DESTINATIONS with the legacy origin", () => {
  const origin = { state: "active" as const, url: "https://origin.example/receipts", keys: [originKey.key] };

  it("the origin comes first, takes everything, with the defaults", () => {
    const parsed = parse([crm], {}, origin);
    expect(parsed.problems).toEqual([]);
    expect(parsed.destinations[0]).toEqual({
      name: "origin",
      state: "active",
      destination: { name: "origin", url: origin.url, keys: [originKey.key], match: {}, timeoutMs: 10_000, schedule: [5, 30, 120], batchMax: 1 },
    });
    expect(parsed.destinations.map((config) => config.name)).toEqual(["origin", "crm"]);
  });

  it("only the origin when DESTINATIONS is unset", () => {
    expect(parse(undefined, {}, origin).destinations.map((config) => config.name)).toEqual(["origin"]);
  });

  it("a misconfigured origin keeps its reason and setting, takes everything, and adds no problem (the caller has it)", () => {
    const parsed = parse([crm], {}, { state: "misconfigured", reason: "setting FORWARD_SECRET must be set when ORIGIN_URL is set", setting: "FORWARD_SECRET" });
    expect(parsed.destinations[0]).toEqual({
      name: "origin",
      state: "misconfigured",
      reason: "setting FORWARD_SECRET must be set when ORIGIN_URL is set",
      setting: "FORWARD_SECRET",
      match: {},
    });
    expect(parsed.problems).toEqual([]);
  });

  it("the name origin is reserved while ORIGIN_URL is set: that element is refused, the legacy one stays", () => {
    const parsed = parse([{ ...crm, name: "origin" }, ops], {}, origin);
    expect(parsed.destinations.map((config) => [config.name, config.state])).toEqual([
      ["origin", "active"],
      ["ops", "active"],
    ]);
    expect(parsed.destinations[0]).toMatchObject({ destination: { url: origin.url } });
    expect(parsed.problems).toEqual([{ setting: "DESTINATIONS", problem: "destination origin: the name origin is reserved while ORIGIN_URL is set" }]);
  });

  it("without ORIGIN_URL, a destination may be named origin", () => {
    const parsed = parse([{ ...crm, name: "origin" }]);
    expect(parsed.problems).toEqual([]);
    expect(parsed.destinations).toMatchObject([{ name: "origin", state: "active", destination: { url: crm.url } }]);
  });
});

describe("matches", () => {
  it("absent or {} takes everything", () => {
    expect(matches(receipt(), undefined)).toBe(true);
    expect(matches(receipt(), {})).toBe(true);
    expect(matches(receipt({ chat: "group", provider: "sendbird" }), {})).toBe(true);
  });

  it.each<[string, Match, Parameters<typeof receipt>[0], boolean]>([
    ["provider in the list", { provider: ["tencent", "easemob"] }, {}, true],
    ["provider not in the list", { provider: ["tencent"] }, {}, false],
    ["app", { app: ["org#app"] }, {}, true],
    ["app, another", { app: ["org#other"] }, {}, false],
    ["event", { event: ["read_ack", "channel_ack"] }, {}, true],
    ["event, another", { event: ["channel_ack"] }, {}, false],
    ["chat single", { chat: ["single"] }, {}, true],
    ["chat group, a single chat", { chat: ["group"] }, {}, false],
    ["chat group, a group chat", { chat: ["group"] }, { chat: "group" }, true],
    ["chat either", { chat: ["single", "group"] }, { chat: "group" }, true],
    ["conversationPrefix", { conversationPrefix: ["tencent:", "easemob:org#app:"] }, {}, true],
    ["conversationPrefix, none", { conversationPrefix: ["tencent:", "easemob:org#other:"] }, {}, false],
    ["conversationPrefix is a prefix, not a substring", { conversationPrefix: ["alice"] }, {}, false],
    [
      "every field given, all match",
      { provider: ["easemob"], app: ["org#app"], event: ["read_ack"], chat: ["single"], conversationPrefix: ["easemob:"] },
      {},
      true,
    ],
    [
      "every field given, one does not",
      { provider: ["easemob"], app: ["org#app"], event: ["read_ack"], chat: ["group"], conversationPrefix: ["easemob:"] },
      {},
      false,
    ],
  ])("%s", (_, match, overrides, expected) => {
    expect(MatchSpec.parse(match)).toEqual(match);
    expect(matches(receipt(overrides), match)).toBe(expected);
  });

  it("MatchSpec refuses an unknown field", () => {
    expect(MatchSpec.safeParse({ channel: ["x"] }).success).toBe(false);
  });
});

describe("routesOf", () => {
  const active = (name: string, match: Match): DestinationConfig => ({
    name,
    state: "active",
    destination: { name, url: "https://x.example", keys: [crmSecret.key], match, timeoutMs: 1000, schedule: [1], batchMax: 1 },
  });
  const configs: DestinationConfig[] = [
    active("everything", {}),
    active("groups", { chat: ["group"] }),
    { name: "broken-groups", state: "misconfigured", reason: "destination broken-groups: url is missing", setting: "DESTINATIONS", match: { chat: ["group"] } },
    {
      name: "broken-singles",
      state: "misconfigured",
      reason: "destination broken-singles: url is missing",
      setting: "DESTINATIONS",
      match: { chat: ["single"] },
    },
    { name: "unreadable", state: "misconfigured", reason: 'destination unreadable: match.chat must list only "single" or "group"', setting: "DESTINATIONS" },
    active("tencent", { provider: ["tencent"] }),
  ];

  it("active whose match takes it, misconfigured whose known match takes it, and misconfigured whose match is unknown, in order", () => {
    expect(routesOf(receipt(), configs)).toEqual(["everything", "broken-singles", "unreadable"]);
    expect(routesOf(receipt({ chat: "group" }), configs)).toEqual(["everything", "groups", "broken-groups", "unreadable"]);
    expect(routesOf(receipt({ provider: "tencent", chat: "group" }), configs)).toEqual(["everything", "groups", "broken-groups", "unreadable", "tencent"]);
  });

  it("nothing configured: owed to none", () => {
    expect(routesOf(receipt(), [])).toEqual([]);
  });

  it("end to end: parsed destinations route receipts, a broken match holding everything", () => {
    const parsed = parse(
      [
        { ...crm, match: { chat: ["group"] } },
        { ...ops, match: { chat: ["channel"] } },
        { name: "tencent", url: "https://t.example", secret: "FORWARD_SECRET_OPS", match: { provider: ["tencent"] } },
      ],
      {},
      { state: "active", url: "https://origin.example", keys: [originKey.key] },
    );
    expect(parsed.destinations.map((config) => [config.name, config.state])).toEqual([
      ["origin", "active"],
      ["crm", "active"],
      ["ops", "misconfigured"],
      ["tencent", "active"],
    ]);
    expect(routesOf(receipt(), parsed.destinations)).toEqual(["origin", "ops"]);
    expect(routesOf(receipt({ provider: "tencent", chat: "group" }), parsed.destinations)).toEqual(["origin", "crm", "ops", "tencent"]);
  });
});

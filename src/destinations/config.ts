/**
 * The DESTINATIONS setting: where receipts are forwarded besides (or instead of) ORIGIN_URL, and
 * which receipts each destination takes. Pure: no I/O, no Worker-only module (scripts/check-config.mjs
 * bundles it for Node).
 *
 * A destination is judged on its own: a problem in one makes that destination `misconfigured` (its
 * receipts wait for it) and leaves the others alone. A destination that cannot be named (not an
 * object, no usable name, a name already taken) is skipped with a problem. Messages name the
 * setting and the field, never a value: DESTINATIONS may hold a pasted secret, and the settings it
 * names hold secrets.
 */
import { z } from "zod";
import type { Receipt } from "../receipt";
import { forwardKey, list, optional, retrySchedule } from "../setting-values";

export const DESTINATION_NAME = /^[a-z0-9-]{1,32}$/;
/** How a destination names the setting that holds its `whsec_` secrets. */
const SETTING_NAME = /^[A-Z][A-Z0-9_]*$/;
const SETTING = "DESTINATIONS";
const ORIGIN = "origin";

const values = (what: string) => {
  const message = `must be a non-empty array of non-empty ${what}`;
  return z.array(z.string({ error: message }).min(1, message), { error: message }).min(1, message);
};

/** Which receipts a destination takes: every given field must match one of its values; `{}` takes all. */
export const MatchSpec = z
  .object({
    provider: values("strings").optional(),
    app: values("strings").optional(),
    event: values("strings").optional(),
    chat: z
      .array(z.enum(["single", "group"], { error: 'must list only "single" or "group"' }), { error: 'must be a non-empty array of "single" or "group"' })
      .min(1, 'must be a non-empty array of "single" or "group"')
      .optional(),
    conversationPrefix: values("strings").optional(),
  })
  .strict();
export type Match = z.infer<typeof MatchSpec>;
const MATCH_FIELDS = Object.keys(MatchSpec.shape);

export interface Destination {
  name: string;
  url: string;
  /** Every delivery is signed with each (rotation without a gap). */
  keys: Uint8Array[];
  match: Match;
  timeoutMs: number;
  /** Seconds before each retry. */
  schedule: number[];
  batchMax: number;
  maxPerSecond?: number;
}

/** One configured destination: usable, or misconfigured with why (the setting to fix and the problem). */
export type DestinationConfig =
  | { name: string; state: "active"; destination: Destination }
  | { name: string; state: "misconfigured"; reason: string; setting: string; match?: Match; url?: string };

/** The global FORWARD_* values, for a destination that does not give its own. */
export interface DestinationDefaults {
  schedule: number[];
  timeoutMs: number;
  batchMax: number;
}

export interface ParsedDestinations {
  destinations: DestinationConfig[];
  problems: { setting: string; problem: string }[];
}

type Origin = { state: "active"; url: string; keys: Uint8Array[] } | { state: "misconfigured"; reason: string; setting: string };

const ELEMENT_FIELDS = ["name", "url", "secret", "match", "timeoutMs", "retrySchedule", "batchMax", "maxPerSecond"];

const url = z
  .string({ error: "must be an http:// or https:// URL" })
  .trim()
  .pipe(z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }));

// The same rules as FORWARD_SECRET.
const secrets = optional(list(z.string(), "secret").pipe(z.array(forwardKey).max(5, "must list at most 5 secrets")));

const whole = (min: number, max: number) =>
  z
    .number({ error: `must be a whole number from ${min} to ${max}` })
    .int(`must be a whole number from ${min} to ${max}`)
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

/** A number, or (as everywhere else in [vars]) a whole number written as a string. */
const number = (min: number, max: number) =>
  z.preprocess((value) => (typeof value === "string" && /^\s*\d+\s*$/.test(value) ? Number(value) : value), whole(min, max));

const schedule = z.union(
  [
    retrySchedule,
    z
      .array(
        z.number({ error: "must be seconds, like [5, 30, 120]" }).min(0, "must be seconds, like [5, 30, 120]").max(86400, "has a step over 86400 seconds"),
        { error: 'must be comma-separated seconds like "5,30,120", or an array of seconds' },
      )
      .min(1, "must have at least one step")
      .max(30, "has more than 30 steps"),
  ],
  { error: 'must be comma-separated seconds like "5,30,120", or an array of seconds' },
);

/** The message of a failed parse: the most specific issue's, never the value. */
function messageOf(error: z.ZodError): string {
  const issues = error.issues;
  // A union reports its branches' issues under invalid_union: the branch that got furthest is the one meant.
  const issue = issues[0];
  if (!issue) return "is not valid";
  if (issue.code === "invalid_union") {
    const branches = (issue as { errors?: z.core.$ZodIssue[][] }).errors ?? [];
    const meant = branches.find((branch) => branch.length > 0 && branch.every((inner) => inner.code !== "invalid_type"));
    if (meant?.[0]) return meant[0].message;
  }
  return issue.message;
}

function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** A field name fit to print: one a person typed by mistake, not something pasted (a secret). */
function fieldName(key: string): string {
  return /^[A-Za-z][A-Za-z0-9_-]{0,39}$/.test(key) && !/^whsec_/i.test(key) ? key : "(unnamed)";
}

/** Where JSON.parse gave up, without its message: V8's quotes the text around it. */
function jsonFault(error: unknown): string {
  const position = error instanceof Error ? /position (\d+)/.exec(error.message)?.[1] : undefined;
  return position === undefined ? "it is not valid JSON" : `it is not valid JSON: a fault near character ${Number(position) + 1}`;
}

/** The array DESTINATIONS holds, or why it is not one; undefined when it is unset. */
function elementsOf(value: unknown): { elements: unknown[] } | { problem: string } | undefined {
  if (value === undefined || value === null) return undefined;
  let parsed = value;
  if (typeof value === "string") {
    if (value.trim() === "") return undefined;
    try {
      parsed = JSON.parse(value);
    } catch (error) {
      return { problem: `must be a JSON array of destinations (${jsonFault(error)})` };
    }
  }
  if (!Array.isArray(parsed)) return { problem: `must be a JSON array of destinations (it is ${describeJson(parsed)})` };
  return { elements: parsed };
}

interface Fault {
  setting: string;
  reason: string;
}

/** One element that has a usable, free name: its destination, or everything wrong with it. */
function destinationOf(
  name: string,
  element: Record<string, unknown>,
  env: Record<string, unknown>,
  defaults: DestinationDefaults,
): { config: DestinationConfig; faults: Fault[] } {
  const faults: Fault[] = [];
  const fault = (what: string, setting = SETTING) => faults.push({ setting, reason: `destination ${name}: ${what}` });

  const unknown = Object.keys(element).filter((key) => !ELEMENT_FIELDS.includes(key));
  for (const key of unknown) fault(`has an unknown field ${fieldName(key)} (fields: ${ELEMENT_FIELDS.join(", ")})`);

  let target: string | undefined;
  if (element.url === undefined) fault("url is missing");
  else {
    const parsed = url.safeParse(element.url);
    if (parsed.success) target = parsed.data;
    else fault(`url ${messageOf(parsed.error)}`);
  }

  let keys: Uint8Array[] | undefined;
  const secret = element.secret;
  if (secret === undefined) fault("secret is missing (the name of the setting that holds its whsec_ secrets, like FORWARD_SECRET_CRM)");
  else if (typeof secret !== "string" || !SETTING_NAME.test(secret)) {
    fault("secret must be the name of the setting that holds its whsec_ secrets, like FORWARD_SECRET_CRM, not the secrets themselves");
  } else {
    const value = env[secret];
    if (value !== undefined && value !== null && typeof value !== "string") fault(`secret setting ${secret} must be a string`, secret);
    else {
      const parsed = secrets.safeParse(value ?? undefined);
      if (!parsed.success) fault(`secret setting ${secret} ${messageOf(parsed.error)}`, secret);
      else if (parsed.data === undefined) fault(`secret setting ${secret} is not set`, secret);
      else keys = parsed.data;
    }
  }

  let match: Match | undefined;
  if (element.match === undefined) match = {};
  else if (typeof element.match !== "object" || element.match === null || Array.isArray(element.match)) {
    fault(`match must be an object with any of ${MATCH_FIELDS.join(", ")}`);
  } else {
    const parsed = MatchSpec.safeParse(element.match);
    if (parsed.success) match = parsed.data;
    else {
      // Each wrong field once: its first issue.
      const seen = new Set<string>();
      for (const issue of parsed.error.issues) {
        if (issue.code === "unrecognized_keys") {
          const fields = issue.keys.map(fieldName).join(", ");
          fault(`match has an unknown field ${fields} (fields: ${MATCH_FIELDS.join(", ")})`);
          continue;
        }
        const key = String(issue.path[0] ?? "");
        if (seen.has(key)) continue;
        seen.add(key);
        fault(`match.${key} ${issue.message}`);
      }
    }
  }

  const field = <T>(key: string, schema: z.ZodType<T>, fallback: T): T => {
    if (element[key] === undefined) return fallback;
    const parsed = schema.safeParse(element[key]);
    if (parsed.success) return parsed.data;
    fault(`${key} ${messageOf(parsed.error)}`);
    return fallback;
  };
  const timeoutMs = field("timeoutMs", number(100, 120_000), defaults.timeoutMs);
  const steps = field<number[]>("retrySchedule", schedule, defaults.schedule);
  const batchMax = field("batchMax", number(1, 1000), defaults.batchMax);
  const maxPerSecond = field<number | undefined>("maxPerSecond", number(1, 10_000), undefined);

  // The setting to fix: DESTINATIONS when anything in it is wrong, else the secret's setting.
  const first = faults.find((each) => each.setting === SETTING) ?? faults[0];
  if (first || !target || !keys || !match) {
    const config: DestinationConfig = {
      name,
      state: "misconfigured",
      reason: faults.map((each) => each.reason).join("; "),
      setting: first?.setting ?? SETTING,
      ...(match ? { match } : {}),
      ...(target ? { url: target } : {}),
    };
    return { config, faults };
  }
  const destination: Destination = { name, url: target, keys, match, timeoutMs, schedule: steps, batchMax };
  if (maxPerSecond !== undefined) destination.maxPerSecond = maxPerSecond;
  return { config: { name, state: "active", destination }, faults };
}

/**
 * env: the raw environment (DESTINATIONS, the named secret settings, ORIGIN_URL/FORWARD_SECRET already parsed by the caller are passed in `origin`).
 * origin: the legacy single destination, when ORIGIN_URL is set or when nothing at all is configured:
 *   { state: "active", url, keys } | { state: "misconfigured", reason, setting } | undefined (ORIGIN_URL unset)
 *
 * The origin's own problems are not repeated in `problems` (the caller has them from parseSettings).
 */
export function parseDestinations(env: Record<string, unknown>, defaults: DestinationDefaults, origin?: Origin): ParsedDestinations {
  const destinations: DestinationConfig[] = [];
  const problems: ParsedDestinations["problems"] = [];
  if (origin?.state === "active") {
    destinations.push({
      name: ORIGIN,
      state: "active",
      destination: {
        name: ORIGIN,
        url: origin.url,
        keys: origin.keys,
        match: {},
        timeoutMs: defaults.timeoutMs,
        schedule: defaults.schedule,
        batchMax: defaults.batchMax,
      },
    });
  } else if (origin) destinations.push({ name: ORIGIN, state: "misconfigured", reason: origin.reason, setting: origin.setting, match: {} });

  const list = elementsOf(env[SETTING]);
  if (list && "problem" in list) problems.push({ setting: SETTING, problem: list.problem });
  if (!list || !("elements" in list)) return { destinations, problems };

  const skip = (problem: string) => problems.push({ setting: SETTING, problem });
  const taken = new Set(destinations.map((destination) => destination.name));
  for (const [index, element] of list.elements.entries()) {
    const at = `destination #${index + 1}`;
    if (typeof element !== "object" || element === null || Array.isArray(element)) {
      skip(`${at}: must be an object like {"name": …, "url": …, "secret": …} (it is ${describeJson(element)})`);
      continue;
    }
    const fields = element as Record<string, unknown>;
    const name = fields.name;
    if (name === undefined) {
      skip(`${at}: name is missing`);
      continue;
    }
    if (typeof name !== "string" || !DESTINATION_NAME.test(name)) {
      skip(`${at}: name must be 1 to 32 lowercase letters, digits or dashes`);
      continue;
    }
    if (origin && name === ORIGIN) {
      skip(`destination ${ORIGIN}: the name ${ORIGIN} is reserved while ORIGIN_URL is set`);
      continue;
    }
    if (taken.has(name)) {
      skip(`destination ${name}: the name is already used by an earlier destination (${at} is skipped)`);
      continue;
    }
    taken.add(name);
    const { config, faults } = destinationOf(name, fields, env, defaults);
    // Each fault once, under the setting to fix.
    for (const { setting, reason } of faults) problems.push({ setting, problem: reason });
    destinations.push(config);
  }
  return { destinations, problems };
}

type Routed = Pick<Receipt, "provider" | "app" | "event" | "chat" | "conversation">;

/** Whether `match` takes the receipt: every given field matches one of its values; `{}` or none takes all. */
export function matches(receipt: Routed, match: Match | undefined): boolean {
  if (!match) return true;
  if (match.provider && !match.provider.includes(receipt.provider)) return false;
  if (match.app && !match.app.includes(receipt.app)) return false;
  if (match.event && !match.event.includes(receipt.event)) return false;
  if (match.chat && !match.chat.includes(receipt.chat)) return false;
  if (match.conversationPrefix && !match.conversationPrefix.some((prefix) => receipt.conversation.startsWith(prefix))) return false;
  return true;
}

/** Names of the destinations a receipt is owed to, in configuration order: active ones whose match takes it, misconfigured ones whose match is known and takes it, and misconfigured ones whose match could not be read (they hold everything, so nothing is lost while they are broken). */
export function routesOf(receipt: Routed, destinations: readonly DestinationConfig[]): string[] {
  const names: string[] = [];
  for (const config of destinations) {
    const match = config.state === "active" ? config.destination.match : config.match;
    if (matches(receipt, match)) names.push(config.name);
  }
  return names;
}

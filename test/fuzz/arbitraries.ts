/**
 * Generators and checks shared by the providers' property tests: hostile strings and JSON text,
 * valid samples with some fields replaced, and what every outcome of a pure run must look like.
 */
import fc from "fast-check";
import { expect } from "vitest";
import { wellFormed } from "../../src/providers/provider";
import { Receipt, type ProviderName } from "../../src/receipt";
import type { Stage } from "../support/pipeline";

/** Fixed so that a failure reproduces; fast-check prints the seed and path of any counterexample. */
export const SEED = 20261122;
/** Runs per property: a few hundred keeps the five files well under 20 s on two cores. */
export const RUNS = 400;
export const settings = (numRuns = RUNS) => ({ seed: SEED, numRuns });

/** The pure runs' clock: every signed sample is made fresh against it. */
export const NOW = Date.parse("2026-11-22T00:00:00.000Z");
export const RECEIVED_AT = new Date(NOW).toISOString();

/** Strings that have broken parsers, key encoders and prototype lookups before. */
const trickyString = fc.constantFrom(
  "",
  " ",
  "\ud800",
  "\udfff",
  "a\ud800b",
  "\udc00\ud800",
  "😀",
  "\u0000",
  "\u202e",
  "e\u0301",
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "hasOwnProperty",
  "%",
  "%ZZ",
  "%ED%A0%80",
  ":",
  "/",
  "..",
  "?#",
  '"',
  "\\",
  "[[[[{{{{",
  "null",
  "0",
  "-1",
  "1e400",
  "9007199254740993",
  "x".repeat(300),
);

/** Any UTF-16 code unit, lone surrogates included (which `fc.string` never makes on its own). */
const utf16Unit = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code));

export const hostileString = fc.oneof(
  trickyString,
  fc.string({ unit: utf16Unit, maxLength: 24 }),
  fc.string({ unit: "grapheme", maxLength: 16 }),
  fc.string({ maxLength: 16 }),
);

/** A lone surrogate between well-formed text: the prefix and suffix cannot pair it up. */
export const loneSurrogateString = fc
  .tuple(
    fc.string({ unit: "grapheme", maxLength: 8 }),
    fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)),
    fc.string({ unit: "grapheme", maxLength: 8 }),
  )
  .map(([before, surrogate, after]) => `${before}${surrogate}${after}`);

/** Number literals as JSON text: huge, beyond double range (JSON.parse makes them Infinity), unsafe integers. */
const numberLiteral = fc.oneof(
  fc.constantFrom(
    "0",
    "-0",
    "1e400",
    "-1e400",
    "1e-400",
    "9007199254740993",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1.5",
    "1E2",
    "253402300800000",
    "-1",
  ),
  fc.integer().map(String),
  fc.maxSafeInteger().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
);

/** Object keys, `__proto__` (an own key after JSON.parse) among them. */
export const hostileKey = fc.oneof(fc.constantFrom("__proto__", "constructor", "toString", "", "\ud800"), hostileString);

/** Any JSON value as text, written by hand so that `__proto__` keys and out-of-range numbers survive. */
export const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string; leaf: string; array: string; object: string }>((tie) => ({
  value: fc.oneof({ depthSize: "small", maxDepth: 4 }, tie("leaf"), tie("array"), tie("object")),
  leaf: fc.oneof(
    numberLiteral,
    fc.constantFrom("true", "false", "null"),
    hostileString.map((text) => JSON.stringify(text)),
  ),
  array: fc.array(tie("value"), { maxLength: 4 }).map((items) => `[${items.join(",")}]`),
  object: fc
    .array(fc.tuple(hostileKey, tie("value")), { maxLength: 4 })
    .map((entries) => `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(",")}}`),
})).value;

/** Arbitrary request bodies: free text, JSON of any shape, or a JSON object. */
export const anyBodyText = fc.oneof(
  fc.string({ unit: utf16Unit, maxLength: 64 }),
  jsonText,
  fc.constantFrom("", " ", "{", "[]", "null", "{}", '{"__proto__":{}}', "\ufeff{}", '{"a":1,"a":2}'),
);

/** One change to a sample: a field's value replaced by any JSON text, or the field removed. */
export type Edit = { path: string[]; text?: string };
/** A key added to one of the sample's objects. */
export type Addition = { path: string[]; key: string; text: string };

/** Every path to a value in a JSON sample (object keys and array indexes). */
export function pathsOf(value: unknown, at: string[] = []): string[][] {
  const children = Array.isArray(value) ? value.map((item, index) => [String(index), item] as const) : isObject(value) ? Object.entries(value) : [];
  return children.flatMap(([key, child]) => [[...at, key], ...pathsOf(child, [...at, key])]);
}

/** Every path to an object in a JSON sample, the root included: where keys may be added. */
export function objectPathsOf(value: unknown, at: string[] = []): string[][] {
  if (Array.isArray(value)) return value.flatMap((item, index) => objectPathsOf(item, [...at, String(index)]));
  if (!isObject(value)) return [];
  return [at, ...Object.entries(value).flatMap(([key, child]) => objectPathsOf(child, [...at, key]))];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const sameKey = (path: readonly string[]) => JSON.stringify(path);

/**
 * A sample as JSON text with edits applied: replaced values keep their place, removed ones go, and
 * added keys come last (so an added key that already exists wins, as JSON.parse keeps the last).
 */
export function renderEdited(sample: unknown, edits: readonly Edit[], additions: readonly Addition[] = []): string {
  const byPath = new Map(edits.map((edit) => [sameKey(edit.path), edit]));
  const render = (value: unknown, at: string[]): string => {
    if (Array.isArray(value)) {
      const items = value.flatMap((item, index) => renderChild(item, [...at, String(index)]));
      return `[${items.join(",")}]`;
    }
    if (isObject(value)) {
      const entries = Object.entries(value).flatMap(([key, child]) => renderChild(child, [...at, key]).map((text) => `${JSON.stringify(key)}:${text}`));
      const added = additions
        .filter((addition) => sameKey(addition.path) === sameKey(at))
        .map((addition) => `${JSON.stringify(addition.key)}:${addition.text}`);
      return `{${[...entries, ...added].join(",")}}`;
    }
    return JSON.stringify(value);
  };
  const renderChild = (value: unknown, at: string[]): string[] => {
    const edit = byPath.get(sameKey(at));
    if (!edit) return [render(value, at)];
    return edit.text === undefined ? [] : [edit.text];
  };
  return render(sample, []);
}

/** Values to put in a sample's fields: any JSON, and the shapes most likely to slip through. */
export const fieldValueText = fc.oneof(
  jsonText,
  numberLiteral,
  hostileString.map((text) => JSON.stringify(text)),
  loneSurrogateString.map((text) => JSON.stringify(text)),
);

/** Up to three edits and two additions over a sample, never touching the paths in `keep`. */
export function editsOf(sample: unknown, keep: readonly string[] = []) {
  const editable = pathsOf(sample).filter((path) => !keep.includes(path[0] ?? ""));
  const edit: fc.Arbitrary<Edit> = fc.record({ path: fc.constantFrom(...editable), text: fc.option(fieldValueText, { nil: undefined }) });
  const addition: fc.Arbitrary<Addition> = fc.record({
    path: fc.constantFrom(...objectPathsOf(sample)),
    key: hostileKey.filter((key) => !keep.includes(key)),
    text: fieldValueText,
  });
  return fc.record({ edits: fc.array(edit, { maxLength: 3 }), additions: fc.array(addition, { maxLength: 2 }) });
}

/** The top-level fields a set of edits touched: a refusal must name one of them. */
export function touchedFields(edits: readonly Edit[], additions: readonly Addition[]): Set<string> {
  return new Set([...edits.map((edit) => edit.path[0] ?? ""), ...additions.map((addition) => addition.path[0] ?? addition.key)]);
}

/** JSON text nested `depth` levels (objects and arrays alternating), holding `inner` innermost. */
export function nestedText(depth: number, inner = "0"): string {
  let text = inner;
  for (let level = 0; level < depth; level++) text = level % 2 === 0 ? `[${text}]` : `{"k":${text}}`;
  return text;
}

/**
 * The statuses a pure run can refuse with, per provider and stage. 405/429/500/503 are the
 * router's and the pipeline's (method, rate limit, crash, storage), never a provider's; so is 413,
 * but for a Stream gzip body that inflates past the limit.
 */
/** What a provider may refuse with at each stage: a path below the hook, a bad signature or an app not allowed, a malformed body. */
const USUAL_REFUSALS = { parse: [404], verify: [401, 403], normalize: [400] } as const;
/** Providers that refuse with more than the usual (a new provider needs no line here unless it does). */
const MORE_REFUSALS: Partial<Record<ProviderName, Record<"parse" | "verify" | "normalize", readonly number[]>>> = {
  easemob: { parse: [400, 404], verify: [401], normalize: [400] },
  tencent: { parse: [404], verify: [401, 403], normalize: [400, 403] },
  openim: { parse: [], verify: [401], normalize: [400, 404] },
  // Stream inflates a gzip body while verifying: a corrupt one is 400.
  stream: { parse: [404], verify: [400, 401, 403, 413], normalize: [400] },
  // Meta: 413 past MAX_META_ITEMS_PER_CALLBACK events in one batch.
  whatsapp: { parse: [404], verify: [401, 403], normalize: [400, 413] },
  messenger: { parse: [404], verify: [401, 403], normalize: [400, 413] },
  instagram: { parse: [404], verify: [401, 403], normalize: [400, 413] },
};

/** Any outcome of a run: a receipt that holds up, an ignored event, or a documented refusal. */
export function expectWellFormedOutcome(provider: ProviderName, result: Stage): void {
  if (result.stage === "done") {
    if (result.kind === "receipt") expectSoundReceipt(result.receipt, provider);
    else expect(result.event).toEqual(expect.any(String));
    return;
  }
  expect((MORE_REFUSALS[provider] ?? USUAL_REFUSALS)[result.stage]).toContain(result.status);
  expect(result.code).toMatch(/^[a-z_]+$/);
  expect(result.message.length).toBeGreaterThan(0);
}

/** A receipt that the schema takes and that survives keying, serialization and the RPC boundary. */
export function expectSoundReceipt(receipt: Receipt, provider: ProviderName): void {
  const checked = Receipt.safeParse(receipt);
  expect(checked.error?.issues ?? []).toEqual([]);
  expect(receipt.provider).toBe(provider);
  // Ids end up in keys and URLs: the lone surrogates that would make encodeURIComponent throw are refused.
  for (const id of [receipt.app, receipt.conversation, ...receipt.readers, receipt.peer ?? "", receipt.group ?? ""]) {
    expect(wellFormed(id), `not well-formed: ${JSON.stringify(id)}`).toBe(true);
    expect(() => encodeURIComponent(id)).not.toThrow();
  }
  expect(receipt.conversation.startsWith(`${provider}:${encodeURIComponent(receipt.app)}:`)).toBe(true);
  const text = JSON.stringify(receipt);
  expect(Receipt.safeParse(JSON.parse(text)).success).toBe(true);
  expect(structuredClone(receipt)).toEqual(receipt);
}

/** A 400 whose message names a field (`field a.b: ...`) that the edits touched or that depends on one. */
export function expectRefusalNamingField(result: Stage, touched: ReadonlySet<string>, dependsOn: Record<string, readonly string[]> = {}): void {
  expect(result.stage).not.toBe("done");
  if (result.stage === "done") return;
  expect(result.status).toBe(400);
  const named = /^field ([^.:]+)[.:]/.exec(result.message)?.[1];
  expect(named, `names no field: ${result.message}`).toBeDefined();
  const causes = [named ?? "", ...(dependsOn[named ?? ""] ?? [])];
  expect(
    causes.some((field) => touched.has(field)),
    `${result.message} names no edited field of ${[...touched].join(", ")}`,
  ).toBe(true);
}

/**
 * What every provider signed with an HMAC over the body must hold under fuzzing, as one suite's
 * inputs: the samples to mutate, a right signature and forged ones for a text, the configs and URL
 * paths to try, how a callback is run, and an `authentic` written apart from the provider.
 */
export interface SignedFuzz<Config, Result> {
  editedSample: fc.Arbitrary<string>;
  sign: (text: string) => fc.Arbitrary<string | Promise<string>>;
  forge: (text: string) => fc.Arbitrary<string | undefined | Promise<string | undefined>>;
  config: fc.Arbitrary<Config>;
  path: fc.Arbitrary<readonly string[]>;
  run: (text: string, signature: string | undefined, config: Config, path?: readonly string[]) => Promise<Result>;
  authentic: (text: string, signature: string | undefined) => Promise<boolean>;
  /** The outcome is one the provider documents (and a receipt, a sound one). */
  expectOutcome: (result: Result) => void;
}

/** Never throws, refuses only with a documented status, and accepts only authentic callbacks. */
export async function acceptsOnlyAuthentic<Config, Result extends { stage: string }>(fuzz: SignedFuzz<Config, Result>): Promise<void> {
  const input = fc.oneof(anyBodyText, fuzz.editedSample).chain((body) =>
    fc.record({
      body: fc.constant(body),
      signature: fc.oneof({ weight: 2, arbitrary: fuzz.sign(body) }, { weight: 1, arbitrary: fuzz.forge(body) }),
      config: fuzz.config,
      path: fuzz.path,
    }),
  );
  await fc.assert(
    fc.asyncProperty(input, async ({ body, signature, config, path }) => {
      const signed = await signature;
      const result = await fuzz.run(body, signed, config, path);
      fuzz.expectOutcome(result);
      if (result.stage === "done") expect(await fuzz.authentic(body, signed)).toBe(true);
    }),
    settings(),
  );
}

/** A wrong or missing signature is refused at verify (401), whatever the body holds: before any allow-list is read. */
export async function refusesForgedAtVerify<Config, Result>(fuzz: SignedFuzz<Config, Result>): Promise<void> {
  const input = fuzz.editedSample.chain((body) => fc.record({ body: fc.constant(body), signature: fuzz.forge(body), config: fuzz.config }));
  await fc.assert(
    fc.asyncProperty(input, async ({ body, signature, config }) => {
      const signed = await signature;
      fc.pre(!(await fuzz.authentic(body, signed)));
      expect(await fuzz.run(body, signed, config)).toMatchObject({ stage: "verify", status: 401 });
    }),
    settings(),
  );
}

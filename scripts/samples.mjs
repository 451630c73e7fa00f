// Shared by send-samples.mjs, smoke.mjs, check-config.mjs and the bench: every registered
// provider's sample callbacks (src/providers/index.ts, `registry`), made fresh and signed by the
// provider's own `fresh` and `sign`, and the relay's own modules (settings schemas, providers)
// bundled for Node, so that scripts judge settings and receipts exactly as the relay does.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

import { readVarsFile, root } from "./dev-vars.mjs";

export { root };

/** @type {Map<string, unknown>} */
const fixtures = new Map();
/** A copy of test/fixtures/<name>.json: the provider's own documented payload. @param {string} name */
const fixture = (name) => {
  if (!fixtures.has(name)) fixtures.set(name, JSON.parse(readFileSync(`${root}test/fixtures/${name}.json`, "utf8")));
  return structuredClone(fixtures.get(name));
};
/** The first of a comma-separated list (secrets, app ids). @param {string | undefined} list */
export const first = (list) => (list ?? "").split(",")[0]?.trim();

let lastMessage = Date.now() * 1000;
/**
 * A message number no earlier run has used: microseconds since the epoch, counted on, so that
 * every callback is new (the same one twice is a duplicate; Easemob's callIds are claimed relay-wide).
 */
export const freshMessage = () => ++lastMessage;

/** Where the demo samples go: the same conversations on every run (send-samples' live page keeps watching them). */
export const DEMO_SEED = { conversation: "16505551234", reader: "16505551235" };

export { readVarsFile };

/** A secret by the settings' naming rule (scripts/check-config.mjs judges them by it too). @param {string} name */
export const isSecretName = (name) => /SECRET|TOKEN/.test(name);

/**
 * Every registered provider's settings as .dev.vars.example sets them (docs/adding-a-provider.md):
 * what the soak, the drill and the bench turn every provider on with. `freshSecrets` (a prefix):
 * each secret or token made new, `<prefix>-<name>-<random>`, so a run signs with what only it holds.
 * @param {{ freshSecrets?: string }} [options]
 * @returns {Promise<Record<string, string>>}
 */
export async function exampleProviderSettings({ freshSecrets } = {}) {
  const { registry } = await loadRelay();
  const example = readVarsFile(`${root}.dev.vars.example`) ?? {};
  /** @param {string} name */
  const fresh = (name) => `${freshSecrets}-${name.toLowerCase().replaceAll("_", "-")}-${randomBytes(12).toString("hex")}`;
  /** @type {Record<string, string>} */
  const settings = {};
  for (const name of registry.flatMap((provider) => Object.keys(provider.settings.shape))) {
    const value = example[name];
    if (value !== undefined) settings[name] = freshSecrets !== undefined && isSecretName(name) ? fresh(name) : value;
  }
  return settings;
}

/**
 * @typedef {{ provider: string, label: string, path: string, body: string | Uint8Array, headers: Record<string, string> }} Sample
 * `path` may hold OpenIM's token or Tencent's Sign: never print it.
 */

/**
 * Every registered provider with what `vars` (settings by name) make of it, judged by the
 * provider's own schema and `configure`: `{ provider, state }`, state as in /healthz
 * (`enabled` with its config, `disabled` naming the missing setting, or `misconfigured`).
 * @param {Record<string, string | undefined>} vars
 */
export async function configuredProviders(vars) {
  const { registry, parseGroup } = await loadRelay();
  return registry.map((provider) => {
    const parsed = parseGroup(provider.settings, vars);
    return { provider, state: parsed.values ? provider.configure(parsed.values) : { state: "misconfigured", problems: parsed.problems } };
  });
}

/**
 * A fresh callback of a provider's sample, signed for a relay with this config, made by the
 * provider's own members.
 * @param {any} provider a registered provider (src/providers/provider.ts, `RegisteredProvider`)
 * @param {unknown} config what its `configure` made of the settings
 * @param {number} sampleIndex which of its `samples`; 0 is the plainest read receipt
 * @param {{ conversation?: string, reader?: string, message?: number, now?: number, signedAt?: number }} seed
 *   `signedAt` (default `now`): when it is sent; the same seed signed later is the provider's retry
 *   of the same callback (same body and receipt ids; Tencent's RequestTime and TalkJS's timestamp fresh).
 * @returns {Promise<Sample>}
 */
export async function signedSample(provider, config, sampleIndex, seed = {}) {
  const sample = provider.samples[sampleIndex];
  if (!sample) throw new Error(`${provider.name} has no sample ${sampleIndex} (it has ${provider.samples.length})`);
  const { signedAt, ...given } = seed;
  const now = given.now ?? Date.now();
  const body = provider.fresh(fixture(sample.fixture), sample, { ...DEMO_SEED, message: freshMessage(), ...given, now });
  const request = await provider.sign(body, sample, config, signedAt ?? now);
  return { provider: provider.name, label: `${provider.name} ${sample.label}`, ...request };
}

/**
 * For load (the bench, the soak): a function that makes fresh signed callbacks of any enabled
 * provider's sample, spread over as many conversations as the seeds name.
 * @param {Record<string, string | undefined>} vars
 * @returns {Promise<(name: string, sampleIndex?: number, seed?: { conversation?: string, reader?: string, message?: number, now?: number, signedAt?: number }) => Promise<Sample>>}
 */
export async function callbackMaker(vars) {
  const configured = await configuredProviders(vars);
  return (name, sampleIndex = 0, seed = {}) => {
    const found = configured.find((entry) => entry.provider.name === name);
    if (!found) throw new Error(`no provider ${name} in the registry (src/providers/index.ts)`);
    if (found.state.state !== "enabled")
      throw new Error(`${name} is ${found.state.state} by these settings${found.state.missing ? `: set ${found.state.missing}` : ""}`);
    return signedSample(found.provider, found.state.config, sampleIndex, seed);
  };
}

/**
 * Every sample of every provider that `vars` enable, freshly signed, in the registry's order:
 * the first sample of each provider is its plainest read receipt.
 * @param {Record<string, string | undefined>} vars
 * @returns {Promise<Sample[]>}
 */
export async function buildSamples(vars) {
  const samples = [];
  for (const { provider, state } of await configuredProviders(vars)) {
    if (state.state !== "enabled") continue;
    for (const index of provider.samples.keys()) samples.push(await signedSample(provider, state.config, index));
  }
  return samples;
}

/** The JSON text of a sample's body (inflated when it is sent gzipped). @param {Sample} sample */
export const sampleText = (sample) => (typeof sample.body === "string" ? sample.body : gunzipSync(sample.body).toString("utf8"));

/**
 * Posts a sample to the relay. Resolves the HTTP status and the answer's text; rejects when the
 * relay cannot be reached or does not answer within `timeoutMs`.
 * @param {string} relay the relay's origin, e.g. http://127.0.0.1:8787
 * @param {Sample} sample
 */
export async function postSample(relay, sample, timeoutMs = 15_000) {
  const response = await fetch(new URL(sample.path, relay), {
    method: "POST",
    headers: sample.headers,
    body: typeof sample.body === "string" ? sample.body : new Uint8Array(sample.body),
    redirect: "manual",
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, text: await response.text() };
}

/**
 * The relay's modules as the scripts use them. Providers are typed loosely here (the scripts are
 * JavaScript); their interface is `RegisteredProvider` in src/providers/provider.ts.
 * @typedef {{ parseSettings: Function, parseGroup: Function, describeProblems: Function, parseDestinations: Function, registry: any[], providers: Record<string, any> }} RelayModules
 */
/** @type {RelayModules | undefined} */
let relayModules;

/**
 * The relay's settings schemas and providers, bundled from src/ with esbuild for Node (the
 * scripts stay plain JavaScript; Node 20 cannot import TypeScript). Only modules free of
 * `cloudflare:` imports may be pulled in: the bundle fails if one is.
 * @returns {Promise<RelayModules>}
 */
export async function loadRelay() {
  if (relayModules) return relayModules;
  const { build } = await import("esbuild");
  const contents = [
    `export { parseSettings, parseGroup, describeProblems } from "./src/settings.ts";`,
    `export { parseDestinations } from "./src/destinations/config.ts";`,
    `export { registry } from "./src/providers/index.ts";`,
  ].join("\n");
  const result = await build({
    stdin: { contents, resolveDir: root, sourcefile: "relay-modules.ts", loader: "ts" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    write: false,
    metafile: true,
    external: ["cloudflare:*"],
    logLevel: "silent",
  });
  const workerOnly = Object.values(result.metafile.outputs).flatMap((output) => output.imports.filter((entry) => entry.path.startsWith("cloudflare:")));
  if (workerOnly.length > 0)
    throw new Error(
      `the settings and providers modules import ${workerOnly.map((entry) => entry.path).join(", ")}: they must stay free of Worker-only modules`,
    );
  const code = result.outputFiles[0].text;
  const modules = await import(`data:text/javascript;base64,${Buffer.from(code).toString("base64")}`);
  relayModules = {
    parseSettings: modules.parseSettings,
    parseGroup: modules.parseGroup,
    describeProblems: modules.describeProblems,
    parseDestinations: modules.parseDestinations,
    registry: modules.registry,
    providers: Object.fromEntries(modules.registry.map((/** @type {any} */ provider) => [provider.name, provider])),
  };
  return relayModules;
}

/**
 * What the relay makes of a sample, computed with the relay's own provider code: every receipt's
 * id and conversation key (a WhatsApp batch makes several), or why it makes none.
 * @param {Sample} sample
 * @returns {Promise<{ receipts: { id: string, conversation: string }[] } | { error: string }>}
 */
export async function expectedReceipts(sample) {
  const { providers } = await loadRelay();
  const provider = providers[sample.provider];
  if (!provider) return { error: `no provider ${sample.provider} in the registry (src/providers/index.ts)` };
  const url = new URL(sample.path, "http://relay.invalid");
  const path = url.pathname.split("/").slice(4).filter(Boolean).map(decodeURIComponent);
  const bytes = typeof sample.body === "string" ? new TextEncoder().encode(sample.body) : new Uint8Array(sample.body);
  const raw = { url, path, body: new TextDecoder().decode(bytes), bytes, headers: new Headers(sample.headers) };
  const parsed = provider.parse(raw);
  if (!parsed.ok) return { error: `${parsed.rejection.code}: ${parsed.rejection.message}` };
  const normalized = await provider.normalize(parsed.value, { receivedAt: new Date().toISOString() });
  if (!normalized.ok) return { error: `${normalized.rejection.code}: ${normalized.rejection.message}` };
  const { value } = normalized;
  if (value.kind === "ignored") return { error: `not a read receipt (${value.event})` };
  /** @type {{ id: string, conversation: string }[]} */
  const made = value.kind === "receipts" ? value.receipts.map((/** @type {any} */ item) => item.receipt) : [value.receipt];
  if (made.length === 0) return { error: "no read receipt in the batch" };
  return { receipts: made.map(({ id, conversation }) => ({ id, conversation })) };
}

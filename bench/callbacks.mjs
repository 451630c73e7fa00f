// Settings and callbacks. Settings: every registered provider's, from .dev.vars.example with fresh
// secrets, passed to workerd as bindings (wrangler.toml is not read). Callbacks: every one fresh and
// correctly signed by its provider's own members (scripts/samples.mjs, src/providers/index.ts).
import { randomBytes } from "node:crypto";
import { callbackMaker, exampleProviderSettings, freshMessage, isSecretName, loadRelay } from "../scripts/samples.mjs";
import { options } from "./options.mjs";

const hex = (bytes) => randomBytes(bytes).toString("hex");
const { registry } = await loadRelay();
/** Every registered provider's name, in the registry's order. */
export const PROVIDERS = registry.map((provider) => provider.name);
/** Every registered provider's settings, as .dev.vars.example sets them (docs/adding-a-provider.md), secrets fresh. */
export const SECRETS = await exampleProviderSettings({ freshSecrets: "bench" });
/** The defaults of wrangler.toml's [vars] and the README, spelled out. */
const BASE_SETTINGS = {
  ...SECRETS,
  MAX_EVENT_AGE_SECONDS: "300",
  RECENT_LIMIT: "100",
  FORWARD_RETRY_SCHEDULE: "5,30,120,600,1800,3600,7200,14400,28800,43200",
  FORWARD_TIMEOUT_MS: "10000",
  SNAPSHOT_INTERVAL_SECONDS: "60",
  FORWARD_BATCH_MAX: "1",
};
/** What the relay signs deliveries with: the bench's origins verify with it (bench/origin.mjs). */
export const FORWARD_SECRET = `whsec_${randomBytes(32).toString("base64")}`;
export const held = (extra = {}) => ({ ...BASE_SETTINGS, LOG_LEVEL: options["log-level"], ...extra });
export const forwardingTo = (origin, extra = {}) => ({ ...BASE_SETTINGS, LOG_LEVEL: options["log-level"], ORIGIN_URL: origin.url, FORWARD_SECRET, ...extra });
export const without = (settings, name) => Object.fromEntries(Object.entries(settings).filter(([key]) => key !== name));

export const RUN = hex(3);
const makeCallback = await callbackMaker(SECRETS);
/** The same providers signing with secrets the relay does not hold: refused 401. */
const makeForged = await callbackMaker(Object.fromEntries(Object.entries(SECRETS).map(([name, value]) => [name, isSecretName(name) ? `not-${value}` : value])));

/** A fresh signed callback of a provider's sample (0: its plainest read receipt), for phases that send at their own pace. */
export const callback = (provider, sampleIndex = 0, seed = {}) => makeCallback(provider, sampleIndex, seed);

/**
 * Callbacks each pool has ready when a run starts: a 5 s run of the relay at 4,000 req/s (the
 * no-op worker, faster, may send some again: it does not tell them apart).
 */
const POOL_SIZE = 20_000;
/** Made in parallel: Web Crypto's calls go through a thread pool. */
const POOL_BATCH = 250;
/** Older than this, a ready callback is thrown away: Tencent refuses a RequestTime over 60 s away. */
const MAX_READY_AGE_MS = 30_000;

/**
 * Set by a load run while autocannon sends (bench/load.mjs): no signing then, so the bench's own
 * CPU does not compete with workerd's; `to` says whether the relay or the no-op worker takes them.
 */
let sending = false;
let sendingTo = "noop";
export const setSending = (value, to = "noop") => {
  sending = value;
  sendingTo = to;
};

/**
 * Signed callbacks made ahead of the load: autocannon asks for each request synchronously, and a
 * provider signs with Web Crypto, asynchronously. Topped up before each load run (`topUpPools`),
 * never while one sends: a pool that runs dry mid-run sends its callbacks again, in turn (said,
 * once per thousand, when the relay takes them).
 */
function pool(make) {
  let ready = [];
  let sent = [];
  let filling;
  let resent = 0;
  const fill = () =>
    (filling ??= (async () => {
      while (ready.length < POOL_SIZE) {
        const madeAt = Date.now();
        const made = await Promise.all(Array.from({ length: POOL_BATCH }, make));
        ready.push(...made.map((request) => ({ madeAt, request })));
      }
    })().finally(() => (filling = undefined)));
  const draw = () => {
    const now = Date.now();
    const fresh = ready.findIndex((item) => now - item.madeAt <= MAX_READY_AGE_MS);
    ready.splice(0, fresh === -1 ? ready.length : fresh);
    if (!sending && ready.length < POOL_SIZE / 2) fill();
    const item = ready.shift();
    if (item) {
      sent.push(item.request);
      return item.request;
    }
    if (sent.length === 0) return STAND_IN;
    // The no-op worker outruns any pool and does not tell a callback sent twice apart; the relay
    // would count it a duplicate, which the figures must not hide.
    if (++resent % 1000 === 1 && sendingTo === "relay") console.warn(`bench: the relay's callback pool ran dry (${resent} callbacks resent)`);
    return sent[resent % sent.length];
  };
  /** Fresh and full again before a load run; what was sent is forgotten. */
  const topUp = async () => {
    sent = [];
    resent = 0;
    const now = Date.now();
    ready = ready.filter((item) => now - item.madeAt <= MAX_READY_AGE_MS);
    await fill();
  };
  return { draw, topUp };
}
/** What a load run sends before its first callback is made: refused 404 by the relay, answered by the no-op worker. */
const STAND_IN = Object.freeze({ path: "/v1/hooks/none", headers: Object.freeze({ "content-type": "application/json" }), body: "{}" });
/** Pools by kind of callback, each made on first use; one not drawn from for a minute is dropped (its callbacks are stale). */
const pools = new Map();
const drawFrom = (key, make) => {
  const now = Date.now();
  if (!pools.has(key)) {
    for (const [other, { drawnAt }] of pools) if (now - drawnAt > 60_000) pools.delete(other);
    pools.set(key, { ...pool(make), drawnAt: now });
  }
  const entry = pools.get(key);
  entry.drawnAt = now;
  return entry.draw();
};
/** Tops up every pool drawn from in the last minute (the one a load run is about to use among them). */
export async function topUpPools() {
  const now = Date.now();
  await Promise.all([
    ...[...pools.values()].filter(({ drawnAt }) => now - drawnAt <= 60_000).map((entry) => entry.topUp()),
    ...[...fixedCallbacks.values()].map((entry) => entry.made),
  ]);
}
/** One callback, made once and sent every time (the duplicate case); the stand-in until it is made. */
const fixedCallbacks = new Map();
const fixed = (key, make) => {
  if (!fixedCallbacks.has(key)) {
    const entry = { request: undefined, made: undefined };
    entry.made = make().then((request) => (entry.request = request));
    fixedCallbacks.set(key, entry);
  }
  return fixedCallbacks.get(key).request ?? STAND_IN;
};

let sequence = 0;
/** Seeds spread over `conversations` conversations: callback n goes to conversation n mod conversations. */
const spread = (conversations) => {
  const n = ++sequence % conversations;
  return { conversation: `c${RUN}${n}`, reader: `u${RUN}${n}` };
};

/** The burst's sample (docs/design.md, "A burst into one conversation"): Tencent's group read receipt. */
const TENCENT_GROUP_SAMPLE = registry
  .find((provider) => provider.name === "tencent")
  .samples.findIndex((sample) => sample.fixture === "tencent-Group.CallbackAfterReadReceipt");

/** `conversations` bounds how many conversations the callbacks spread over. */
export const generators = {
  easemob({ conversations, sign = true, fixedAt } = {}) {
    if (fixedAt !== undefined) {
      return fixed(fixedAt, () => makeCallback("easemob", 0, { conversation: `c${RUN}fixed`, reader: `u${RUN}fixed`, message: freshMessage(), now: fixedAt }));
    }
    const make = sign ? makeCallback : makeForged;
    return drawFrom(`easemob:${conversations}:${sign}`, () => make("easemob", 0, spread(conversations)));
  },
  /** A group read burst: every callback one more member of one group reading (Tencent never retries). */
  tencentGroup({ group }) {
    return drawFrom(`tencentGroup:${group}`, () => makeCallback("tencent", TENCENT_GROUP_SAMPLE, { conversation: group, reader: `m${RUN}-${++sequence}` }));
  },
  // Every other registered provider: its plainest sample over `conversations` conversations.
  ...Object.fromEntries(
    registry
      .filter((provider) => provider.name !== "easemob")
      .map((provider) => [
        provider.name,
        ({ conversations }) => drawFrom(`${provider.name}:${conversations}`, () => makeCallback(provider.name, 0, spread(conversations))),
      ]),
  ),
};

/** A different client address per request, so that a refusal is a 401 and not the limiter's 429. */
export const randomAddress = () => `10.${randomBytes(3).join(".")}`;

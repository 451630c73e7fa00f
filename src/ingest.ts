/**
 * The one way through for every provider: settings → parse → verify → normalize → claim → store →
 * answer. Pure apart from the functions it is handed, so the whole pipeline is tested without bindings.
 */
import type { ClaimResult } from "./claims/claim-result";
import { sha256BytesHex } from "./crypto/hash";
import type { Answer, BodyClaim, EventTime, Normalized, Outcome, Provider, ProviderConfig, RawCallback, Rejection } from "./providers/provider";
import { DEFAULT_MAX_BODY_BYTES } from "./providers/provider";
import { MAX_EVENT_AGE_MS, MAX_FUTURE_SKEW_MS, withinBounds, type ProviderName, type Receipt } from "./receipt";
import { describeProblems, parseGroup } from "./settings";
import { isoFromMillis } from "./time";
import { log } from "./log";
import type { z } from "zod";

export interface IngestDeps {
  /** The raw environment: each provider reads its own settings from it. */
  env: object;
  now: number;
  /** Commits the receipt durably; resolves "duplicate" when its id was seen before. Throws when it cannot. */
  store(receipt: Receipt): Promise<"accepted" | "duplicate">;
  /** Binds a signed nonce to a body (its digest) and a conversation relay-wide. Throws when it cannot. */
  claim(claim: BodyClaim, conversation: string): Promise<ClaimResult>;
  /** Counts one failed authentication for the caller; says whether the caller is over its limit. */
  countAuthFailure(): Promise<{ limited: false } | { limited: true; retryAfterSeconds: number }>;
}

export type ProviderStatus = { state: "enabled" } | Exclude<ProviderConfig<unknown>, { state: "enabled" }>;

/** A provider made ready to take callbacks: what the callback routes and /healthz use. */
export interface Ingestor {
  name: ProviderName;
  /** The names of the provider's own settings (its file declares them). */
  settingNames: readonly string[];
  /** The largest body the provider takes (413 past it). */
  maxBodyBytes: number;
  /** For /healthz: enabled, or which setting would enable it, or what is wrong with its settings. */
  status(env: object): ProviderStatus;
  handle(raw: RawCallback, deps: IngestDeps): Promise<Answer>;
  /** The provider's answer for refusals made before the pipeline runs (404, 405, 413). */
  refuse(rejection: Rejection): Answer;
  /**
   * Only for a provider that verifies its callback URL with a `GET` (Meta): the text to answer 200
   * with, or the provider's refusal (a wrong verify token counts as a failed authentication).
   */
  handshake?(url: URL, deps: Pick<IngestDeps, "env" | "countAuthFailure">): Promise<{ text: string; answer: Answer } | { answer: Answer }>;
}

/** Receipts one callback may make (a Meta batch): more is refused 413 (docs/design.md, "Bounds"). */
export const MAX_RECEIPTS_PER_CALLBACK = 1000;
/** Reasons named in the one log line of a batch's skipped items (the count says how many in all). */
const MAX_LOGGED_REASONS = 5;

/** Events that were authentic but not read receipts, per isolate since it started (also logged). */
export const ignoredEvents = new Map<string, number>();
/** Names are the caller's: only plausible ones get a counter of their own, and only so many. */
const MAX_IGNORED_KINDS = 50;
const PLAUSIBLE_EVENT = /^[A-Za-z0-9._:-]{1,64}$/;

function countIgnored(provider: ProviderName, event: string, count = 1): void {
  let key = `${provider}:${PLAUSIBLE_EVENT.test(event) ? event : "other"}`;
  if (!ignoredEvents.has(key) && ignoredEvents.size >= MAX_IGNORED_KINDS) key = `${provider}:other`;
  ignoredEvents.set(key, (ignoredEvents.get(key) ?? 0) + count);
}

/** What the relay made of a callback, for metrics: the result or the refusal's code, and the event when known. */
export interface SettledOutcome {
  refused: boolean;
  code: string;
  event: string;
}

/** Beside each answer rather than in it: answers stay the providers' plain `{ status, body, headers }`. */
const outcomes = new WeakMap<Answer, SettledOutcome>();

/** A copy of the answer, so that a provider's shared answer object can never carry another callback's outcome. */
function settled(answer: Answer, outcome: Outcome): Answer {
  const own = { ...answer };
  outcomes.set(own, outcome.ok ? { refused: false, code: outcome.result, event: outcome.event } : { refused: true, code: outcome.code, event: "" });
  return own;
}

/** The outcome behind an answer an ingestor returned (`handle` or `refuse`); undefined for any other object. */
export const outcomeOf = (answer: Answer): SettledOutcome | undefined => outcomes.get(answer);

/** What an authentic callback that is not a read receipt binds its nonce to (conversation keys start with a provider's name). */
const NOT_A_RECEIPT = "(not a receipt)";
/** What a callback of several receipts binds its nonce to. */
const A_BATCH = "(batch)";

/**
 * A signed event time too old for the dedup window to still know its id (or too far ahead for the
 * same guarantee): 401 `expired`, like any stale signature (docs/design.md, "Deduplication").
 */
function staleEvent(eventTime: EventTime, now: number): Rejection | undefined {
  if (eventTime === null) return undefined;
  if (now - eventTime.ms > MAX_EVENT_AGE_MS) {
    const hours = MAX_EVENT_AGE_MS / 3_600_000;
    return {
      status: 401,
      code: "expired",
      message: `${eventTime.field} is more than ${Math.floor(hours)} h ${Math.round((hours % 1) * 60)} min old: past the relay's deduplication window, so it could be a replay`,
    };
  }
  if (eventTime.ms - now > MAX_FUTURE_SKEW_MS) {
    return { status: 401, code: "from_the_future", message: `${eventTime.field} is more than ${MAX_FUTURE_SKEW_MS / 60_000} minutes in the future` };
  }
  return undefined;
}

/** The 401/403 refusals of authentication, counted per client by the rate limiter. */
const isAuthFailure = (rejection: Rejection) => rejection.status === 401 || rejection.status === 403;

export function ingestor<Config, Envelope, Settings extends z.ZodObject>(provider: Provider<Config, Envelope, Settings>): Ingestor {
  const configs = new WeakMap<object, ProviderConfig<Config>>();

  /** The provider's config from its own settings, once per env object; a malformed setting turns it off. */
  function configOf(env: object): ProviderConfig<Config> {
    let config = configs.get(env);
    if (!config) {
      const group = parseGroup(provider.settings, { ...env });
      config =
        group.values === undefined || group.problems.length > 0 ? { state: "misconfigured", problems: group.problems } : provider.configure(group.values);
      configs.set(env, config);
    }
    return config;
  }

  const settle = (outcome: Outcome, details: Record<string, unknown> = {}): Answer => {
    const answer = provider.answer(outcome);
    if (outcome.ok) {
      log("info", "callback", { provider: provider.name, result: outcome.result, event: outcome.event, receiptId: outcome.receiptId, ...details });
      return settled(answer, outcome);
    }
    log("warn", "callback_refused", { provider: provider.name, status: outcome.status, code: outcome.code, reason: outcome.message, ...details });
    return settled(
      outcome.retryAfterSeconds === undefined ? answer : { ...answer, headers: { ...answer.headers, "retry-after": String(outcome.retryAfterSeconds) } },
      outcome,
    );
  };

  /** A refused authentication: answered as is, or 429 once the caller has failed too often. */
  async function refuseAuth(rejection: Rejection, deps: Pick<IngestDeps, "countAuthFailure">, details: Record<string, unknown> = {}): Promise<Answer> {
    const limit = await deps.countAuthFailure();
    if (!limit.limited) return settle({ ok: false, ...rejection }, details);
    return settle(
      {
        ok: false,
        status: 429,
        code: "too_many_failures",
        message: "too many failed authentications from this address: try again later",
        retryAfterSeconds: limit.retryAfterSeconds,
      },
      { ...details, refusedAs: rejection.code },
    );
  }

  /**
   * Claims the callback's nonce, for a provider whose signature covers a nonce but not the body
   * (`Provider.claim`): the answer when the claim refuses it (a reused signature, or the claims
   * object failing), undefined to go on.
   */
  async function claimOf(
    raw: RawCallback,
    envelope: Envelope,
    config: Config,
    conversation: string,
    deps: IngestDeps,
    details: Record<string, unknown>,
  ): Promise<Answer | undefined> {
    try {
      const claim = provider.claim?.(envelope, config);
      // The digest of the bytes as received: the provider's retry sends the same bytes.
      if (claim && (await deps.claim({ ...claim, digest: await sha256BytesHex(raw.bytes) }, conversation)) === "conflict") {
        return refuseAuth(
          { status: 401, code: "signature_reused", message: "this signed callback was already used with another body: a reused signature" },
          deps,
          details,
        );
      }
    } catch (error) {
      log("error", "claim_failed", { provider: provider.name, ...details, error: String(error) });
      return settle(unavailable);
    }
    return undefined;
  }

  /** 503 while the provider's settings are unset or wrong. */
  function notEnabled(configured: Exclude<ProviderConfig<Config>, { state: "enabled" }>): Answer {
    if (configured.state === "misconfigured") {
      return settle({ ok: false, status: 503, code: "provider_misconfigured", message: `${provider.name} is off: ${describeProblems(configured.problems)}` });
    }
    return settle({ ok: false, status: 503, code: "provider_disabled", message: `${provider.name} is not configured: set ${configured.missing}` });
  }

  async function run(raw: RawCallback, deps: IngestDeps): Promise<Answer> {
    const configured = configOf(deps.env);
    if (configured.state !== "enabled") return notEnabled(configured);
    const parsed = provider.parse(raw);
    if (!parsed.ok) return settle({ ok: false, ...parsed.rejection });
    const refused = await provider.verify(parsed.value, configured.config, deps.now);
    if (refused) return isAuthFailure(refused) ? refuseAuth(refused, deps) : settle({ ok: false, ...refused });
    const normalized = await provider.normalize(parsed.value, { receivedAt: isoFromMillis(deps.now) });
    if (!normalized.ok) return settle({ ok: false, ...normalized.rejection });
    const normal = normalized.value;
    if (normal.kind === "receipts") return storeBatch(raw, parsed.value, configured.config, normal, deps);
    const stale = normal.kind === "receipt" ? staleEvent(normal.eventTime, deps.now) : undefined;
    if (stale && normal.kind === "receipt") return refuseAuth(stale, deps, { receiptId: normal.receipt.id });
    const receipt = normal.kind === "receipt" ? withinBounds(normal.receipt) : undefined;
    const details = receipt
      ? { receiptId: receipt.id, conversation: receipt.conversation }
      : { event: normal.kind === "ignored" ? normal.event.slice(0, 64) : "" };
    // Every authentic callback claims its nonce, events that are not receipts included: otherwise
    // a captured chat callback's signature could carry a forged read receipt.
    const refusedClaim = await claimOf(raw, parsed.value, configured.config, receipt?.conversation ?? NOT_A_RECEIPT, deps, details);
    if (refusedClaim) return refusedClaim;
    if (!receipt) {
      const event = normal.kind === "ignored" ? normal.event : "";
      countIgnored(provider.name, event);
      return settle({ ok: true, result: "ignored", event: event.slice(0, 64) });
    }
    let stored: "accepted" | "duplicate";
    try {
      stored = await deps.store(receipt);
    } catch (error) {
      // Not committed: say so, so that the provider's own retry (Easemob's one) has a chance.
      log("error", "store_failed", { provider: provider.name, ...details, error: String(error) });
      return settle(unavailable);
    }
    // A receipt cut to its bounds says so in its own `truncated` and in this line.
    return settle(
      { ok: true, result: stored, event: receipt.event, receiptId: receipt.id },
      { conversation: receipt.conversation, ...(receipt.truncated ? { truncated: receipt.truncated } : {}) },
    );
  }

  /**
   * A batch (Meta): every receipt stored, in parallel (each conversation's object coalesces its
   * own), before the answer. 200 once all are stored, even as duplicates; 503 when any store fails,
   * so that the provider sends the whole batch again, whose stored receipts are then duplicates.
   * A receipt whose own signed time is past the dedup window (or too far ahead) is skipped, not the
   * batch refused: one stale item must not make Meta retry the fresh ones for days.
   */
  async function storeBatch(
    raw: RawCallback,
    envelope: Envelope,
    config: Config,
    normal: Extract<Normalized, { kind: "receipts" }>,
    deps: IngestDeps,
  ): Promise<Answer> {
    if (normal.receipts.length > MAX_RECEIPTS_PER_CALLBACK) {
      return settle({
        ok: false,
        status: 413,
        code: "too_many_receipts",
        message: `the callback makes ${normal.receipts.length} receipts: at most ${MAX_RECEIPTS_PER_CALLBACK} per callback`,
      });
    }
    const ignored = { ...normal.ignored };
    const receipts: Receipt[] = [];
    for (const { receipt, eventTime } of normal.receipts) {
      const stale = staleEvent(eventTime, deps.now);
      if (!stale) receipts.push(withinBounds(receipt));
      else {
        ignored[stale.code] = (ignored[stale.code] ?? 0) + 1;
        log("warn", "receipt_skipped", { provider: provider.name, receiptId: receipt.id, code: stale.code, reason: stale.message });
      }
    }
    if (normal.invalid.length > 0) {
      ignored.invalid_item = (ignored.invalid_item ?? 0) + normal.invalid.length;
      // One line per callback: a batch may hold up to 1,000 items.
      log("warn", "items_skipped", {
        provider: provider.name,
        code: "invalid_item",
        count: normal.invalid.length,
        reasons: normal.invalid.slice(0, MAX_LOGGED_REASONS),
      });
    }
    const conversations = new Set(receipts.map((receipt) => receipt.conversation));
    const ignoredTotal = Object.values(ignored).reduce((sum, count) => sum + count, 0);
    const details = { receipts: receipts.length, conversations: conversations.size, ignored: ignoredTotal };
    const refusedClaim = await claimOf(raw, envelope, config, A_BATCH, deps, details);
    if (refusedClaim) return refusedClaim;
    for (const [event, count] of Object.entries(ignored)) countIgnored(provider.name, event, count);
    const firstIgnored = Object.keys(ignored)[0] ?? "";
    if (receipts.length === 0) return settle({ ok: true, result: "ignored", event: firstIgnored.slice(0, 64) }, details);
    const results = await Promise.allSettled(receipts.map((receipt) => deps.store(receipt)));
    const failed = results.flatMap((result, index) => (result.status === "rejected" ? [{ index, error: String(result.reason) }] : []));
    if (failed.length > 0) {
      log("error", "store_failed", {
        provider: provider.name,
        ...details,
        failed: failed.length,
        receiptId: receipts[failed[0]!.index]!.id,
        conversation: receipts[failed[0]!.index]!.conversation,
        error: failed[0]!.error,
      });
      return settle(unavailable);
    }
    const accepted = results.filter((result) => result.status === "fulfilled" && result.value === "accepted").length;
    const truncated = receipts.filter((receipt) => receipt.truncated).length;
    return settle(
      {
        ok: true,
        result: accepted > 0 ? "accepted" : "duplicate",
        event: receipts[0]!.event,
        ...(receipts.length === 1 ? { receiptId: receipts[0]!.id } : {}),
      },
      { ...details, accepted, duplicates: receipts.length - accepted, ...(truncated > 0 ? { truncated } : {}) },
    );
  }

  const handshake = provider.handshake;
  return {
    name: provider.name,
    settingNames: Object.keys(provider.settings.shape),
    maxBodyBytes: provider.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    ...(handshake
      ? {
          async handshake(url: URL, deps: Pick<IngestDeps, "env" | "countAuthFailure">) {
            try {
              const configured = configOf(deps.env);
              if (configured.state !== "enabled") return { answer: notEnabled(configured) };
              const checked = await handshake(url.searchParams, configured.config);
              if (checked.ok) return { text: checked.value, answer: settle({ ok: true, result: "verified", event: "handshake" }) };
              const rejection = checked.rejection;
              return { answer: isAuthFailure(rejection) ? await refuseAuth(rejection, deps) : settle({ ok: false, ...rejection }) };
            } catch (error) {
              log("error", "callback_crashed", { provider: provider.name, error: String(error) });
              return { answer: settle({ ok: false, status: 500, code: "internal_error", message: "the relay failed to handle this handshake" }) };
            }
          },
        }
      : {}),
    status(env) {
      const configured = configOf(env);
      return configured.state === "enabled" ? { state: "enabled" } : configured;
    },
    async handle(raw, deps) {
      try {
        return await run(raw, deps);
      } catch (error) {
        log("error", "callback_crashed", { provider: provider.name, error: String(error) });
        return settle({ ok: false, status: 500, code: "internal_error", message: "the relay failed to handle this callback" });
      }
    },
    refuse(rejection) {
      return settle({ ok: false, ...rejection });
    },
  };
}

/** A 503 means only "try again": the receipt was not stored, and sending it again is safe. */
const unavailable: Outcome = {
  ok: false,
  status: 503,
  code: "store_unavailable",
  message: "the receipt may not have been stored; sending it again is safe (duplicates are recognised)",
  retryAfterSeconds: 1,
};

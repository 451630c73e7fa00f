/**
 * The one way through for every provider: settings → parse → verify → normalize → store → answer.
 * Pure apart from the `store` it is handed, so the whole pipeline is tested without bindings.
 */
import type { Answer, Outcome, Provider, RawCallback, Rejection } from "./providers/provider";
import type { ProviderName, Receipt } from "./receipt";
import { describeProblems, type Settings, type SettingsResult } from "./settings";
import { log } from "./log";

export interface IngestDeps {
  settings: SettingsResult;
  now: number;
  /** Commits the receipt durably; resolves "duplicate" when its id was seen before. Throws when it cannot. */
  store(receipt: Receipt): Promise<"accepted" | "duplicate">;
}

export interface Hook {
  name: ProviderName;
  /** For /healthz: enabled, or which setting would enable it. */
  status(settings: Settings): { enabled: true } | { enabled: false; missing: string };
  handle(raw: RawCallback, deps: IngestDeps): Promise<Answer>;
  /** The provider's answer for refusals made before the pipeline runs (404, 405, 413). */
  refuse(rejection: Rejection): Answer;
}

/** Events that were authentic but not read receipts, per isolate since it started (also logged). */
export const ignoredEvents = new Map<string, number>();
/** Names are the caller's: only plausible ones get a counter of their own, and only so many. */
const MAX_IGNORED_KINDS = 50;
const PLAUSIBLE_EVENT = /^[A-Za-z0-9._:-]{1,64}$/;

function countIgnored(provider: ProviderName, event: string): void {
  let key = `${provider}:${PLAUSIBLE_EVENT.test(event) ? event : "other"}`;
  if (!ignoredEvents.has(key) && ignoredEvents.size >= MAX_IGNORED_KINDS) key = `${provider}:other`;
  ignoredEvents.set(key, (ignoredEvents.get(key) ?? 0) + 1);
}

export function hook<Config, Envelope>(provider: Provider<Config, Envelope>): Hook {
  const settle = (outcome: Outcome, details: Record<string, unknown> = {}): Answer => {
    const answer = provider.answer(outcome);
    if (outcome.ok)
      log("info", "callback", { provider: provider.name, result: outcome.result, event: outcome.event, receiptId: outcome.receiptId, ...details });
    else log("warn", "callback_refused", { provider: provider.name, status: outcome.status, code: outcome.code, message: outcome.message, ...details });
    return answer;
  };

  async function run(raw: RawCallback, deps: IngestDeps): Promise<Answer> {
    if (!deps.settings.ok) {
      return settle({ ok: false, status: 500, code: "invalid_setting", message: describeProblems(deps.settings.problems) });
    }
    const configured = provider.configure(deps.settings.settings);
    if (configured.state === "disabled") {
      return settle({ ok: false, status: 503, code: "provider_disabled", message: `${provider.name} is not configured: set ${configured.missing}` });
    }
    const parsed = provider.parse(raw);
    if (!parsed.ok) return settle({ ok: false, ...parsed.rejection });
    const refused = await provider.verify(parsed.value, configured.config, deps.now);
    if (refused) return settle({ ok: false, ...refused });
    const normalized = await provider.normalize(parsed.value, { receivedAt: new Date(deps.now).toISOString() });
    if (!normalized.ok) return settle({ ok: false, ...normalized.rejection });
    if (normalized.value.kind === "ignored") {
      countIgnored(provider.name, normalized.value.event);
      return settle({ ok: true, result: "ignored", event: normalized.value.event.slice(0, 64) });
    }
    const receipt = normalized.value.receipt;
    let stored: "accepted" | "duplicate";
    try {
      stored = await deps.store(receipt);
    } catch (error) {
      // Not committed: say so, so that the provider's own retry (Easemob's one) has a chance.
      log("error", "store_failed", { provider: provider.name, receiptId: receipt.id, conversation: receipt.conversation, error: String(error) });
      return settle({
        ok: false,
        status: 503,
        code: "store_unavailable",
        message: "the receipt may not have been stored; sending it again is safe (duplicates are recognised)",
      });
    }
    return settle({ ok: true, result: stored, event: receipt.event, receiptId: receipt.id }, { conversation: receipt.conversation });
  }

  return {
    name: provider.name,
    status(settings) {
      const configured = provider.configure(settings);
      return configured.state === "enabled" ? { enabled: true } : { enabled: false, missing: configured.missing };
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

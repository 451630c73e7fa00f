/**
 * Metrics in Workers Analytics Engine (optional binding `METRICS`; queries in docs/metrics.md).
 * One data point per callback answered and one per delivery attempt. The builders are pure; the
 * writers never throw: without the binding they do nothing, and a failing write is dropped, so
 * metrics can never change an answer or a delivery.
 *
 * Columns, the same for both kinds (never a secret, a user id or a conversation key):
 *
 * | column  | callback                                         | delivery                                        |
 * | ------- | ------------------------------------------------ | ----------------------------------------------- |
 * | index1  | provider ("unknown" for an unknown callback URL) | provider (the conversation key's first part)    |
 * | blob1   | "callback"                                       | "delivery"                                      |
 * | blob2   | provider                                         | provider                                        |
 * | blob3   | event ("" when refused before it was read)       | event of the receipt ("" when not known)        |
 * | blob4   | accepted, duplicate, ignored, or the refusal code | delivered, retry, give_up, dead_letter          |
 * | blob5   | "ok" or "refused"                                | "ok" or "failed"                                |
 * | double1 | HTTP status answered to the provider             | HTTP status of the origin (0: timeout, network) |
 * | double2 | ms spent handling the callback                   | ms from the attempt's start to its result       |
 * | double3 | 0                                                | attempt number (1 for the first)                |
 *
 * Columns are positional: a new one is only ever appended (blob6, double4), never inserted.
 */
import { parseConversationKey } from "../receipt";

/** What `AnalyticsEngineDataset.writeDataPoint` takes. */
export interface DataPoint {
  blobs: string[];
  doubles: number[];
  indexes: [string];
}

/** The outcomes of a delivery attempt, as blob4 records them. */
export type DeliveryOutcome = "delivered" | "retry" | "give_up" | "dead_letter";

export interface CallbackPoint {
  /** The provider of the callback URL; "unknown" when the URL names none. */
  provider: string;
  /** The provider's event ("" when the callback was refused before its event was read). */
  event?: string;
  /** "accepted", "duplicate", "ignored", or the refusal's code (e.g. "bad_signature"). */
  outcome: string;
  /** Whether the callback was refused (an answer of 400 and above). */
  refused: boolean;
  /** The HTTP status answered. */
  status: number;
  /** Milliseconds spent handling it. */
  ms: number;
}

export interface DeliveryPoint {
  /** The receipt's conversation key: its first part, the provider, is recorded; the key itself is not. */
  conversation: string;
  /** The destination the attempt went to (blob6). */
  destination?: string;
  /** The receipt's event, when the caller has it at hand. */
  event?: string;
  /**
   * `delivered` (2xx); `retry` (a retry is scheduled); `give_up` (the origin refused it: dead
   * letter at once); `dead_letter` (retries exhausted).
   */
  outcome: DeliveryOutcome;
  /** The origin's HTTP status; absent for a timeout or a network error (recorded as 0). */
  status?: number;
  /** Milliseconds from the attempt's start to its result. */
  ms: number;
  /** The attempt's number, 1 for the first. */
  attempt: number;
}

/** Blobs hold names and codes: bounded, so that a caller-chosen event name cannot grow a point. */
const MAX_BLOB_CHARS = 64;
/** An index is at most 96 bytes; provider names are far shorter. */
const MAX_INDEX_CHARS = 32;

const blob = (value: string | undefined) => (value ?? "").slice(0, MAX_BLOB_CHARS);
/** A finite, non-negative number (a clock that moved back, or NaN, is recorded as 0). */
const amount = (value: number | undefined) => (value !== undefined && Number.isFinite(value) && value > 0 ? value : 0);

/** The provider a conversation key belongs to (its first part). */
export const providerOf = (conversation: string): string => parseConversationKey(conversation).provider;

export function callbackDataPoint(point: CallbackPoint): DataPoint {
  const provider = blob(point.provider);
  return {
    indexes: [provider.slice(0, MAX_INDEX_CHARS)],
    blobs: ["callback", provider, blob(point.event), blob(point.outcome), point.refused ? "refused" : "ok"],
    doubles: [amount(point.status), amount(point.ms), 0],
  };
}

export function deliveryDataPoint(point: DeliveryPoint): DataPoint {
  const provider = blob(providerOf(point.conversation));
  return {
    indexes: [provider.slice(0, MAX_INDEX_CHARS)],
    blobs: ["delivery", provider, blob(point.event), point.outcome, point.outcome === "delivered" ? "ok" : "failed", blob(point.destination)],
    doubles: [amount(point.status), amount(point.ms), amount(point.attempt)],
  };
}

function write(dataset: AnalyticsEngineDataset | undefined, build: () => DataPoint): void {
  if (!dataset) return;
  try {
    dataset.writeDataPoint(build());
  } catch {
    // Metrics are best effort: a failing dataset (or the per-invocation limit) loses the point only.
  }
}

/** Records one answered callback. Never throws; does nothing without the binding. */
export function recordCallback(dataset: AnalyticsEngineDataset | undefined, point: CallbackPoint): void {
  write(dataset, () => callbackDataPoint(point));
}

/**
 * Records one delivery attempt, after its result is known: `env.METRICS`, and the attempt's
 * conversation key, outcome, origin status (undefined for a timeout or network error), ms and
 * attempt number. Never throws; does nothing without the binding. Analytics Engine takes a
 * limited number of points per invocation (25 at the time of writing): past it, points are dropped.
 */
export function recordDelivery(dataset: AnalyticsEngineDataset | undefined, point: DeliveryPoint): void {
  write(dataset, () => deliveryDataPoint(point));
}

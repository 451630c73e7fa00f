/**
 * One delivery attempt and the rules that judge it. `classify` and `nextAttemptDelay` are pure.
 * 2xx delivered; 408, 429, 5xx, timeouts and network errors retried; other statuses given up.
 */
import { webhookHeaders } from "./webhook";

export type AttemptResult =
  | { kind: "delivered"; status: number }
  | { kind: "retry"; status?: number; error: string; retryAfterMs?: number }
  | { kind: "give_up"; status: number; error: string };

/** The longest Retry-After honoured: an origin cannot park a conversation for longer. */
export const MAX_RETRY_AFTER_MS = 24 * 3600 * 1000;

/** Retry-After: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Math.min(Number(trimmed) * 1000, MAX_RETRY_AFTER_MS);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.min(Math.max(0, date - now), MAX_RETRY_AFTER_MS);
}

export function classify(status: number, retryAfter: string | null, detail: string, now: number): AttemptResult {
  if (status >= 200 && status < 300) return { kind: "delivered", status };
  const error = `destination answered ${status}${detail ? `: ${detail}` : ""}`;
  if (status === 408 || status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(retryAfter, now);
    return retryAfterMs === undefined ? { kind: "retry", status, error } : { kind: "retry", status, error, retryAfterMs };
  }
  return { kind: "give_up", status, error };
}

/** Each wait is the schedule's step ± this fraction, so that conversations held up by one outage
 * do not all retry in the same second when it ends. */
export const RETRY_JITTER = 0.2;

/**
 * Milliseconds to wait after failed attempt number `attempts` (1-based), or undefined when the
 * schedule is used up and the delivery becomes a dead letter. `random` (0 to 1) picks the jitter;
 * 0.5 is none. Retry-After lengthens, never shortens.
 */
export function nextAttemptDelay(schedule: readonly number[], attempts: number, retryAfterMs?: number, random = 0.5): number | undefined {
  const step = schedule[attempts - 1];
  if (step === undefined) return undefined;
  const jittered = Math.round(step * 1000 * (1 + RETRY_JITTER * (2 * random - 1)));
  return Math.max(jittered, retryAfterMs ?? 0);
}

export interface AttemptRequest {
  url: string;
  /** One signature per key goes out (FORWARD_SECRET rotation). */
  keys: readonly Uint8Array[];
  id: string;
  body: string;
  timeoutMs: number;
}

/** What an error body may add to a stored last error. */
const MAX_DETAIL_CHARS = 300;

export async function attemptDelivery(request: AttemptRequest, now: number, fetcher: typeof fetch = fetch): Promise<AttemptResult> {
  let response: Response;
  try {
    response = await fetcher(request.url, {
      method: "POST",
      headers: await webhookHeaders(request.keys, request.id, now, request.body),
      body: request.body,
      // Never follow: a 301/302 would resend as an empty GET and look delivered, a 307 would send
      // the signed receipt wherever Location points. A redirect is the operator's to fix.
      redirect: "manual",
      signal: AbortSignal.timeout(request.timeoutMs),
    });
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
    return { kind: "retry", error: timedOut ? `no answer within ${request.timeoutMs} ms` : `network error: ${errorMessage(error)}` };
  }
  let detail = "";
  const location = response.headers.get("location");
  if (response.ok) await response.body?.cancel();
  else if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel();
    detail = `redirects${location ? ` to ${location.slice(0, 200)}` : ""}: set ORIGIN_URL to the final URL`;
  } else detail = (await readPrefix(response, MAX_DETAIL_CHARS * 4)).slice(0, MAX_DETAIL_CHARS).replace(/\s+/g, " ").trim();
  return classify(response.status, response.headers.get("retry-after"), detail, now);
}

/** The first `maxBytes` of a body as text; the rest is never read (an error page may be large). */
async function readPrefix(response: Response, maxBytes: number): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < maxBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } catch {
    // A body cut off mid-way still says what it said so far.
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return new TextDecoder().decode(bytes.subarray(0, maxBytes));
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

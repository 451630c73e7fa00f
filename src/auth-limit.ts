/**
 * Failed authentications are limited per client address with Cloudflare's Rate Limiting binding
 * (docs/operations.md, "Failed authentication"): past the limit, a failure is answered 429 with
 * Retry-After. Only failures are counted; a valid callback or API call never is.
 */
export const AUTH_FAILURE_PERIOD_SECONDS = 60;

export type AuthLimit = { limited: false } | { limited: true; retryAfterSeconds: number };

/** Counts one failure for `address`. An absent or failing limiter limits nothing. */
export async function countAuthFailure(limiter: RateLimit | undefined, address: string): Promise<AuthLimit> {
  if (!limiter) return { limited: false };
  try {
    const { success } = await limiter.limit({ key: `auth:${address}` });
    return success ? { limited: false } : { limited: true, retryAfterSeconds: AUTH_FAILURE_PERIOD_SECONDS };
  } catch {
    return { limited: false };
  }
}

/** The client's address as Cloudflare saw it (`CF-Connecting-IP`); one bucket for requests without it. */
export const clientAddress = (headers: Headers): string => headers.get("cf-connecting-ip") ?? "unknown";

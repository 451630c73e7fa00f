// @ts-check
// Waiting for conditions with deadlines, for the scripts that run the relay (soak, drills, bench,
// browser tests): poll until something holds or say what was awaited, never a bare open-ended loop.

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sleeps until the epoch-ms time `at` (at once when it has passed). @param {number} at */
export const sleepUntil = (at) => sleep(Math.max(0, at - Date.now()));

/** Thrown by `waitFor` when its deadline passes; `last` is the last value the check returned. */
export class WaitTimeout extends Error {
  /** @param {string} message @param {unknown} last */
  constructor(message, last) {
    super(message);
    this.name = "WaitTimeout";
    this.last = last;
  }
}

/**
 * Polls `check` until `ready(value)` holds for what it returns (by default: anything but
 * undefined and false), and returns that value. Past the deadline it throws a WaitTimeout naming
 * `what` (or `describe(last)`) and the last error seen.
 * @template T
 * @param {string} what what is awaited, for the failure message
 * @param {() => Promise<T> | T} check
 * @param {{ timeoutMs?: number, until?: number, intervalMs?: number, ready?: (value: T) => boolean,
 *   describe?: (last: T | undefined) => string, retryOnError?: boolean }} [options]
 *   `until`: an absolute deadline (epoch ms) instead of `timeoutMs`; `retryOnError` (default true):
 *   an error thrown by `check` is remembered and polled again; false: it ends the wait at once.
 * @returns {Promise<T>}
 */
export async function waitFor(what, check, { timeoutMs = 15_000, until, intervalMs = 200, ready = isSomething, describe, retryOnError = true } = {}) {
  const startedAt = Date.now();
  const deadline = until ?? startedAt + timeoutMs;
  /** @type {T | undefined} */
  let last;
  /** @type {unknown} */
  let lastError;
  for (;;) {
    try {
      last = await check();
      lastError = undefined;
      if (ready(last)) return last;
    } catch (error) {
      if (!retryOnError) throw error;
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const seconds = Math.round((Date.now() - startedAt) / 1000);
      const why = lastError ? ` (last error: ${lastError instanceof Error ? lastError.message : lastError})` : "";
      const message = describe ? `${describe(last)} after waiting ${seconds} s` : `timed out after ${seconds} s waiting for ${what}`;
      throw new WaitTimeout(`${message}${why}`, last);
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

/**
 * `waitFor` for waits whose running out is an answer, not a failure (the soak's tally, the bench's
 * backlog): the value once ready, or undefined past the deadline. Other errors are thrown.
 * @template T
 * @param {string} what
 * @param {() => Promise<T> | T} check
 * @param {Parameters<typeof waitFor<T>>[2]} [options]
 * @returns {Promise<T | undefined>}
 */
export async function readyWithin(what, check, options) {
  try {
    return await waitFor(what, check, options);
  } catch (error) {
    if (error instanceof WaitTimeout) return undefined;
    throw error;
  }
}

/** @param {unknown} value */
const isSomething = (value) => value !== undefined && value !== false;

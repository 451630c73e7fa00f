/** Talks to the local test origin's control server from inside workerd. */
import { inject } from "vitest";
import { z } from "zod";
import { Attempt, type Step } from "./origin-types";
import "./provided-context";

const control = (path: string) => `http://127.0.0.1:${inject("controlPort")}${path}`;

/**
 * The next answers the origin gives for this conversation (at `path` only, when given: one
 * destination of several, each its own path on the origin); after them it answers 200.
 */
export async function script(conversation: string, steps: Step[], path?: string): Promise<void> {
  const query = `conversation=${encodeURIComponent(conversation)}${path ? `&path=${encodeURIComponent(path)}` : ""}`;
  const response = await fetch(control(`/script?${query}`), { method: "POST", body: JSON.stringify(steps) });
  if (!response.ok) throw new Error(`script failed: ${response.status}`);
}

/** Lets the origin answer the attempts of this conversation it holds (a `hold` step). */
export async function release(conversation: string): Promise<void> {
  const response = await fetch(control(`/release?conversation=${encodeURIComponent(conversation)}`), { method: "POST" });
  if (!response.ok) throw new Error(`release failed: ${response.status}`);
}

/** Every delivery of this conversation that reached the origin, in arrival order. */
export async function attempts(conversation: string): Promise<Attempt[]> {
  const response = await fetch(control(`/attempts?conversation=${encodeURIComponent(conversation)}`));
  return z.array(Attempt).parse(await response.json());
}

/** Ids the destination answered 2xx for, in arrival order. */
export async function delivered(conversation: string): Promise<string[]> {
  return (await attempts(conversation)).filter((attempt) => attempt.status >= 200 && attempt.status < 300).map((attempt) => attempt.id);
}

/** Receipt ids the destination answered 2xx for, in arrival order, batches unpacked. */
export async function deliveredReceipts(conversation: string): Promise<string[]> {
  return (await attempts(conversation)).filter((attempt) => attempt.status >= 200 && attempt.status < 300).flatMap((attempt) => attempt.receiptIds);
}

/** Polls until `check` returns a value that is not undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

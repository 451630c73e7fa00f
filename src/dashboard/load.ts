/**
 * Reads for the pages that may fail (D1, a Durable Object) without failing the page: each becomes
 * a value or an error message that the page shows in an error panel. Logged as `dashboard_failed`
 * (docs/operations.md, "Logs").
 */
import { log } from "../log";
import { indexProblemOf, reportIndexProblem } from "../ops/conversation-index";

export type Loaded<T> = { ok: true; value: T } | { ok: false; error: string };

const MAX_MESSAGE = 300;

export async function load<T>(what: string, read: () => Promise<T>): Promise<Loaded<T>> {
  try {
    return { ok: true, value: await read() };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // The index's tables missing (migrations not applied): say the fix, and log it once, not per page.
    const problem = indexProblemOf(error);
    if (problem.kind === "unmigrated") {
      reportIndexProblem("dashboard", problem);
      return { ok: false, error: `${what} failed: ${problem.message}` };
    }
    log("error", "dashboard_failed", { what, error: message });
    return { ok: false, error: `${what} failed: ${message.slice(0, MAX_MESSAGE)}` };
  }
}

/** A replay's page: polls the panel's `data-poll-url` every second until the job is done. */
import * as z from "zod/mini";
import { byTestId } from "./dom";

/** The fields of the job's JSON (GET /dashboard/replays/<id>.json) the panel shows; an answer without them is not shown. */
const ReplayJob = z.object({
  status: z.string(),
  conversations: z.object({ done: z.number(), total: z.number() }),
  requeued: z.number(),
  skipped: z.number(),
});
type ReplayJob = z.infer<typeof ReplayJob>;

export function replayProgress(panel: HTMLElement): void {
  const url = panel.getAttribute("data-poll-url");
  const bar = byTestId(panel, "replay-progress");
  const state = byTestId(panel, "replay-state");
  if (url === null || !bar || !state) return;
  const done = byTestId(panel, "replay-done");
  const total = byTestId(panel, "replay-total");
  const requeued = byTestId(panel, "replay-requeued");
  const skipped = byTestId(panel, "replay-skipped");

  const apply = (job: ReplayJob) => {
    // As attributes: the max property ignores 0 (a job with nothing to replay).
    bar.setAttribute("max", String(job.conversations.total));
    bar.setAttribute("value", String(job.conversations.done));
    state.textContent = job.status;
    state.className = `state-${job.status}`;
    if (done) done.textContent = String(job.conversations.done);
    if (total) total.textContent = String(job.conversations.total);
    if (requeued) requeued.textContent = String(job.requeued);
    if (skipped) skipped.textContent = String(job.skipped);
  };

  const tick = () => {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { accept: "application/json" } })
      .then((response) => {
        if (!response.ok) throw new Error(`status ${response.status}`);
        return response.json();
      })
      .then((json: unknown) => ReplayJob.parse(json))
      .then((job) => {
        apply(job);
        if (job.status !== "done") setTimeout(tick, 1000);
      })
      .catch(() => setTimeout(tick, 5000));
  };

  if (state.textContent !== "done") setTimeout(tick, 1000);
}

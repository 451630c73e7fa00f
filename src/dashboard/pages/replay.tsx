/** GET /dashboard/replays/<id>: a replay job's progress; the script polls <id>.json until it is done. */
import type { ReplayStatus } from "../../ops/replay-job";
import { Facts, Page, Time } from "../layout";

/** What the job replays, in words: dead letters by provider, prefix and destination, or delivered receipts (of one conversation, to one destination). */
function describeFilter(filter: ReplayStatus["filter"]): string {
  const to = filter.destination ? ` to ${filter.destination}` : "";
  if ("delivered" in filter) {
    const { conversation, since, until } = filter.delivered;
    return [`receipts delivered${to} of ${conversation ?? "every conversation"}`, since ? `since ${since}` : "", until ? `until ${until}` : ""]
      .filter(Boolean)
      .join(" ");
  }
  const parts = [filter.provider ? `provider ${filter.provider}` : "", filter.prefix ? `key prefix ${filter.prefix}` : ""].filter(Boolean);
  const of = filter.destination ? `dead letters of destination ${filter.destination}` : "dead letters";
  return parts.length > 0
    ? `${of} in conversations of ${parts.join(", ")}`
    : filter.destination
      ? `${of}, every conversation`
      : "every conversation with dead letters";
}

export function ReplayPage({ job }: { job: ReplayStatus }) {
  return (
    <Page title="Replay" section="dead-letters" signedIn={true}>
      <h1>Replay</h1>
      <section class="panel" data-testid="replay" data-poll-url={`/dashboard/replays/${job.id}.json`}>
        <p>
          <span data-testid="replay-state" class={`state-${job.status}`}>
            {job.status}
          </span>
          {": "}
          <span data-testid="replay-done">{job.conversations.done}</span>
          {" of "}
          <span data-testid="replay-total">{job.conversations.total}</span>
          {" conversation(s)"}
        </p>
        <progress data-testid="replay-progress" value={job.conversations.done} max={job.conversations.total}>
          {`${job.conversations.done} of ${job.conversations.total}`}
        </progress>
        <Facts
          items={[
            ["receipts re-queued", <span data-testid="replay-requeued">{job.requeued}</span>],
            ["conversations skipped", <span data-testid="replay-skipped">{job.skipped}</span>],
            ["replays", describeFilter(job.filter)],
            ["started", <Time iso={job.createdAt} />],
            ["finished", <Time iso={job.finishedAt} />],
            ["last error", job.lastError ?? "-"],
            ["job id", <code>{job.id}</code>],
          ]}
        />
      </section>
      <p>
        <a href="/dashboard/dead-letters">Back to the dead letters</a>
      </p>
    </Page>
  );
}

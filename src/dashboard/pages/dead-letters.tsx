/**
 * GET /dashboard/dead-letters: every conversation holding dead letters, relay-wide (the index's rows
 * with failed > 0), or of one destination (`?destination=`: the rows whose part for it has
 * failed > 0), each with its own replay button, and "replay all" as a durable job.
 */
import type { ConversationsPage } from "../../queries/conversations";
import { ConversationLink, conversationPath, ErrorPanel, IndexOff, Page, Time, DataTable, ProviderSelect } from "../layout";
import type { Loaded } from "../load";
import { queryString as conversationsQuery, type ConversationFilters } from "./conversations";

/** A page of failing rows; of one destination, each row with its part for it. */
export type DeadLettersData = Omit<ConversationsPage, "conversations"> & {
  destination?: string;
  conversations: (ConversationsPage["conversations"][number] & {
    destination?: { name: string; failed: number; oldestFailedAt: string | null; lastError: string | null };
  })[];
};
export type DeadLettersResult = { kind: "index-off" } | { kind: "invalid"; message: string } | { kind: "loaded"; page: Loaded<DeadLettersData> };
export type DeadLetterFilters = Omit<ConversationFilters, "status"> & { destination?: string | undefined };

function queryString(filters: DeadLetterFilters, cursor?: string): string {
  const base = conversationsQuery(filters, cursor);
  if (!filters.destination) return base;
  return `${base ? `${base}&` : "?"}destination=${encodeURIComponent(filters.destination)}`;
}

function ReplayAll({ filters }: { filters: DeadLetterFilters }) {
  return (
    <form class="filters" method="post" action="/dashboard/replays" data-testid="replay-all">
      {filters.destination ? <input type="hidden" name="destination" value={filters.destination} data-testid="replay-destination" /> : null}
      <ProviderSelect selected={filters.provider} testid="replay-provider" anyLabel="all providers" />
      <label>
        key prefix
        <input name="prefix" type="text" value={filters.prefix ?? ""} data-testid="replay-prefix" />
      </label>
      <button type="submit" class="danger" data-testid="replay-all-button">
        {filters.destination ? `Replay all matching dead letters of ${filters.destination}` : "Replay all matching dead letters"}
      </button>
    </form>
  );
}

function Rows({ page, filters }: { page: DeadLettersData; filters: DeadLetterFilters }) {
  return (
    <>
      <DataTable
        testid="dead-letters"
        columns={["conversation", "provider", { label: "failed", num: true }, "oldest failure", "last error", ""]}
        items={page.conversations}
        empty={{ testid: "no-dead-letters", text: "No dead letters." }}
        row={(row) => {
          // Of one destination: its part of the row.
          const part = row.destination ?? row;
          return (
            <tr data-testid="dead-letter-row" data-conversation={row.conversation}>
              <td>
                <ConversationLink conversation={row.conversation} />
              </td>
              <td>{row.provider}</td>
              <td class="num" data-testid="failed-count">
                {part.failed}
              </td>
              <td>
                <Time iso={part.oldestFailedAt} />
              </td>
              <td>{part.lastError ?? "-"}</td>
              <td>
                <form method="post" action={`${conversationPath(row.conversation)}/replay`} class="inline" data-testid="replay-row">
                  <input type="hidden" name="back" value="dead-letters" />
                  {filters.destination ? <input type="hidden" name="destination" value={filters.destination} /> : null}
                  <button type="submit">Replay</button>
                </form>
              </td>
            </tr>
          );
        }}
      />
      {page.cursor !== undefined ? (
        <p>
          <a href={`/dashboard/dead-letters${queryString(filters, page.cursor)}`} data-testid="next-page" rel="next">
            Next page
          </a>
        </p>
      ) : null}
    </>
  );
}

export function DeadLettersPage({ filters, result, requeued }: { filters: DeadLetterFilters; result: DeadLettersResult; requeued?: number | undefined }) {
  return (
    <Page title="Dead letters" section="dead-letters" signedIn={true}>
      <h1>{filters.destination ? `Dead letters of ${filters.destination}` : "Dead letters"}</h1>
      {filters.destination ? (
        <p class="muted" data-testid="destination-filter">
          {`Only the dead letters of destination ${filters.destination}. `}
          <a href="/dashboard/dead-letters">Every destination's</a>
        </p>
      ) : null}
      {requeued !== undefined ? (
        <p class="flash" data-testid="flash">
          {`${requeued} dead letter(s) re-queued.`}
        </p>
      ) : null}
      {result.kind === "index-off" ? (
        <IndexOff />
      ) : (
        <>
          <section class="panel">
            <h2>Replay</h2>
            <p class="muted">
              Re-queues every dead letter of the matching conversations, in their original order, each keeping its webhook-id. It runs as a job: you will see
              its progress.
            </p>
            <ReplayAll filters={filters} />
          </section>
          {result.kind === "invalid" ? (
            <ErrorPanel title="Invalid filter." message={result.message} />
          ) : !result.page.ok ? (
            <ErrorPanel title="Could not read the index." message={result.page.error} />
          ) : (
            <Rows page={result.page.value} filters={filters} />
          )}
          <p class="muted">From the conversation index, which lags each conversation by up to one snapshot interval.</p>
        </>
      )}
    </Page>
  );
}

/**
 * GET /dashboard/dead-letters: every conversation holding dead letters, relay-wide (the index's rows
 * with failed > 0), each with its own replay button, and "replay all" as a durable job.
 */
import type { ConversationsPage } from "../data";
import { providerNames } from "../../receipt";
import { ConversationLink, conversationPath, ErrorPanel, IndexOff, Page, Time } from "../layout";
import type { Loaded } from "../load";
import { queryString, type ConversationFilters } from "./conversations";

export type DeadLettersResult = { kind: "index-off" } | { kind: "invalid"; message: string } | { kind: "loaded"; page: Loaded<ConversationsPage> };

function ReplayAll({ filters }: { filters: ConversationFilters }) {
  return (
    <form class="filters" method="post" action="/dashboard/replays" data-testid="replay-all">
      <label>
        provider
        <select name="provider" data-testid="replay-provider">
          <option value="">all providers</option>
          {providerNames.map((name) => (
            <option value={name} selected={filters.provider === name}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <label>
        key prefix
        <input name="prefix" type="text" value={filters.prefix ?? ""} data-testid="replay-prefix" />
      </label>
      <button type="submit" class="danger" data-testid="replay-all-button">
        Replay all matching dead letters
      </button>
    </form>
  );
}

function Rows({ page, filters }: { page: ConversationsPage; filters: ConversationFilters }) {
  return (
    <>
      <div class="scroll">
        <table data-testid="dead-letters">
          <thead>
            <tr>
              <th>conversation</th>
              <th>provider</th>
              <th class="num">failed</th>
              <th>oldest failure</th>
              <th>last error</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {page.conversations.length === 0 ? (
              <tr>
                <td colspan={6} class="muted" data-testid="no-dead-letters">
                  No dead letters.
                </td>
              </tr>
            ) : (
              page.conversations.map((row) => (
                <tr data-testid="dead-letter-row" data-conversation={row.conversation}>
                  <td>
                    <ConversationLink conversation={row.conversation} />
                  </td>
                  <td>{row.provider}</td>
                  <td class="num" data-testid="failed-count">
                    {row.failed}
                  </td>
                  <td>
                    <Time iso={row.oldestFailedAt} />
                  </td>
                  <td>{row.lastError ?? "-"}</td>
                  <td>
                    <form method="post" action={`${conversationPath(row.conversation)}/replay`} class="inline" data-testid="replay-row">
                      <input type="hidden" name="back" value="dead-letters" />
                      <button type="submit">Replay</button>
                    </form>
                  </td>
                </tr>
              ))
            )}
          </tbody>
        </table>
      </div>
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

export function DeadLettersPage({ filters, result, requeued }: { filters: ConversationFilters; result: DeadLettersResult; requeued?: number | undefined }) {
  return (
    <Page title="Dead letters" section="dead-letters" signedIn={true}>
      <h1>Dead letters</h1>
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

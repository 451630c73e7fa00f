/** GET /dashboard/conversations: the D1 index, filtered by provider, status and key prefix, a page at a time. */
import type { ConversationsPage } from "../data";
import { providerNames } from "../../receipt";
import { MAX_LIVE_CONVERSATIONS } from "../inputs";
import { ConversationLink, duration, ErrorPanel, IndexOff, Page, Time, WatchLink } from "../layout";
import type { Loaded } from "../load";

/** The filters as typed (validated, but before the cursor is decoded), to fill the form and build links. */
export interface ConversationFilters {
  provider?: string | undefined;
  status?: string | undefined;
  prefix?: string | undefined;
}

export type ConversationsResult = { kind: "index-off" } | { kind: "invalid"; message: string } | { kind: "loaded"; page: Loaded<ConversationsPage> };

const STATUSES = [
  { value: "", label: "any" },
  { value: "failing", label: "failing (dead letters)" },
  { value: "pending", label: "pending (no dead letters)" },
  { value: "ok", label: "ok" },
];

export function queryString(filters: ConversationFilters, cursor?: string): string {
  const query = new URLSearchParams();
  if (filters.provider) query.set("provider", filters.provider);
  if (filters.status) query.set("status", filters.status);
  if (filters.prefix) query.set("prefix", filters.prefix);
  if (cursor) query.set("cursor", cursor);
  const text = query.toString();
  return text ? `?${text}` : "";
}

function Filters({ filters }: { filters: ConversationFilters }) {
  return (
    <form class="filters" method="get" action="/dashboard/conversations" data-testid="conversation-filters">
      <label>
        provider
        <select name="provider" data-testid="filter-provider">
          <option value="">any</option>
          {providerNames.map((name) => (
            <option value={name} selected={filters.provider === name}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <label>
        status
        <select name="status" data-testid="filter-status">
          {STATUSES.map((status) => (
            <option value={status.value} selected={(filters.status ?? "") === status.value}>
              {status.label}
            </option>
          ))}
        </select>
      </label>
      <label>
        key prefix
        <input name="prefix" type="text" value={filters.prefix ?? ""} placeholder="tencent:1400000000:" data-testid="filter-prefix" />
      </label>
      <button type="submit" data-testid="filter-apply">
        Filter
      </button>
    </form>
  );
}

function Table({ page, filters }: { page: ConversationsPage; filters: ConversationFilters }) {
  const keys = page.conversations.map((row) => row.conversation);
  return (
    <>
      {keys.length > 0 ? (
        <p class="watch">
          <WatchLink keys={keys}>Watch these live</WatchLink>
          {keys.length > MAX_LIVE_CONVERSATIONS
            ? `: the first ${MAX_LIVE_CONVERSATIONS} conversations of this page, in one live feed.`
            : ": the conversations of this page, in one live feed."}
        </p>
      ) : null}
      <div class="scroll">
        <table data-testid="conversations">
          <thead>
            <tr>
              <th>conversation</th>
              <th>provider</th>
              <th>chat</th>
              <th class="num">accepted</th>
              <th>last receipt</th>
              <th class="num">pending</th>
              <th class="num">failed</th>
              <th>last delivered</th>
              <th class="num">latency</th>
            </tr>
          </thead>
          <tbody>
            {page.conversations.length === 0 ? (
              <tr>
                <td colspan={9} class="muted" data-testid="no-conversations">
                  No conversation matches.
                </td>
              </tr>
            ) : (
              page.conversations.map((row) => (
                <tr data-testid="conversation-row" data-conversation={row.conversation}>
                  <td>
                    <ConversationLink conversation={row.conversation} />
                  </td>
                  <td>{row.provider}</td>
                  <td>{row.chat}</td>
                  <td class="num">{row.accepted}</td>
                  <td>
                    <Time iso={row.lastReceiptAt} />
                  </td>
                  <td class="num">{row.pending}</td>
                  <td class={row.failed > 0 ? "num status-failed" : "num"}>{row.failed}</td>
                  <td>
                    <Time iso={row.lastDeliveredAt} />
                  </td>
                  <td class="num">{duration(row.lastLatencyMs)}</td>
                </tr>
              ))
            )}
          </tbody>
        </table>
      </div>
      {page.cursor !== undefined ? (
        <p>
          <a href={`/dashboard/conversations${queryString(filters, page.cursor)}`} data-testid="next-page" rel="next">
            Next page
          </a>
        </p>
      ) : null}
    </>
  );
}

export function ConversationsPageView({ filters, result }: { filters: ConversationFilters; result: ConversationsResult }) {
  return (
    <Page title="Conversations" section="conversations" signedIn={true}>
      <h1>Conversations</h1>
      <Filters filters={filters} />
      {result.kind === "index-off" ? (
        <IndexOff />
      ) : result.kind === "invalid" ? (
        <ErrorPanel title="Invalid filter." message={result.message} />
      ) : !result.page.ok ? (
        <ErrorPanel title="Could not read the index." message={result.page.error} />
      ) : (
        <Table page={result.page.value} filters={filters} />
      )}
      <p class="muted">The index lags each conversation by up to one snapshot interval; a conversation's own page reads its object, which is the truth.</p>
    </Page>
  );
}

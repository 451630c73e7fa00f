/** GET /dashboard/conversations: the D1 index, filtered by provider, status and key prefix, a page at a time. */
import type { ConversationsPage } from "../../queries/conversations";
import { MAX_LIVE_CONVERSATIONS } from "../inputs";
import { ConversationLink, ErrorPanel, IndexOff, Page, Time, WatchLink, DataTable, ProviderSelect } from "../layout";
import { durationText } from "../format";
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
      <ProviderSelect selected={filters.provider} testid="filter-provider" anyLabel="any" />
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
      <DataTable
        testid="conversations"
        columns={[
          "conversation",
          "provider",
          "chat",
          { label: "accepted", num: true },
          "last receipt",
          { label: "pending", num: true },
          { label: "failed", num: true },
          "last delivered",
          { label: "latency", num: true },
        ]}
        items={page.conversations}
        empty={{ testid: "no-conversations", text: "No conversation matches." }}
        row={(row) => (
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
            <td class="num">{durationText(row.lastLatencyMs)}</td>
          </tr>
        )}
      />
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

/** GET /dashboard: providers, activity, backlog, failing conversations and the alert state. */
import type { JSX } from "hono/jsx/jsx-runtime";
import type { Health } from "../../health";
import type { AlertKind, AlertState } from "../../ops/alerts";
import { isoFromMillis } from "../../time";
import { ActivityFigure, type DashboardStats } from "../chart";
import { ErrorPanel, Facts, IndexOff, Page, Time, WatchLink } from "../layout";
import { durationText } from "../format";
import type { Loaded } from "../load";

export interface OverviewData {
  health: Health;
  /** Absent when the index (DB) is not bound or cannot be used (`health.index` says which). */
  index?: {
    hour: Loaded<DashboardStats>;
    day: Loaded<DashboardStats>;
    alertState: Loaded<AlertState | undefined>;
    /** The keys of the most recently active conversations, newest first (at most 20). */
    recent: Loaded<string[]>;
  };
}

const isoOrNull = (ms: number | null) => (ms === null ? null : isoFromMillis(ms));

/**
 * At the top of the page: the bound index cannot be used (migrations not applied, or D1 failing).
 * Receipts are still accepted, delivered and published to KV; what reads the index waits for it.
 */
function IndexProblem({ index }: { index: Health["index"] }) {
  if (index.state !== "unavailable") return null;
  return (
    <section class="error-panel" role="alert" data-testid="index-problem" data-kind={index.kind}>
      <h2>{index.kind === "unmigrated" ? "The conversation index has no tables" : "The conversation index is failing"}</h2>
      <p>{index.reason}</p>
      {index.kind === "unmigrated" ? (
        <pre>
          <code>npx wrangler d1 migrations apply DB --local # wrangler dev{"\n"}npm run deploy # the deployed Worker: applies pending migrations</code>
        </pre>
      ) : null}
      <p class="muted">
        Receipts are still accepted, delivered and published to KV. The stats, the conversation list, dead letters, replays and alerts need the index
        (docs/operations.md, "The index is missing or failing").
      </p>
    </section>
  );
}

/** Where a panel would show the index's figures: why it cannot (unbound, or the problem above). */
function NoIndex({ index }: { index: Health["index"] }) {
  if (index.state === "unavailable") return <p class="muted">The index cannot be read: see above.</p>;
  return <IndexOff />;
}

function Providers({ health, day, hour }: { health: Health; day?: DashboardStats | undefined; hour?: DashboardStats | undefined }) {
  const byProviderDay = day?.callbacks?.byProvider;
  const byProviderHour = hour?.callbacks?.byProvider;
  return (
    <section class="panel" data-testid="providers">
      <h2>Providers</h2>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th>provider</th>
              <th>state</th>
              <th class="num">accepted 1 h</th>
              <th class="num">duplicates 1 h</th>
              <th class="num">accepted 24 h</th>
              <th class="num">duplicates 24 h</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(health.providers).map(([name, status]) => (
              <tr data-testid="provider" data-provider={name} data-state={status.state}>
                <td>{name}</td>
                <td>
                  <span class={`state-${status.state}`} data-testid="provider-state">
                    {status.state}
                  </span>
                  {status.state === "disabled" ? <div class="muted">{`set ${status.missing} to enable it`}</div> : null}
                  {status.state === "misconfigured" ? (
                    <div class="muted">{status.problems.map((problem) => `${problem.setting} ${problem.problem}`).join("; ")}</div>
                  ) : null}
                </td>
                <td class="num">{byProviderHour ? (byProviderHour[name]?.accepted ?? 0) : "-"}</td>
                <td class="num">{byProviderHour ? (byProviderHour[name]?.duplicates ?? 0) : "-"}</td>
                <td class="num">{byProviderDay ? (byProviderDay[name]?.accepted ?? 0) : "-"}</td>
                <td class="num">{byProviderDay ? (byProviderDay[name]?.duplicates ?? 0) : "-"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p class="muted">
        {"Forwarding: "}
        <span class={`state-${health.forwarding.state}`} data-testid="forwarding">
          {health.forwarding.state}
        </span>
        {health.forwarding.state === "held" ? ` (${health.forwarding.reason})` : null}
      </p>
    </section>
  );
}

function Backlog({ stats, index }: { stats: Loaded<DashboardStats> | undefined; index: Health["index"] }) {
  return (
    <section class="panel" data-testid="backlog">
      <h2>Backlog</h2>
      {!stats ? (
        <NoIndex index={index} />
      ) : !stats.ok ? (
        <ErrorPanel title="Could not read the index." message={stats.error} />
      ) : (
        <>
          <div class="figure" data-testid="backlog-count">
            {stats.value.backlog}
          </div>
          <p class="muted">
            {`pending deliveries in ${stats.value.conversations.withPending} conversation(s)`}
            {stats.value.oldestPendingBefore ? (
              <>
                {"; the oldest accepted at or before "}
                <Time iso={stats.value.oldestPendingBefore} />
              </>
            ) : null}
            {stats.value.unrouted > 0 ? <span data-testid="unrouted">{`; ${stats.value.unrouted} receipt(s) kept matched no destination`}</span> : null}
            {". "}
            <a href="/dashboard/destinations">Destinations</a>
          </p>
        </>
      )}
    </section>
  );
}

function Failing({ stats, index }: { stats: Loaded<DashboardStats> | undefined; index: Health["index"] }) {
  return (
    <section class="panel">
      <h2>Failing conversations</h2>
      {!stats ? (
        <div data-testid="failing-count">
          <NoIndex index={index} />
        </div>
      ) : !stats.ok ? (
        <div data-testid="failing-count">
          <ErrorPanel title="Could not read the index." message={stats.error} />
        </div>
      ) : (
        <>
          <div class="figure" data-testid="failing-count">
            {stats.value.conversations.withDeadLetters}
          </div>
          <p class="muted">
            {`${stats.value.deadLetters} dead letter(s)`}
            {stats.value.oldestFailureAt ? (
              <>
                {"; the oldest failed "}
                <Time iso={stats.value.oldestFailureAt} />
              </>
            ) : null}
            {". "}
            <a href="/dashboard/dead-letters">Dead letters</a>
          </p>
        </>
      )}
    </section>
  );
}

const ALERT_KINDS: { kind: AlertKind; label: string }[] = [
  { kind: "dead_letter", label: "new dead letters" },
  { kind: "origin_failing", label: "origin failing" },
  { kind: "recovered", label: "recovered" },
];

function AlertHistory({ state }: { state: AlertState }) {
  return (
    <Facts
      items={[
        ["last evaluated", <Time iso={isoOrNull(state.checkedAt)} />],
        ...ALERT_KINDS.map(({ kind, label }): [string, JSX.Element] => [`last "${label}" sent`, <Time iso={isoOrNull(state.sentAt[kind])} />]),
      ]}
    />
  );
}

function Alerts({ health, state }: { health: Health; state: Loaded<AlertState | undefined> | undefined }) {
  const alerts = health.alerts;
  return (
    <section class="panel" data-testid="alerts">
      <h2>Alerts</h2>
      <p>
        {"Alerts: "}
        <span class={`state-${alerts.state}`} data-testid="alerts-config">
          {alerts.state}
        </span>
        {alerts.state === "on" ? ` (${alerts.format})` : ` (${alerts.reason})`}
      </p>
      {!state ? (
        <NoIndex index={health.index} />
      ) : !state.ok ? (
        <ErrorPanel title="Could not read the alert state." message={state.error} />
      ) : !state.value ? (
        <p class="muted" data-testid="alert-state">
          not evaluated yet: the Cron Trigger evaluates alerts every minute once ALERT_URL is set (docs/alerts-and-stats.md)
        </p>
      ) : (
        <>
          <p>
            {"Deliveries to the origin: "}
            <span class={state.value.failingRaised ? "state-raised" : "state-on"} data-testid="alert-state">
              {state.value.failingRaised ? "failing (alert raised)" : "no alert raised"}
            </span>
          </p>
          <AlertHistory state={state.value} />
        </>
      )}
    </section>
  );
}

function Activity({ hour, day, index }: { hour: Loaded<DashboardStats> | undefined; day: Loaded<DashboardStats> | undefined; index: Health["index"] }) {
  return (
    <section class="panel chart" data-testid="activity-chart">
      <h2>Activity</h2>
      {!hour || !day ? (
        <NoIndex index={index} />
      ) : (
        <>
          {hour.ok ? <ActivityFigure window="1h" stats={hour.value} /> : <ErrorPanel title="Could not read the last hour." message={hour.error} />}
          {day.ok ? <ActivityFigure window="24h" stats={day.value} /> : <ErrorPanel title="Could not read the last day." message={day.error} />}
        </>
      )}
    </section>
  );
}

function Figures({ hour, day }: { hour: Loaded<DashboardStats> | undefined; day: Loaded<DashboardStats> | undefined }) {
  if (!hour?.ok || !day?.ok) return null;
  const row = (label: string, of: (stats: DashboardStats) => string | number) => (
    <tr>
      <td>{label}</td>
      <td class="num">{of(hour.value)}</td>
      <td class="num">{of(day.value)}</td>
    </tr>
  );
  const deliveries = (stats: DashboardStats, kind: "delivered" | "retried" | "failed") => stats.deliveries?.[kind] ?? "-";
  return (
    <section class="panel" data-testid="figures">
      <h2>Figures</h2>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th></th>
              <th class="num">last hour</th>
              <th class="num">last 24 h</th>
            </tr>
          </thead>
          <tbody>
            {row("conversations with a receipt", (stats) => stats.activeConversations)}
            {row("deliveries delivered", (stats) => deliveries(stats, "delivered"))}
            {row("deliveries retried", (stats) => deliveries(stats, "retried"))}
            {row("deliveries failed", (stats) => deliveries(stats, "failed"))}
            {row("latency p50 (last delivery per conversation)", (stats) => durationText(stats.latencyMs.p50))}
            {row("latency p95", (stats) => durationText(stats.latencyMs.p95))}
          </tbody>
        </table>
      </div>
      <p class="muted">{`${day.value.conversations.total} conversation(s) in the index. How exact each figure is: docs/alerts-and-stats.md.`}</p>
    </section>
  );
}

/**
 * Beside the heading (so that it moves nothing below it): a link to watch the most recently
 * active conversations in one live feed; nothing before the first conversation.
 */
function WatchRecent({ recent }: { recent: Loaded<string[]> | undefined }) {
  if (!recent?.ok || recent.value.length === 0) return null;
  return (
    <p class="watch" data-testid="watch-recent">
      <WatchLink keys={recent.value}>Watch these live</WatchLink>
      <span class="muted">{` (the ${recent.value.length} most recently active conversation(s))`}</span>
    </p>
  );
}

export function OverviewPage({ data }: { data: OverviewData }) {
  const { health, index } = data;
  return (
    <Page title="Overview" section="overview" signedIn={true}>
      <div class="page-head">
        <h1>Overview</h1>
        <WatchRecent recent={index?.recent} />
      </div>
      <IndexProblem index={health.index} />
      {!index && health.index.state === "off" ? <IndexOff /> : null}
      {index?.recent.ok === false ? <ErrorPanel title="Could not read the most recently active conversations." message={index.recent.error} /> : null}
      <div data-testid="overview">
        <Providers health={health} hour={index?.hour.ok ? index.hour.value : undefined} day={index?.day.ok ? index.day.value : undefined} />
        <div class="grid">
          <Backlog stats={index?.day} index={health.index} />
          <Failing stats={index?.day} index={health.index} />
          <Alerts health={health} state={index?.alertState} />
        </div>
        <Activity hour={index?.hour} day={index?.day} index={health.index} />
        <Figures hour={index?.hour} day={index?.day} />
      </div>
    </Page>
  );
}

/**
 * GET /dashboard/destinations: every destination (docs/api-destinations.md, the same data as
 * GET /v1/destinations): its state, host, backlog, dead letters and latency, with Pause/Resume
 * buttons and a replay of its dead letters (a durable job, like "replay all").
 */
import type { DestinationsOverview, DestinationView } from "../../queries/destinations";
import { ErrorPanel, Page, Time, DataTable } from "../layout";
import { durationText } from "../format";
import type { Loaded } from "../load";

export const destinationPath = (name: string) => `/dashboard/destinations/${encodeURIComponent(name)}`;

function PauseButton({ destination }: { destination: DestinationView }) {
  const paused = destination.pausedSince !== undefined;
  return (
    <form
      method="post"
      action={`${destinationPath(destination.name)}/${paused ? "resume" : "pause"}`}
      class="inline"
      data-testid={paused ? "resume-form" : "pause-form"}
    >
      <button type="submit" class={paused ? "primary" : "danger"} data-testid={paused ? "resume-button" : "pause-button"}>
        {paused ? "Resume" : "Pause"}
      </button>
    </form>
  );
}

function ReplayButton({ destination }: { destination: DestinationView }) {
  if (destination.deadLetters === 0) return null;
  return (
    <form method="post" action="/dashboard/replays" class="inline" data-testid="replay-destination">
      <input type="hidden" name="destination" value={destination.name} />
      <button type="submit" class="danger" data-testid="replay-destination-button">
        Replay its dead letters
      </button>
    </form>
  );
}

function Row({ destination, controlOn }: { destination: DestinationView; controlOn: boolean }) {
  const { latency } = destination;
  return (
    <tr data-testid="destination-row" data-destination={destination.name} data-state={destination.state}>
      <td>
        <strong>{destination.name}</strong>
        <div class="muted mono">{destination.host ?? "-"}</div>
      </td>
      <td>
        <span class={`state-${destination.state}`} data-testid="destination-state">
          {destination.state}
        </span>
        {destination.pausedSince ? (
          <div class="muted">
            {"paused since "}
            <Time iso={destination.pausedSince} />
          </div>
        ) : null}
        {destination.reason ? (
          <div class="muted" data-testid="destination-reason">
            {destination.setting ? `${destination.setting}: ` : ""}
            {destination.reason}
          </div>
        ) : null}
      </td>
      <td class="num" data-testid="destination-backlog">
        {destination.backlog}
      </td>
      <td class="num" data-testid="destination-dead-letters">
        {destination.deadLetters > 0 ? (
          <a href={`/dashboard/dead-letters?destination=${encodeURIComponent(destination.name)}`} data-testid="destination-dead-letters-link">
            {`${destination.deadLetters} in ${destination.failingConversations}`}
          </a>
        ) : (
          "0"
        )}
      </td>
      <td>
        <Time iso={destination.lastDeliveryAt} />
      </td>
      <td class="num" data-testid="destination-latency">
        {latency.deliveries > 0 ? `${durationText(latency.p50Ms)} / ${durationText(latency.p95Ms)}` : "-"}
        {latency.deliveries > 0 ? <div class="muted">{`${latency.deliveries} in the last hour`}</div> : null}
      </td>
      <td>{destination.lastError ?? "-"}</td>
      <td>
        {controlOn ? <PauseButton destination={destination} /> : null} <ReplayButton destination={destination} />
      </td>
    </tr>
  );
}

export function DestinationsPage({
  result,
  flash,
}: {
  result: Loaded<DestinationsOverview>;
  flash?: { paused?: string | undefined; resumed?: string | undefined } | undefined;
}) {
  return (
    <Page title="Destinations" section="destinations" signedIn={true}>
      <h1>Destinations</h1>
      {flash?.paused ? (
        <p class="flash" data-testid="flash">
          {`${flash.paused} paused: no new attempt goes to it (within a few seconds); its receipts wait.`}
        </p>
      ) : null}
      {flash?.resumed ? (
        <p class="flash" data-testid="flash">
          {`${flash.resumed} resumed: its waiting receipts go out again.`}
        </p>
      ) : null}
      {!result.ok ? <ErrorPanel title="Could not read the destinations." message={result.error} /> : <Overview overview={result.value} />}
    </Page>
  );
}

function Overview({ overview }: { overview: DestinationsOverview }) {
  const controlOn = overview.control.state === "on";
  return (
    <>
      {overview.control.state !== "on" ? (
        <ErrorPanel
          title={overview.control.state === "unbound" ? "Pause is off." : "Could not read which destinations are paused."}
          message={overview.control.reason}
        />
      ) : null}
      {overview.index.state === "unavailable" ? <ErrorPanel title="No figures: the index cannot be read." message={overview.index.reason} /> : null}
      <section class="panel">
        <DataTable
          testid="destinations"
          columns={[
            "destination",
            "state",
            { label: "backlog", num: true },
            { label: "dead letters", num: true },
            "last delivery",
            { label: "latency p50 / p95", num: true },
            "last error",
            "",
          ]}
          items={overview.destinations}
          empty={{ testid: "no-destinations", text: "No destination: set ORIGIN_URL or DESTINATIONS." }}
          row={(destination) => <Row destination={destination} controlOn={controlOn} />}
        />
        <p class="muted">
          {overview.unrouted !== null ? <span data-testid="unrouted">{`${overview.unrouted} receipt(s) kept matched no destination. `}</span> : null}
          {overview.index.state === "on" && overview.index.truncated
            ? `The figures cover the first ${overview.index.rows} conversations of the index only. `
            : null}
          Figures from the conversation index, which lags each conversation by up to one snapshot interval; latency from each conversation's last hour, as the
          upper bound of its histogram bucket. A pause holds new attempts within a few seconds; receipts keep being accepted.
        </p>
      </section>
    </>
  );
}

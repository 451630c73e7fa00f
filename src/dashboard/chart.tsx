/**
 * The overview's activity chart: callbacks and deliveries over the last hour (5-minute bars) and
 * the last day (hourly bars), as inline SVG rendered on the server (no script, no library).
 * Colours come from the stylesheet's classes, so the chart follows light and dark.
 *
 * Its input is `series` from relayStats (src/ops/stats.ts): 5-minute buckets, which may be sparse
 * (only buckets with activity) or dense; either way they are laid on a full grid of slots here.
 */
import type { relayStats, StatsWindow } from "../ops/stats";
import { isoFromMillis } from "../time";
import { timeText } from "./format";

/** What the dashboard shows of the relay's stats: relayStats' own result (same process, already typed). */
export type DashboardStats = Awaited<ReturnType<typeof relayStats>>;
export type SeriesPoint = DashboardStats["series"][number];

const BUCKET_MS = 5 * 60_000;
const SLOTS: Record<StatsWindow, { count: number; ms: number }> = {
  "1h": { count: 12, ms: BUCKET_MS },
  "24h": { count: 24, ms: 3_600_000 },
};
type Counts = Omit<SeriesPoint, "at">;
const zero = (): Counts => ({ accepted: 0, duplicates: 0, delivered: 0, retried: 0, failed: 0 });
const KINDS = ["accepted", "duplicates", "delivered", "retried", "failed"] as const;

interface Slot extends Counts {
  start: number;
}

/** Sums the buckets into the window's slots, oldest first, the last slot holding `now`. */
export function slotsOf(series: readonly SeriesPoint[], window: StatsWindow, now: number): Slot[] {
  const { count, ms } = SLOTS[window];
  const lastStart = Math.floor(now / ms) * ms;
  const first = lastStart - (count - 1) * ms;
  const slots: Slot[] = Array.from({ length: count }, (_, i) => ({ start: first + i * ms, ...zero() }));
  for (const point of series) {
    const at = Date.parse(point.at);
    if (Number.isNaN(at) || at < first || at >= lastStart + ms) continue;
    const slot = slots[Math.floor((at - first) / ms)];
    if (!slot) continue;
    for (const kind of KINDS) slot[kind] += point[kind];
  }
  return slots;
}

const WIDTH = 600;
const HEIGHT = 150;
const LEFT = 34;
const BOTTOM = 18;
const TOP = 6;
const hhmm = (ms: number) => timeText(isoFromMillis(ms)).slice(11, 16);

function Bars({ slots, now }: { slots: Slot[]; now: number }) {
  const plotWidth = WIDTH - LEFT;
  const plotHeight = HEIGHT - BOTTOM - TOP;
  const max = Math.max(1, ...slots.map((slot) => Math.max(slot.accepted + slot.duplicates, slot.delivered + slot.retried + slot.failed)));
  const slotWidth = plotWidth / slots.length;
  const barWidth = Math.max(1, slotWidth * 0.4);
  const scale = (value: number) => (value / max) * plotHeight;
  const baseline = TOP + plotHeight;
  /** Rectangles stacked upwards from the baseline. */
  const stack = (x: number, parts: [string, number][]) => {
    let y = baseline;
    return parts
      .filter(([, value]) => value > 0)
      .map(([kind, value]) => {
        const height = scale(value);
        y -= height;
        return <rect class={kind} x={x.toFixed(1)} y={y.toFixed(1)} width={barWidth.toFixed(1)} height={height.toFixed(1)} />;
      });
  };
  return (
    <>
      <line class="axis" x1={LEFT} y1={baseline} x2={WIDTH} y2={baseline} />
      <line class="axis" x1={LEFT} y1={TOP} x2={LEFT} y2={baseline} />
      <text class="label" x={LEFT - 4} y={TOP + 8} text-anchor="end">
        {max}
      </text>
      <text class="label" x={LEFT - 4} y={baseline} text-anchor="end">
        0
      </text>
      {slots.map((slot, i) => {
        const x = LEFT + i * slotWidth + slotWidth * 0.1;
        return (
          <g>
            <title>{`${hhmm(slot.start)} UTC: ${slot.accepted} accepted, ${slot.duplicates} duplicates; ${slot.delivered} delivered, ${slot.retried} retried, ${slot.failed} failed`}</title>
            {stack(x, [
              ["accepted", slot.accepted],
              ["duplicates", slot.duplicates],
            ])}
            {stack(x + barWidth, [
              ["delivered", slot.delivered],
              ["retried", slot.retried],
              ["failed", slot.failed],
            ])}
          </g>
        );
      })}
      <text class="label" x={LEFT} y={HEIGHT - 4}>
        {hhmm(slots[0]?.start ?? 0)}
      </text>
      <text class="label" x={WIDTH} y={HEIGHT - 4} text-anchor="end">
        {`now (${hhmm(now)} UTC)`}
      </text>
    </>
  );
}

function Legend({ slots }: { slots: Slot[] }) {
  const totals = zero();
  for (const slot of slots) for (const kind of KINDS) totals[kind] += slot[kind];
  return (
    <div class="legend">
      {KINDS.map((kind) => (
        <span>
          <span class={`swatch ${kind}`}></span>
          <span data-testid={`chart-total-${kind}`}>{`${kind} ${totals[kind]}`}</span>
        </span>
      ))}
    </div>
  );
}

/** One window's chart, or "no data yet" when the stats carry no series (yet). */
export function ActivityFigure({ window, stats }: { window: StatsWindow; stats: DashboardStats }) {
  const caption = window === "1h" ? "Last hour (5-minute bars)" : "Last 24 hours (hourly bars)";
  const series = stats.series ?? [];
  if (series.length === 0) {
    return (
      <figure data-window={window}>
        <figcaption>{caption}</figcaption>
        <p class="muted" data-testid="chart-empty">
          no data yet
        </p>
      </figure>
    );
  }
  const generatedAt = Date.parse(stats.generatedAt);
  const now = Number.isNaN(generatedAt) ? Date.now() : generatedAt;
  const slots = slotsOf(series, window, now);
  return (
    <figure data-window={window}>
      <figcaption>{caption}: callbacks (accepted, duplicates) and delivery attempts (delivered, retried, failed)</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={caption} xmlns="http://www.w3.org/2000/svg">
        <Bars slots={slots} now={now} />
      </svg>
      <Legend slots={slots} />
    </figure>
  );
}

/**
 * The dashboard's stylesheet, served as /dashboard/assets/dashboard-<hash>.css (the page's CSP
 * allows `style-src 'self'` only: no inline styles anywhere). Light and dark follow the system
 * (`prefers-color-scheme`); tables scroll sideways on a phone instead of squeezing.
 */
export const DASHBOARD_CSS = `
:root {
  color-scheme: light dark;
  --bg: #f7f7f5;
  --panel: #ffffff;
  --text: #1d1f21;
  --muted: #5f6368;
  --border: #d9dadc;
  --accent: #1f6feb;
  --ok: #1a7f37;
  --warn: #9a6700;
  --bad: #cf222e;
  --chart-accepted: #1f6feb;
  --chart-duplicates: #9ec1f7;
  --chart-delivered: #1a7f37;
  --chart-retried: #d4a72c;
  --chart-failed: #cf222e;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1115;
    --panel: #171a21;
    --text: #e6e6e6;
    --muted: #9aa0a6;
    --border: #2d333b;
    --accent: #58a6ff;
    --ok: #3fb950;
    --warn: #d29922;
    --bad: #f85149;
    --chart-accepted: #58a6ff;
    --chart-duplicates: #1f4f8a;
    --chart-delivered: #3fb950;
    --chart-retried: #d29922;
    --chart-failed: #f85149;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0;
  background: var(--bg);
  color: var(--text);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
a { color: var(--accent); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em; word-break: break-all; }
header.top {
  display: flex;
  flex-wrap: wrap;
  align-items: center;
  gap: 0.5rem 1rem;
  padding: 0.6rem 1rem;
  background: var(--panel);
  border-bottom: 1px solid var(--border);
}
header.top .brand { font-weight: 600; margin-right: auto; }
header.top nav { display: flex; flex-wrap: wrap; gap: 0.25rem 0.9rem; }
header.top form { margin: 0; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.35rem; margin: 0.2rem 0 1rem; word-break: break-all; }
h2 { font-size: 1.1rem; margin: 0 0 0.6rem; }
section.panel {
  background: var(--panel);
  border: 1px solid var(--border);
  border-radius: 8px;
  padding: 0.9rem 1rem;
  margin: 0 0 1rem;
}
.grid { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(14rem, 1fr)); margin: 0 0 1rem; }
.grid > section.panel { margin: 0; }
.figure { font-size: 1.8rem; font-weight: 600; }
.muted { color: var(--muted); }
.notice { border-left: 4px solid var(--warn); padding: 0.5rem 0.8rem; background: var(--panel); margin: 0 0 1rem; }
.error-panel { border-left: 4px solid var(--bad); padding: 0.5rem 0.8rem; background: var(--panel); margin: 0 0 1rem; }
.flash { border-left: 4px solid var(--ok); padding: 0.5rem 0.8rem; background: var(--panel); margin: 0 0 1rem; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; min-width: 36rem; }
th, td { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--border); vertical-align: top; }
th { font-weight: 600; color: var(--muted); white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.plain, ol.plain { list-style: none; margin: 0; padding: 0; }
ul.attempts { margin: 0; padding-left: 1rem; font-size: 0.9em; }
.status { display: inline-block; padding: 0 0.45rem; border-radius: 999px; border: 1px solid currentColor; font-size: 0.85em; }
.status-delivered, .state-enabled, .state-on, .state-active, .live-live { color: var(--ok); }
.status-pending, .state-disabled, .state-off, .state-paused, .live-connecting, .live-reconnecting, .state-running { color: var(--warn); }
.status-failed, .state-misconfigured, .state-raised { color: var(--bad); }
.status-skipped, .state-removed { color: var(--muted); }
.state-done { color: var(--ok); }
form.inline { display: inline; margin: 0; }
form.filters { display: flex; flex-wrap: wrap; gap: 0.5rem 0.8rem; align-items: flex-end; margin-bottom: 0.8rem; }
label { display: flex; flex-direction: column; gap: 0.2rem; font-size: 0.9em; color: var(--muted); }
input, select, button {
  font: inherit;
  color: var(--text);
  background: var(--bg);
  border: 1px solid var(--border);
  border-radius: 6px;
  padding: 0.4rem 0.6rem;
}
button { cursor: pointer; background: var(--panel); }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { border-color: var(--bad); color: var(--bad); }
.login { max-width: 24rem; margin: 12vh auto; }
.login form { display: flex; flex-direction: column; gap: 0.8rem; }
progress { width: 100%; height: 1.2rem; }
.chart svg { width: 100%; height: auto; display: block; }
.chart figure { margin: 0 0 1rem; }
.chart figcaption { font-size: 0.9em; color: var(--muted); margin-bottom: 0.3rem; }
.chart .axis { stroke: var(--border); stroke-width: 1; }
.chart .label { fill: var(--muted); font-size: 10px; }
.chart .accepted { fill: var(--chart-accepted); }
.chart .duplicates { fill: var(--chart-duplicates); }
.chart .delivered { fill: var(--chart-delivered); }
.chart .retried { fill: var(--chart-retried); }
.chart .failed { fill: var(--chart-failed); }
.legend { display: flex; flex-wrap: wrap; gap: 0.3rem 1rem; font-size: 0.85em; color: var(--muted); }
.legend .swatch { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 2px; margin-right: 0.3rem; vertical-align: -1px; }
.swatch.accepted { background: var(--chart-accepted); }
.swatch.duplicates { background: var(--chart-duplicates); }
.swatch.delivered { background: var(--chart-delivered); }
.swatch.retried { background: var(--chart-retried); }
.swatch.failed { background: var(--chart-failed); }
.live-events { max-height: 24rem; overflow-y: auto; font-size: 0.9em; }
.live-events li { padding: 0.25rem 0; border-bottom: 1px solid var(--border); }
.live-status { font-weight: 600; }
.status-receipt { color: var(--accent); }
p.watch { margin: 0 0 0.8rem; }
.page-head { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 0 1rem; }
.page-head p.watch { margin: 0 0 0.6rem; }
ul.live-connections li { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.1rem 0.6rem; padding: 0.2rem 0; min-width: 0; }
ul.live-connections .live-status { min-width: 7.5rem; }
.provider { font-size: 0.85em; color: var(--muted); }
.live-feed { max-height: 36rem; }
.live-feed .live-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.1rem 0.6rem; min-width: 0; }
.live-feed .live-detail { overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; word-break: break-all; }
@media (max-width: 40rem) {
  main { padding: 0.6rem; }
  section.panel { padding: 0.7rem; }
  .figure { font-size: 1.4rem; }
}
`;

/**
 * The page shell and the small pieces every page uses. Hono's JSX escapes every text and
 * attribute value; nothing here passes data through `raw()`. No inline script or style: the CSP
 * (routes.tsx) allows only the assets (stylesheet, script, icon).
 */
import type { Child, PropsWithChildren } from "hono/jsx";
import { isoFromMillis } from "../time";
import { assetPath, ICON, SCRIPT, STYLESHEET } from "./assets";
import { MAX_LIVE_CONVERSATIONS } from "./inputs";

export type Section = "overview" | "conversations" | "dead-letters" | "destinations" | "none";

/** "2026-12-03 10:00:00 UTC", the format the script uses too. */
export function timeText(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isNaN(ms)
    ? iso
    : isoFromMillis(ms)
        .replace("T", " ")
        .replace(/\.\d+Z$/, " UTC");
}

export function Time({ iso }: { iso: string | null | undefined }) {
  if (!iso) return <span class="muted">-</span>;
  return <time datetime={iso}>{timeText(iso)}</time>;
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

export const conversationPath = (key: string) => `/dashboard/conversations/${encodeURIComponent(key)}`;

/** A live page's query stays well under what proxies and the platform accept in a URL (16 KB on Cloudflare). */
const MAX_LIVE_QUERY_CHARS = 8 * 1024;

/**
 * The live page of these conversations (docs/dashboard.md, "Live tail"): the first 20, fewer if
 * their keys would make the URL too long. At least one key, so never an empty (400) page.
 */
export function livePath(keys: readonly string[]): string {
  const parts: string[] = [];
  let length = 0;
  for (const key of keys.slice(0, MAX_LIVE_CONVERSATIONS)) {
    const part = `conversation=${encodeURIComponent(key)}`;
    if (parts.length > 0 && length + part.length + 1 > MAX_LIVE_QUERY_CHARS) break;
    parts.push(part);
    length += part.length + 1;
  }
  return `/dashboard/live?${parts.join("&")}`;
}

/** "Watch these live": the live page of these conversations, or nothing when there are none. */
export function WatchLink({ keys, children }: PropsWithChildren<{ keys: readonly string[] }>) {
  if (keys.length === 0) return null;
  return (
    <a href={livePath(keys)} data-testid="watch-page">
      {children}
    </a>
  );
}

export function ConversationLink({ conversation }: { conversation: string }) {
  return (
    <a href={conversationPath(conversation)}>
      <code>{conversation}</code>
    </a>
  );
}

export function ErrorPanel({ title, message }: { title: string; message: string }) {
  return (
    <div class="error-panel" role="alert" data-testid="error-panel">
      <strong>{title}</strong> <span>{message}</span>
    </div>
  );
}

/** Shown wherever the D1 conversation index would be read but `DB` is not bound. */
export function IndexOff() {
  return (
    <div class="notice" data-testid="index-off">
      <strong>index off: bind D1 as DB.</strong> The conversation index, stats, dead letters and replays read it: add the <code>[[d1_databases]]</code> block
      with <code>binding = "DB"</code> to <code>wrangler.toml</code> (docs/operations.md, "The conversation index").
    </div>
  );
}

const NAV: { section: Section; href: string; label: string }[] = [
  { section: "overview", href: "/dashboard", label: "Overview" },
  { section: "conversations", href: "/dashboard/conversations", label: "Conversations" },
  { section: "dead-letters", href: "/dashboard/dead-letters", label: "Dead letters" },
  { section: "destinations", href: "/dashboard/destinations", label: "Destinations" },
];

export function Page({ title, section, signedIn, children }: PropsWithChildren<{ title: string; section: Section; signedIn: boolean }>) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <title>{`${title} · receipt-relay`}</title>
        <link rel="icon" type="image/svg+xml" href={assetPath(ICON)} />
        <link rel="stylesheet" href={assetPath(STYLESHEET)} />
        <script src={assetPath(SCRIPT)} defer></script>
      </head>
      <body>
        <header class="top">
          <span class="brand">receipt-relay</span>
          {signedIn ? (
            <>
              <nav>
                {NAV.map((item) => (
                  <a href={item.href} aria-current={item.section === section ? "page" : undefined}>
                    {item.label}
                  </a>
                ))}
              </nav>
              <form method="post" action="/dashboard/logout">
                <button type="submit" data-testid="sign-out">
                  Sign out
                </button>
              </form>
            </>
          ) : null}
        </header>
        <main>{children}</main>
      </body>
    </html>
  );
}

/** A definition list of label → value pairs, skipping absent values. */
export function Facts({ items }: { items: [string, Child][] }) {
  return (
    <dl class="facts">
      {items.map(([label, value]) => (
        <>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </>
      ))}
    </dl>
  );
}

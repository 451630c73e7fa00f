/**
 * The page shell and the small pieces every page uses. Hono's JSX escapes every text and
 * attribute value; nothing here passes data through `raw()`. No inline script or style: the CSP
 * (routes.tsx) allows only the assets (stylesheet, script, icon).
 */
import type { Child, PropsWithChildren } from "hono/jsx";
import { assetPath, ICON, SCRIPT, STYLESHEET } from "./assets";
import { timeText } from "./format";
import { MAX_LIVE_CONVERSATIONS } from "./inputs";
import { providerNames } from "../receipt";

export type Section = "overview" | "conversations" | "dead-letters" | "destinations" | "none";

// Shared with the browser script (format.ts); re-exported under the name the pages import.

export function Time({ iso }: { iso: string | null | undefined }) {
  if (!iso) return <span class="muted">-</span>;
  return <time datetime={iso}>{timeText(iso)}</time>;
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

/** A column heading; `num` right-aligns a column of figures. */
export type Column = string | { label: string; num: true };

/**
 * A table in its sideways-scrolling box (phones): the headings, one row per item, and a line
 * saying so when there is none.
 */
export function DataTable<T>({
  testid,
  columns,
  items,
  empty,
  row,
}: {
  testid: string;
  columns: readonly Column[];
  items: readonly T[];
  empty: { testid: string; text: string };
  row: (item: T) => Child;
}) {
  return (
    <div class="scroll">
      <table data-testid={testid}>
        <thead>
          <tr>{columns.map((column) => (typeof column === "string" ? <th>{column}</th> : <th class="num">{column.label}</th>))}</tr>
        </thead>
        <tbody>
          {items.length === 0 ? (
            <tr>
              <td colspan={columns.length} class="muted" data-testid={empty.testid}>
                {empty.text}
              </td>
            </tr>
          ) : (
            items.map(row)
          )}
        </tbody>
      </table>
    </div>
  );
}

/** A provider filter: every registered provider, `anyLabel` for none. */
export function ProviderSelect({ selected, testid, anyLabel }: { selected: string | undefined; testid: string; anyLabel: string }) {
  return (
    <label>
      provider
      <select name="provider" data-testid={testid}>
        <option value="">{anyLabel}</option>
        {providerNames.map((name) => (
          <option value={name} selected={selected === name}>
            {name}
          </option>
        ))}
      </select>
    </label>
  );
}

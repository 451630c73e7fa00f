/**
 * The dashboard's one script, bundled by build.mjs into src/dashboard/assets/script.bundle.js and
 * served as /dashboard/assets/dashboard-<hash>.js (the CSP allows `script-src 'self'` only: no
 * inline script, no event-handler attributes). It starts what the page has: a conversation's live
 * tail, the live page's feed, a replay's progress.
 */
import { conversationTail } from "./conversation-tail";
import { liveFeed } from "./live-feed";
import { replayProgress } from "./replay-progress";

function start(): void {
  const tail = document.querySelector<HTMLElement>('[data-testid="live-tail"][data-live-url]');
  if (tail) conversationTail(tail);
  const feed = document.querySelector<HTMLElement>('[data-testid="live-feed"]');
  if (feed) liveFeed(feed);
  const replay = document.querySelector<HTMLElement>("[data-poll-url]");
  if (replay) replayProgress(replay);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();

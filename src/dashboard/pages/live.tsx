/**
 * GET /dashboard/live?conversation=<key>&conversation=<key>…: up to 20 conversations' live tails
 * in one feed, newest first (docs/dashboard.md, "Live tail"). The page only lists the
 * conversations, each with its socket's URL and status; the script (src/dashboard/browser/live-feed.ts) opens one
 * WebSocket per conversation, on the same route as a conversation's own page, and fills the feed.
 */
import { parseConversationKey } from "../../receipt";
import { MAX_LIVE_CONVERSATIONS } from "../inputs";
import { ConversationLink, conversationPath, ErrorPanel, Page } from "../layout";

export type LiveResult = { kind: "watching"; conversations: string[] } | { kind: "invalid"; message: string };

function Connections({ conversations }: { conversations: string[] }) {
  return (
    <section class="panel" data-testid="live-connections">
      <h2>Conversations watched</h2>
      <ul class="plain live-connections">
        {conversations.map((conversation) => {
          const { provider } = parseConversationKey(conversation);
          return (
            <li
              data-testid="live-connection"
              data-conversation={conversation}
              data-provider={provider}
              data-live-url={`${conversationPath(conversation)}/live`}
            >
              <span data-testid="live-status" data-conversation={conversation} class="live-status live-connecting">
                connecting
              </span>
              <span class="provider">{provider}</span>
              <ConversationLink conversation={conversation} />
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function Feed() {
  return (
    <section class="panel" data-testid="live-feed">
      <h2>Events, newest first</h2>
      <p class="muted" data-testid="live-waiting">
        Waiting for new receipts and delivery attempts. Events missed while a conversation reconnects are not replayed: its own page shows its current state.
      </p>
      <ol class="plain live-events live-feed" data-testid="live-events"></ol>
    </section>
  );
}

function Invalid({ message }: { message: string }) {
  return (
    <>
      <ErrorPanel title="Which conversations?" message={message} />
      <p>
        {`This page watches 1 to ${MAX_LIVE_CONVERSATIONS} conversations: `}
        <code>{"/dashboard/live?conversation=<key>&conversation=<key>"}</code>
        {", each key percent-encoded. "}
        <a href="/dashboard/conversations">Conversations</a>
        {" and the overview link to it: Watch these live."}
      </p>
    </>
  );
}

export function LivePage({ result }: { result: LiveResult }) {
  return (
    <Page title="Live" section="conversations" signedIn={true}>
      {result.kind === "invalid" ? (
        <>
          <h1>Live</h1>
          <Invalid message={result.message} />
        </>
      ) : (
        <>
          <h1>{`Live: ${result.conversations.length} conversation(s)`}</h1>
          <Connections conversations={result.conversations} />
          <Feed />
        </>
      )}
    </Page>
  );
}

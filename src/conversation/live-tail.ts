/**
 * Live tail of one conversation (docs/dashboard.md, "Live tail"): viewers hold a WebSocket to the
 * conversation's Durable Object, accepted with the hibernation API, so an idle viewer costs nothing:
 * the object may leave memory while sockets stay open, and `ping` is answered `pong` by the platform
 * without waking it. The object sends an event when it accepts a receipt, after each delivery
 * attempt and after a retry of dead letters. No authentication here: the dashboard's route checks
 * the session and the Origin before it forwards the upgrade. The events' schema, shared with the
 * dashboard's browser script, is live-event.ts.
 */
import { conversationStub } from "../conversation-stub";
import type { HelloEvent, LiveEvent } from "./live-event";

/** Viewers per conversation; past this a new one is refused (429) rather than slowing every send. */
export const MAX_VIEWERS = 64;
/** The keep-alive a viewer sends, and the platform's answer (WebSocketRequestResponsePair). */
export const PING = "ping";
export const PONG = "pong";

/** Names the conversation to its object, which may not know its own key before its first receipt. */
export const CONVERSATION_HEADER = "x-relay-conversation";

/** Forwards a WebSocket upgrade to the conversation's object; it answers 101 (or 426/429). */
export function openLiveTail(env: Env, conversation: string, request: Request): Promise<Response> {
  const headers = new Headers(request.headers);
  headers.set(CONVERSATION_HEADER, encodeURIComponent(conversation));
  return conversationStub(env, conversation).fetch(new Request(request.url, { method: "GET", headers }));
}

/**
 * The object's side of an upgrade: accepts the socket for hibernation and greets it. Accepting a
 * socket writes nothing to storage, so a viewer may wait on a conversation that has no receipt yet.
 */
export function acceptViewer(ctx: DurableObjectState, request: Request, known: string | undefined): Response {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return new Response("expected a WebSocket upgrade", { status: 426, headers: { upgrade: "websocket" } });
  }
  if (ctx.getWebSockets().length >= MAX_VIEWERS) return new Response("too many viewers of this conversation", { status: 429 });
  const conversation = known ?? decodeHeader(request.headers.get(CONVERSATION_HEADER));
  if (conversation === undefined) return new Response("no conversation named", { status: 400 });
  const { 0: client, 1: server } = new WebSocketPair();
  ctx.acceptWebSocket(server);
  server.send(JSON.stringify({ type: "hello", conversation, at: new Date().toISOString() } satisfies HelloEvent));
  return new Response(null, { status: 101, webSocket: client });
}

/** Sends an event to every viewer; a socket that fails is closed, never the caller. */
export function broadcast(ctx: DurableObjectState, event: LiveEvent): void {
  const viewers = ctx.getWebSockets();
  if (viewers.length === 0) return;
  const text = JSON.stringify(event);
  for (const viewer of viewers) {
    try {
      viewer.send(text);
    } catch {
      try {
        viewer.close(1011, "send failed");
      } catch {
        // Already closed.
      }
    }
  }
}

function decodeHeader(value: string | null): string | undefined {
  if (!value) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

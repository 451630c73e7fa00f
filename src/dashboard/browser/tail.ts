/**
 * One live-tail socket (docs/dashboard.md, "Live tail"), shared by a conversation's page and the
 * live page (one per conversation there), and the events it hands on.
 */
import { LiveEvent } from "../../conversation/live-event";

const PING_MS = 30_000;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;
/** Events a page keeps; older ones are dropped. */
export const MAX_EVENTS = 200;

/** The events a page shows: every event but the greeting, which only says the socket is live. */
export type ShownEvent = Exclude<LiveEvent, { type: "hello" }>;

export type TailState = "connecting" | "live" | "reconnecting";

/**
 * Connects to the dashboard path `url`, pings every 30 s, and after a drop reconnects by itself
 * after 1 s, doubling up to 30 s, each socket on its own. onState gets each state; onEvent each
 * receipt, delivery or requeued event that parses as a LiveEvent (live-event.ts). Anything else is
 * dropped: it came from a socket, and the pages read an event's fields as its type says.
 */
export function openTail(url: string, onState: (state: TailState) => void, onEvent: (event: ShownEvent) => void): void {
  let retryMs = FIRST_RETRY_MS;
  let pinger: ReturnType<typeof setInterval> | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;

  function retry() {
    if (timer !== null) return;
    onState("reconnecting");
    timer = setTimeout(() => {
      timer = null;
      connect();
    }, retryMs);
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
  }

  function connect() {
    let socket: WebSocket;
    try {
      socket = new WebSocket(`${location.protocol === "https:" ? "wss://" : "ws://"}${location.host}${url}`);
    } catch {
      retry();
      return;
    }
    socket.addEventListener("open", () => {
      retryMs = FIRST_RETRY_MS;
      onState("live");
      pinger = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send("ping");
      }, PING_MS);
    });
    socket.addEventListener("message", (message) => {
      if (typeof message.data !== "string" || message.data === "pong") return;
      let data: unknown;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      const parsed = LiveEvent.safeParse(data);
      if (!parsed.success) return;
      const event = parsed.data;
      if (event.type === "hello") onState("live");
      else onEvent(event);
    });
    socket.addEventListener("close", () => {
      if (pinger !== null) clearInterval(pinger);
      pinger = null;
      retry();
    });
  }

  onState("connecting");
  connect();
}

/**
 * The live page: one socket per `[data-testid=live-connection]`, each with its status, and one feed
 * of every conversation's events, newest first. A delivery names the readers of its receipts when
 * their receipt event arrived on this page (a delivery event carries only ids).
 */
import type { DeliveryOutcome } from "../../conversation/live-event";
import { durationText, messagesText } from "../format";
import { byTestId, el, showState, timeNode } from "./dom";
import { MAX_EVENTS, openTail, type ShownEvent } from "./tail";

const OUTCOME_CLASS: Record<DeliveryOutcome, string> = {
  delivered: "status-delivered",
  retry: "status-pending",
  dead_letter: "status-failed",
  give_up: "status-failed",
};

/** The conversation a connection row watches, as its events in the feed name and link it. */
interface Watched {
  conversation: string;
  provider: string;
  href: string | null;
}

export function liveFeed(feed: HTMLElement): void {
  const list = byTestId(feed, "live-events");
  const waiting = byTestId(feed, "live-waiting");
  if (!list) return;
  const readersByReceipt = new Map<string, string[]>();

  const rememberReaders = (conversation: string, receiptId: string, readers: string[]) => {
    readersByReceipt.set(`${conversation}\n${receiptId}`, readers);
    // A Map iterates in insertion order: the oldest go first, so it stays as small as the feed.
    for (const key of readersByReceipt.keys()) {
      if (readersByReceipt.size <= MAX_EVENTS) break;
      readersByReceipt.delete(key);
    }
  };

  const knownReaders = (conversation: string, receiptIds: string[]) => {
    const readers: string[] = [];
    for (const receiptId of receiptIds) {
      for (const reader of readersByReceipt.get(`${conversation}\n${receiptId}`) ?? []) if (!readers.includes(reader)) readers.push(reader);
    }
    return readers;
  };

  const addItem = (
    watched: Watched,
    type: string,
    attributes: Record<string, string | number | undefined>,
    at: string | undefined,
    label: string,
    labelClass: string,
    details: string[],
  ) => {
    if (waiting) waiting.hidden = true;
    const item = el("li", {
      "data-testid": "live-event",
      "data-event-type": type,
      "data-conversation": watched.conversation,
      "data-provider": watched.provider,
      ...attributes,
    });
    const head = el("div", { class: "live-head" });
    if (at) head.appendChild(timeNode(at));
    head.appendChild(el("span", { class: `status ${labelClass}`, "data-testid": "live-event-label" }, label));
    head.appendChild(el("span", { class: "provider" }, watched.provider));
    const link = el("a", { href: watched.href });
    link.appendChild(el("code", null, watched.conversation));
    head.appendChild(link);
    item.appendChild(head);
    item.appendChild(el("div", { class: "live-detail muted" }, details.filter(Boolean).join(" · ")));
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.lastElementChild?.remove();
  };

  const handle = (watched: Watched, event: ShownEvent) => {
    if (event.type === "receipt") {
      const { receipt } = event;
      rememberReaders(watched.conversation, receipt.id, receipt.readers);
      addItem(watched, "receipt", { "data-receipt-id": receipt.id }, event.acceptedAt, "receipt", "status-receipt", [
        `receipt ${receipt.id}`,
        `read by ${receipt.readers.join(", ") || "-"}`,
        messagesText(receipt),
      ]);
    } else if (event.type === "delivery") {
      const { outcome } = event;
      const readers = knownReaders(watched.conversation, event.receiptIds);
      addItem(
        watched,
        "delivery",
        { "data-receipt-id": event.receiptIds[0], "data-outcome": outcome, "data-status": typeof event.status === "number" ? event.status : undefined },
        event.at,
        outcome.replace("_", " "),
        OUTCOME_CLASS[outcome],
        [
          `${event.receiptIds.length > 1 ? "receipts" : "receipt"} ${event.receiptIds.join(", ")}`,
          `read by ${readers.join(", ") || "-"}`,
          typeof event.status === "number" ? `status ${event.status}` : "no status",
          durationText(event.ms),
          `attempt ${event.attempt}`,
          event.error ?? "",
        ],
      );
    } else {
      addItem(watched, "requeued", {}, event.at, "requeued", "status-pending", [`${event.count} dead letter(s) re-queued`]);
    }
  };

  for (const row of document.querySelectorAll<HTMLElement>('[data-testid="live-connection"][data-live-url]')) {
    const statusNode = byTestId(row, "live-status");
    const url = row.getAttribute("data-live-url");
    if (!statusNode || url === null) continue;
    const watched: Watched = {
      conversation: row.getAttribute("data-conversation") || "",
      provider: row.getAttribute("data-provider") || "",
      href: row.querySelector("a[href]")?.getAttribute("href") ?? null,
    };
    openTail(
      url,
      (state) => showState(statusNode, state),
      (event) => handle(watched, event),
    );
  }
}

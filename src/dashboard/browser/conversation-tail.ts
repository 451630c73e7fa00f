/**
 * A conversation's page: its events appended as `[data-testid=live-event]`, and its receipts table
 * kept current. A receipt event prepends its row, a delivery event updates the rows' delivery
 * status and attempts, a requeue turns failed rows pending.
 */
import type { DeliveryEvent, DeliveryOutcome, ReceiptEvent } from "../../conversation/live-event";
import { messagesText, readersText } from "../format";
import { byTestId, el, showState, timeNode } from "./dom";
import { MAX_EVENTS, openTail } from "./tail";

const STATUS_BY_OUTCOME: Record<DeliveryOutcome, string> = { delivered: "delivered", retry: "pending", dead_letter: "failed", give_up: "failed" };

/** "attempt 2: dead letter, status 503, 120 ms (timeout)". */
function attemptText(event: DeliveryEvent): string {
  let text = `attempt ${event.attempt}: ${event.outcome.replace("_", " ")}`;
  if (typeof event.status === "number") text += `, status ${event.status}`;
  text += `, ${event.ms} ms`;
  if (event.error) text += ` (${event.error})`;
  return text;
}

const receiptRows = () => Array.from(document.querySelectorAll<HTMLElement>('[data-testid="receipt-row"]'));
const rowFor = (receiptId: string) => receiptRows().find((row) => row.getAttribute("data-receipt-id") === receiptId) ?? null;

function setStatus(row: HTMLElement, status: string): void {
  const badge = byTestId(row, "delivery-status");
  if (!badge) return;
  badge.textContent = status;
  badge.className = `status status-${status}`;
}

function addReceiptRow(event: ReceiptEvent): void {
  const receipt = event.receipt;
  if (rowFor(receipt.id)) return;
  const body = document.querySelector('[data-testid="receipts"] tbody');
  if (!body) return;
  byTestId(body, "no-receipts")?.remove();
  // The "waiting for the first receipt" notice of a watched conversation has served its purpose.
  byTestId(document, "watching")?.remove();
  const row = el("tr", { "data-testid": "receipt-row", "data-receipt-id": receipt.id, "data-accepted-at": event.acceptedAt });
  const readAt = el("td");
  readAt.appendChild(timeNode(receipt.readAt));
  row.appendChild(readAt);
  row.appendChild(el("td", null, readersText(receipt.readers)));
  row.appendChild(el("td", null, messagesText(receipt)));
  const status = el("td");
  status.appendChild(el("span", { "data-testid": "delivery-status", class: "status status-pending" }, "pending"));
  row.appendChild(status);
  const attempts = el("td");
  attempts.appendChild(el("ul", { "data-testid": "attempts", class: "attempts" }));
  row.appendChild(attempts);
  row.appendChild(el("td", { class: "num", "data-testid": "latency" }, "-"));
  const id = el("td");
  id.appendChild(el("code", null, receipt.id));
  id.appendChild(el("div", { class: "muted" }, receipt.event));
  row.appendChild(id);
  body.insertBefore(row, body.firstChild);
}

const STATUS_RANK: Record<string, number> = { failed: 0, pending: 1, delivered: 2, skipped: 3 };
const rankOf = (status: string) => STATUS_RANK[status] ?? 9;

/**
 * A receipt with several destinations lists each (destination-delivery): the event's one takes
 * the status, and the row's badge the one that stands for them all (failed, else pending, else
 * delivered), as the page rendered it. With one destination, the badge is its status.
 */
function setDeliveryStatus(row: HTMLElement, destination: string, status: string): void {
  const items = Array.from(row.querySelectorAll<HTMLElement>('[data-testid="destination-delivery"]'));
  if (items.length === 0) return setStatus(row, status);
  let best: string | null = null;
  for (const item of items) {
    if (item.getAttribute("data-destination") === destination) {
      item.setAttribute("data-status", status);
      const badge = item.querySelector(".status");
      if (badge) {
        badge.textContent = status;
        badge.className = `status status-${status}`;
      }
    }
    const each = item.getAttribute("data-status") || "pending";
    if (best === null || rankOf(each) < rankOf(best)) best = each;
  }
  setStatus(row, best ?? status);
}

function applyDelivery(event: DeliveryEvent): void {
  const status = STATUS_BY_OUTCOME[event.outcome];
  for (const receiptId of event.receiptIds) {
    const row = rowFor(receiptId);
    if (!row) continue;
    setDeliveryStatus(row, event.destination, status);
    const list = byTestId(row, "attempts");
    const several = byTestId(row, "destination-deliveries") !== null;
    if (list) list.appendChild(el("li", { "data-testid": "attempt" }, (several ? `${event.destination}: ` : "") + attemptText(event)));
    const acceptedAt = Date.parse(row.getAttribute("data-accepted-at") || "");
    const latency = byTestId(row, "latency");
    if (status === "delivered" && latency && !Number.isNaN(acceptedAt)) latency.textContent = `${Math.max(0, Date.parse(event.at) - acceptedAt)} ms`;
  }
}

function applyRequeue(): void {
  for (const row of receiptRows()) {
    if (byTestId(row, "delivery-status")?.textContent === "failed") setStatus(row, "pending");
  }
}

/** The page's `[data-testid=live-tail]` panel: its socket, its status and its list of events. */
export function conversationTail(panel: HTMLElement): void {
  const statusNode = byTestId(panel, "live-status");
  const list = byTestId(panel, "live-events");
  const waiting = byTestId(panel, "live-waiting");
  const url = panel.getAttribute("data-live-url");
  if (!statusNode || !list || url === null) return;

  const addEvent = (type: string, attributes: Record<string, string | undefined>, text: string, at: string | undefined) => {
    if (waiting) waiting.hidden = true;
    const item = el("li", { "data-testid": "live-event", "data-event-type": type, ...attributes });
    if (at) {
      item.appendChild(timeNode(at));
      item.appendChild(document.createTextNode(" "));
    }
    item.appendChild(document.createTextNode(text));
    list.appendChild(item);
    while (list.children.length > MAX_EVENTS) list.firstElementChild?.remove();
    list.scrollTop = list.scrollHeight;
  };

  openTail(
    url,
    (state) => showState(statusNode, state),
    (event) => {
      if (event.type === "receipt") {
        const { receipt } = event;
        addEvent(
          "receipt",
          { "data-receipt-id": receipt.id },
          `receipt ${receipt.id} read by ${receipt.readers.join(", ") || "-"}: ${messagesText(receipt)}`,
          event.acceptedAt,
        );
        addReceiptRow(event);
      } else if (event.type === "delivery") {
        addEvent(
          "delivery",
          { "data-receipt-id": event.receiptIds[0], "data-outcome": event.outcome },
          `${event.receiptIds.join(", ")}: ${attemptText(event)}`,
          event.at,
        );
        applyDelivery(event);
      } else {
        addEvent("requeued", {}, `${event.count} dead letter(s) re-queued`, event.at);
        applyRequeue();
      }
    },
  );
}

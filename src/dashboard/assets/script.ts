/**
 * The dashboard's one script, served as /dashboard/assets/dashboard-<hash>.js (the CSP allows
 * `script-src 'self'` only: no inline script, no event-handler attributes). Plain ES2017 for
 * the browser, kept as text because the Worker has no build step for browser code.
 *
 * - Live tail (docs/dashboard.md, "Live tail"): `openTail` is one WebSocket to a `data-live-url`,
 *   `ping` every 30 s, reconnecting by itself after 1 s, doubling up to 30 s. A conversation's page
 *   has one: its events are appended as `[data-testid=live-event]`; a receipt event prepends its
 *   row to the receipts table, a delivery event updates the rows' delivery status and attempts, a
 *   requeue turns failed rows pending. The live page has one per `[data-testid=live-connection]`,
 *   each with its own status and back-off, and prepends every conversation's events to one feed.
 * - Replay progress: polls the panel's `data-poll-url` every second until the job is done.
 *
 * Everything received is written with textContent/setAttribute, never as HTML.
 * (No template literals or "${" inside: this text is itself a template literal.)
 */
export const DASHBOARD_SCRIPT = `(function () {
  "use strict";

  var PING_MS = 30000;
  var FIRST_RETRY_MS = 1000;
  var MAX_RETRY_MS = 30000;
  var MAX_EVENTS = 200;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value !== undefined && value !== null) node.setAttribute(name, String(value));
      });
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** The same format as the server's: "2026-12-03 10:00:00 UTC". */
  function timeText(iso) {
    var date = new Date(iso);
    if (typeof iso !== "string" || isNaN(date.getTime())) return String(iso);
    return date.toISOString().replace("T", " ").replace(/\\.\\d+Z$/, " UTC");
  }

  function timeNode(iso) {
    return el("time", { datetime: iso }, timeText(iso));
  }

  /** The same summary as the server's: message ids, else #seq; then "up to". */
  function messagesText(receipt) {
    var messages = Array.isArray(receipt.messages) ? receipt.messages : [];
    var parts = messages.slice(0, 10).map(function (message) {
      if (message && typeof message.id === "string") return message.id;
      if (message && typeof message.seq === "number") return "#" + message.seq;
      return "?";
    });
    if (messages.length > 10) parts.push("and " + (messages.length - 10) + " more");
    var upTo = receipt.upTo;
    if (upTo && typeof upTo.seq === "number") parts.push("up to #" + upTo.seq);
    else if (upTo && typeof upTo.time === "string") parts.push("up to " + timeText(upTo.time));
    return parts.join(", ") || "-";
  }

  var STATUS_BY_OUTCOME = { delivered: "delivered", retry: "pending", dead_letter: "failed", give_up: "failed" };

  function receiptRows() {
    return Array.prototype.slice.call(document.querySelectorAll('[data-testid="receipt-row"]'));
  }

  function rowFor(receiptId) {
    var rows = receiptRows();
    for (var i = 0; i < rows.length; i++) if (rows[i].getAttribute("data-receipt-id") === receiptId) return rows[i];
    return null;
  }

  function setStatus(row, status) {
    var badge = row.querySelector('[data-testid="delivery-status"]');
    if (!badge) return;
    badge.textContent = status;
    badge.className = "status status-" + status;
  }

  function attemptText(event) {
    var text = "attempt " + event.attempt + ": " + String(event.outcome).replace("_", " ");
    if (typeof event.status === "number") text += ", status " + event.status;
    text += ", " + event.ms + " ms";
    if (typeof event.error === "string" && event.error) text += " (" + event.error + ")";
    return text;
  }

  function addReceiptRow(event) {
    var receipt = event.receipt;
    if (rowFor(receipt.id)) return;
    var body = document.querySelector('[data-testid="receipts"] tbody');
    if (!body) return;
    var empty = body.querySelector('[data-testid="no-receipts"]');
    if (empty) empty.remove();
    // The "waiting for the first receipt" notice of a watched conversation has served its purpose.
    var watching = document.querySelector('[data-testid="watching"]');
    if (watching) watching.remove();
    var row = el("tr", { "data-testid": "receipt-row", "data-receipt-id": receipt.id, "data-accepted-at": event.acceptedAt });
    var readAt = el("td");
    readAt.appendChild(timeNode(receipt.readAt));
    row.appendChild(readAt);
    var readers = Array.isArray(receipt.readers) ? receipt.readers : [];
    row.appendChild(el("td", null, (readers.slice(0, 10).join(", ") || "-") + (readers.length > 10 ? " and " + (readers.length - 10) + " more" : "")));
    row.appendChild(el("td", null, messagesText(receipt)));
    var status = el("td");
    status.appendChild(el("span", { "data-testid": "delivery-status", class: "status status-pending" }, "pending"));
    row.appendChild(status);
    var attempts = el("td");
    attempts.appendChild(el("ul", { "data-testid": "attempts", class: "attempts" }));
    row.appendChild(attempts);
    row.appendChild(el("td", { class: "num", "data-testid": "latency" }, "-"));
    var id = el("td");
    id.appendChild(el("code", null, receipt.id));
    id.appendChild(el("div", { class: "muted" }, receipt.event));
    row.appendChild(id);
    body.insertBefore(row, body.firstChild);
  }

  var STATUS_RANK = { failed: 0, pending: 1, delivered: 2, skipped: 3 };
  function rankOf(status) {
    return Object.prototype.hasOwnProperty.call(STATUS_RANK, status) ? STATUS_RANK[status] : 9;
  }

  /**
   * A receipt with several destinations lists each (destination-delivery): the event's one takes
   * the status, and the row's badge the one that stands for them all (failed, else pending, else
   * delivered), as the page rendered it. With one destination, the badge is its status.
   */
  function setDeliveryStatus(row, destination, status) {
    var items = Array.prototype.slice.call(row.querySelectorAll('[data-testid="destination-delivery"]'));
    if (items.length === 0 || typeof destination !== "string") return setStatus(row, status);
    var best = null;
    items.forEach(function (item) {
      if (item.getAttribute("data-destination") === destination) {
        item.setAttribute("data-status", status);
        var badge = item.querySelector(".status");
        if (badge) {
          badge.textContent = status;
          badge.className = "status status-" + status;
        }
      }
      var each = item.getAttribute("data-status") || "pending";
      if (best === null || rankOf(each) < rankOf(best)) best = each;
    });
    setStatus(row, best || status);
  }

  function applyDelivery(event) {
    var status = STATUS_BY_OUTCOME[event.outcome];
    event.receiptIds.forEach(function (receiptId) {
      var row = rowFor(receiptId);
      if (!row) return;
      if (status) setDeliveryStatus(row, event.destination, status);
      var list = row.querySelector('[data-testid="attempts"]');
      var several = row.querySelector('[data-testid="destination-deliveries"]') !== null && typeof event.destination === "string";
      if (list) list.appendChild(el("li", { "data-testid": "attempt" }, (several ? event.destination + ": " : "") + attemptText(event)));
      var acceptedAt = Date.parse(row.getAttribute("data-accepted-at") || "");
      var latency = row.querySelector('[data-testid="latency"]');
      if (status === "delivered" && latency && !isNaN(acceptedAt)) latency.textContent = Math.max(0, Date.parse(event.at) - acceptedAt) + " ms";
    });
  }

  function applyRequeue() {
    receiptRows().forEach(function (row) {
      var badge = row.querySelector('[data-testid="delivery-status"]');
      if (badge && badge.textContent === "failed") setStatus(row, "pending");
    });
  }

  function showState(node, state) {
    node.textContent = state;
    node.className = "live-status live-" + state;
  }

  /** The event's kind when it has the fields the pages read, else null (ignored). */
  function kindOf(event) {
    if (!event || typeof event.type !== "string") return null;
    if (event.type === "receipt" && event.receipt && typeof event.receipt.id === "string") return "receipt";
    if (event.type === "delivery" && Array.isArray(event.receiptIds) && event.receiptIds.length > 0) return "delivery";
    if (event.type === "requeued") return "requeued";
    return null;
  }

  function readersOf(receipt) {
    return Array.isArray(receipt.readers) ? receipt.readers.map(String) : [];
  }

  /**
   * One live-tail socket, shared by a conversation's page and the live page (one per conversation
   * there): connects to the dashboard path url, pings every 30 s, and after a drop reconnects by
   * itself after 1 s, doubling up to 30 s, each socket on its own. onState gets connecting, live
   * or reconnecting; onEvent each receipt, delivery or requeued event whose fields kindOf checked.
   */
  function openTail(url, onState, onEvent) {
    var retryMs = FIRST_RETRY_MS;
    var pinger = null;
    var timer = null;

    function retry() {
      if (timer !== null) return;
      onState("reconnecting");
      timer = setTimeout(function () {
        timer = null;
        connect();
      }, retryMs);
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    }

    function connect() {
      var socket;
      try {
        socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + url);
      } catch (error) {
        retry();
        return;
      }
      socket.addEventListener("open", function () {
        retryMs = FIRST_RETRY_MS;
        onState("live");
        pinger = setInterval(function () {
          if (socket.readyState === WebSocket.OPEN) socket.send("ping");
        }, PING_MS);
      });
      socket.addEventListener("message", function (message) {
        if (typeof message.data !== "string" || message.data === "pong") return;
        var event;
        try {
          event = JSON.parse(message.data);
        } catch (error) {
          return;
        }
        if (event && event.type === "hello") onState("live");
        else if (kindOf(event)) onEvent(event);
      });
      socket.addEventListener("close", function () {
        if (pinger !== null) clearInterval(pinger);
        pinger = null;
        retry();
      });
    }

    onState("connecting");
    connect();
  }

  /** A conversation's page: its events appended to the panel, and its tables kept current. */
  function conversationTail(panel) {
    var statusNode = panel.querySelector('[data-testid="live-status"]');
    var list = panel.querySelector('[data-testid="live-events"]');
    var waiting = panel.querySelector('[data-testid="live-waiting"]');

    function addEvent(type, attrs, text, at) {
      if (waiting) waiting.hidden = true;
      var item = el("li", Object.assign({ "data-testid": "live-event", "data-event-type": type }, attrs));
      if (at) {
        item.appendChild(timeNode(at));
        item.appendChild(document.createTextNode(" "));
      }
      item.appendChild(document.createTextNode(text));
      list.appendChild(item);
      while (list.children.length > MAX_EVENTS) list.removeChild(list.firstElementChild);
      list.scrollTop = list.scrollHeight;
    }

    openTail(
      panel.getAttribute("data-live-url"),
      function (state) {
        showState(statusNode, state);
      },
      function (event) {
        var kind = kindOf(event);
        if (kind === "receipt") {
          addEvent("receipt", { "data-receipt-id": event.receipt.id }, "receipt " + event.receipt.id + " read by " + (readersOf(event.receipt).join(", ") || "-") + ": " + messagesText(event.receipt), event.acceptedAt);
          addReceiptRow(event);
        } else if (kind === "delivery") {
          addEvent("delivery", { "data-receipt-id": event.receiptIds[0], "data-outcome": event.outcome }, event.receiptIds.join(", ") + ": " + attemptText(event), event.at);
          applyDelivery(event);
        } else if (kind === "requeued") {
          addEvent("requeued", {}, event.count + " dead letter(s) re-queued", event.at);
          applyRequeue();
        }
      },
    );
  }

  /** The same format as the server's duration(): ms, s, min or h. */
  function durationText(ms) {
    if (typeof ms !== "number" || isNaN(ms)) return "-";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
    if (ms < 7200000) return Math.round(ms / 60000) + " min";
    return (ms / 3600000).toFixed(1) + " h";
  }

  var OUTCOME_CLASS = { delivered: "status-delivered", retry: "status-pending", dead_letter: "status-failed", give_up: "status-failed" };

  /**
   * The live page: one socket per [data-testid=live-connection], each with its status, and one
   * feed of every conversation's events, newest first. A delivery names the readers of its
   * receipts when their receipt event arrived on this page (a delivery event carries only ids).
   */
  function liveFeed(feed) {
    var list = feed.querySelector('[data-testid="live-events"]');
    var waiting = feed.querySelector('[data-testid="live-waiting"]');
    var readersByReceipt = new Map();

    function rememberReaders(conversation, receiptId, readers) {
      readersByReceipt.set(conversation + "\\n" + receiptId, readers);
      // A Map iterates in insertion order: the oldest go first, so it stays as small as the feed.
      while (readersByReceipt.size > MAX_EVENTS) readersByReceipt.delete(readersByReceipt.keys().next().value);
    }

    function knownReaders(conversation, receiptIds) {
      var readers = [];
      receiptIds.forEach(function (receiptId) {
        (readersByReceipt.get(conversation + "\\n" + receiptId) || []).forEach(function (reader) {
          if (readers.indexOf(reader) < 0) readers.push(reader);
        });
      });
      return readers;
    }

    function addItem(watched, type, attrs, at, label, labelClass, details) {
      if (waiting) waiting.hidden = true;
      var item = el("li", Object.assign({ "data-testid": "live-event", "data-event-type": type, "data-conversation": watched.conversation, "data-provider": watched.provider }, attrs));
      var head = el("div", { class: "live-head" });
      if (at) head.appendChild(timeNode(at));
      head.appendChild(el("span", { class: "status " + labelClass, "data-testid": "live-event-label" }, label));
      head.appendChild(el("span", { class: "provider" }, watched.provider));
      var link = el("a", { href: watched.href });
      link.appendChild(el("code", null, watched.conversation));
      head.appendChild(link);
      item.appendChild(head);
      item.appendChild(el("div", { class: "live-detail muted" }, details.filter(Boolean).join(" · ")));
      list.insertBefore(item, list.firstChild);
      while (list.children.length > MAX_EVENTS) list.removeChild(list.lastElementChild);
    }

    function handle(watched, event) {
      var kind = kindOf(event);
      if (kind === "receipt") {
        var readers = readersOf(event.receipt);
        rememberReaders(watched.conversation, event.receipt.id, readers);
        addItem(watched, "receipt", { "data-receipt-id": event.receipt.id }, event.acceptedAt, "receipt", "status-receipt", [
          "receipt " + event.receipt.id,
          "read by " + (readers.join(", ") || "-"),
          messagesText(event.receipt),
        ]);
      } else if (kind === "delivery") {
        var outcome = String(event.outcome);
        var deliveryReaders = knownReaders(watched.conversation, event.receiptIds);
        addItem(
          watched,
          "delivery",
          { "data-receipt-id": event.receiptIds[0], "data-outcome": outcome, "data-status": typeof event.status === "number" ? event.status : null },
          event.at,
          outcome.replace("_", " "),
          OUTCOME_CLASS[outcome] || "status-pending",
          [
            (event.receiptIds.length > 1 ? "receipts " : "receipt ") + event.receiptIds.join(", "),
            "read by " + (deliveryReaders.join(", ") || "-"),
            typeof event.status === "number" ? "status " + event.status : "no status",
            durationText(event.ms),
            "attempt " + event.attempt,
            typeof event.error === "string" && event.error ? event.error : "",
          ],
        );
      } else if (kind === "requeued") {
        addItem(watched, "requeued", {}, event.at, "requeued", "status-pending", [event.count + " dead letter(s) re-queued"]);
      }
    }

    Array.prototype.forEach.call(document.querySelectorAll('[data-testid="live-connection"][data-live-url]'), function (row) {
      var statusNode = row.querySelector('[data-testid="live-status"]');
      var link = row.querySelector("a[href]");
      var watched = {
        conversation: row.getAttribute("data-conversation") || "",
        provider: row.getAttribute("data-provider") || "",
        href: link ? link.getAttribute("href") : null,
      };
      openTail(
        row.getAttribute("data-live-url"),
        function (state) {
          showState(statusNode, state);
        },
        function (event) {
          handle(watched, event);
        },
      );
    });
  }

  function replayPoller(panel) {
    var url = panel.getAttribute("data-poll-url");
    var bar = panel.querySelector('[data-testid="replay-progress"]');
    var state = panel.querySelector('[data-testid="replay-state"]');
    var done = panel.querySelector('[data-testid="replay-done"]');
    var total = panel.querySelector('[data-testid="replay-total"]');
    var requeued = panel.querySelector('[data-testid="replay-requeued"]');
    var skipped = panel.querySelector('[data-testid="replay-skipped"]');

    function apply(job) {
      // As attributes: the max property ignores 0 (a job with nothing to replay).
      bar.setAttribute("max", String(job.conversations.total));
      bar.setAttribute("value", String(job.conversations.done));
      state.textContent = job.status;
      state.className = "state-" + job.status;
      if (done) done.textContent = String(job.conversations.done);
      if (total) total.textContent = String(job.conversations.total);
      if (requeued) requeued.textContent = String(job.requeued);
      if (skipped) skipped.textContent = String(job.skipped);
    }

    function tick() {
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("status " + response.status);
          return response.json();
        })
        .then(function (job) {
          apply(job);
          if (job.status !== "done") setTimeout(tick, 1000);
        })
        .catch(function () {
          setTimeout(tick, 5000);
        });
    }

    if (state.textContent !== "done") setTimeout(tick, 1000);
  }

  function start() {
    var tail = document.querySelector('[data-testid="live-tail"][data-live-url]');
    if (tail) conversationTail(tail);
    var feed = document.querySelector('[data-testid="live-feed"]');
    if (feed) liveFeed(feed);
    var replay = document.querySelector("[data-poll-url]");
    if (replay) replayPoller(replay);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
`;

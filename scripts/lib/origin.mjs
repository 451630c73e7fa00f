// @ts-check
// One local origin for everything that runs the relay (the demo, the soak, the drills, the bench,
// the browser test, the vitest origin): it verifies every delivery's Standard Webhooks signature
// with the `standardwebhooks` package, as a real origin should, records what arrived (attempts,
// receipt ids, batches, per conversation), counts what it took, and answers as scripted: per
// conversation (a queue of steps) or for everything (a status, an outage for a while or until
// told, a delay, a hang-up, an answer held until released). POST /alerts is an alert receiver.
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

/**
 * One answer: a status (optionally late, held until released, with Retry-After or Location), or
 * a dropped connection. The same shape as test/support/origin-types.ts's Step.
 * @typedef {{ status: number, retryAfter?: string, delayMs?: number, hold?: true, location?: string } | { refuse: true }} Step
 */

/**
 * One delivery attempt as it arrived (test/support/origin-types.ts's Attempt).
 * @typedef {object} Attempt
 * @property {string} id the webhook-id
 * @property {string} conversation the (first) receipt's conversation, "" when unverified
 * @property {number} status what the origin answered; 0 until it answers, and for good when either side hung up
 * @property {boolean} refused the origin hung up on purpose (a `refuse` step)
 * @property {boolean} verified the signature held under one of the secrets and the body is a receipt event
 * @property {string[]} verifiedWith the secrets that each verify it on their own
 * @property {number} signatures how many signatures the webhook-signature header carried
 * @property {number} at arrival time (epoch ms)
 * @property {string} method
 * @property {string} path the request's path and query (one destination of several: its own path)
 * @property {unknown} data the body's `data`: the receipt, or a batch's receipts
 * @property {string[]} receiptIds the receipts it carried, in order
 * @property {boolean} batch a `receipt.read.batch`
 */

/** @typedef {{ type: string, webhookId: string, data: any, at: number }} Alert */

/** @typedef {Step | ((attempt: Attempt) => Step)} Answer a step, or one chosen per attempt (e.g. outage windows) */

const SIGNATURE_HEADERS = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/** @param {unknown} receipt */
const isReceipt = (receipt) =>
  typeof receipt === "object" &&
  receipt !== null &&
  typeof (/** @type {any} */ (receipt).id) === "string" &&
  typeof (/** @type {any} */ (receipt).conversation) === "string";

/** The receipts of a receipt event (one, or a batch's), or undefined when it is none. @param {any} event @returns {any[] | undefined} */
function receiptsOf(event) {
  if (typeof event?.timestamp !== "string") return undefined;
  if (event?.type === "receipt.read" && isReceipt(event.data)) return [event.data];
  if (event?.type === "receipt.read.batch" && Array.isArray(event.data) && event.data.length > 0 && event.data.every(isReceipt)) return event.data;
  return undefined;
}

/** @param {import("node:http").IncomingMessage} request @returns {Promise<string>} */
async function readBody(request) {
  const chunks = [];
  for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The first verified payload among `webhooks` (and which secrets verified it), or none.
 * @param {{ secret: string, webhook: Webhook }[]} webhooks @param {string} body @param {Record<string, string>} headers
 */
function verify(webhooks, body, headers) {
  /** @type {unknown} */
  let payload;
  const verifiedWith = [];
  for (const { secret, webhook } of webhooks) {
    try {
      // Throws on a bad signature or a timestamp more than 5 minutes off.
      payload = webhook.verify(body, headers);
      verifiedWith.push(secret);
    } catch {}
  }
  return { payload, verifiedWith };
}

/**
 * Starts the origin on `host`:`port` (127.0.0.1 and a free port by default).
 * @param {object} [options]
 * @param {string[]} [options.secrets] FORWARD_SECRET keys (whsec_…): a delivery verified by none is answered 401.
 *   None given: nothing is verified and every delivery is answered as scripted (the bench, which measures the relay).
 * @param {string[]} [options.alertSecrets] the keys POST /alerts verifies with (ALERT_SECRET); `secrets` by default
 * @param {string} [options.host]
 * @param {number} [options.port]
 * @param {string} [options.path] the path of `url` (any other path but /alerts takes deliveries too)
 * @param {Answer} [options.answer] the answer when no script applies; 204 by default
 * @param {boolean} [options.keepAlive] false: every answer closes its connection (an idle one holds up a Durable Object's eviction)
 * @param {boolean} [options.keepAttempts] false: only the counters, no `attempts` list (long bench runs)
 * @param {(attempt: Attempt) => void} [options.onAttempt] told each attempt once answered (or hung up on)
 * @param {(alert: Alert) => void} [options.onAlert] told each verified alert
 */
export async function startOrigin({
  secrets = [],
  alertSecrets = secrets,
  host = "127.0.0.1",
  port = 0,
  path = "/receipts",
  answer = { status: 204 },
  keepAlive = true,
  keepAttempts = true,
  onAttempt,
  onAlert,
} = {}) {
  const webhooks = secrets.map((secret) => ({ secret, webhook: new Webhook(secret) }));
  const alertWebhooks = alertSecrets.map((secret) => ({ secret, webhook: new Webhook(secret) }));
  /** Steps scripted per conversation, or per `${conversation} ${path}`. @type {Map<string, Step[]>} */
  const scripts = new Map();
  /** Answers held until released, per conversation. @type {Map<string, (() => void)[]>} */
  const held = new Map();
  /** An outage for everything: its answer, until when (epoch ms; Infinity: until `recover()`). */
  let outage = { step: /** @type {Step} */ ({ status: 503 }), until: 0 };
  let defaultAnswer = answer;

  /** @param {Attempt} attempt @returns {Step} */
  function stepFor(attempt) {
    const scripted = scripts.get(`${attempt.conversation} ${attempt.path}`) ?? scripts.get(attempt.conversation);
    const next = scripted?.shift();
    if (next) return next;
    if (Date.now() < outage.until) return outage.step;
    return typeof defaultAnswer === "function" ? defaultAnswer(attempt) : defaultAnswer;
  }

  /** @param {Attempt} attempt @param {any[]} receipts @param {number} status */
  function count(attempt, receipts, status) {
    if (status >= 200 && status < 300) {
      origin.deliveries++;
      origin.receipts += receipts.length || 1;
      for (const receipt of receipts) {
        const receivedAt = Date.parse(receipt?.receivedAt ?? "");
        if (Number.isFinite(receivedAt)) origin.latencies.push(attempt.at - receivedAt);
      }
      if (!origin.firstOkAt) origin.firstOkAt = Date.now();
    } else if (status === 401) origin.counts.badSignatures++;
    else origin.counts.refused++;
  }

  /** @param {import("node:http").IncomingMessage} request @param {import("node:http").ServerResponse} response */
  async function handle(request, response) {
    const body = await readBody(request);
    const headers = Object.fromEntries(SIGNATURE_HEADERS.map((name) => [name, String(request.headers[name] ?? "")]));
    const url = request.url ?? "/";
    if (request.method === "POST" && new URL(url, "http://origin.invalid").pathname === "/alerts") return receiveAlert(body, headers, response);

    const { payload, verifiedWith } = verify(webhooks, body, headers);
    /** @type {any} */
    let event = payload;
    if (webhooks.length === 0) {
      try {
        event = JSON.parse(body);
      } catch {}
    }
    const receipts = receiptsOf(event);
    const verified = verifiedWith.length > 0 && receipts !== undefined;
    const accepted = verified || (webhooks.length === 0 && receipts !== undefined);
    /** @type {Attempt} */
    const attempt = {
      id: headers["webhook-id"],
      conversation: receipts?.[0]?.conversation ?? "",
      status: 0,
      refused: false,
      verified,
      verifiedWith: receipts ? verifiedWith : [],
      signatures: headers["webhook-signature"].split(" ").filter(Boolean).length,
      at: Date.now(),
      method: request.method ?? "",
      path: url,
      data: accepted ? event?.data : undefined,
      receiptIds: (accepted && receipts?.map((receipt) => receipt.id)) || [],
      batch: accepted && event?.type === "receipt.read.batch",
    };
    // Logged on arrival, so that a script sees an attempt the relay is still waiting on.
    if (keepAttempts) origin.attempts.push(attempt);
    const step = accepted ? stepFor(attempt) : { status: 401 };
    if ("refuse" in step) {
      attempt.refused = true;
      request.socket.destroy();
      onAttempt?.(attempt);
      return;
    }
    if (step.delayMs) await new Promise((resolve) => setTimeout(resolve, step.delayMs));
    if (step.hold) await new Promise((resolve) => held.set(attempt.conversation, [...(held.get(attempt.conversation) ?? []), () => resolve(undefined)]));
    // The relay gave up waiting (its timeout): nothing it could see was answered.
    if (response.destroyed || request.socket.destroyed) {
      onAttempt?.(attempt);
      return;
    }
    attempt.status = step.status;
    count(attempt, receipts ?? [], step.status);
    /** @type {Record<string, string>} */
    const answerHeaders = keepAlive ? {} : { connection: "close" };
    if (step.retryAfter) answerHeaders["retry-after"] = step.retryAfter;
    if (step.location) answerHeaders.location = step.location;
    if (step.status === 204) response.writeHead(204, answerHeaders).end();
    else response.writeHead(step.status, { "content-type": "application/json", ...answerHeaders }).end(JSON.stringify({ ok: step.status < 300 }));
    onAttempt?.(attempt);
  }

  /** @param {string} body @param {Record<string, string>} headers @param {import("node:http").ServerResponse} response */
  function receiveAlert(body, headers, response) {
    const { payload } = verify(alertWebhooks, body, headers);
    if (!payload) {
      origin.counts.badAlertSignatures++;
      response.writeHead(401).end();
      return;
    }
    const event = /** @type {any} */ (payload);
    const alert = { type: event?.type, webhookId: headers["webhook-id"], data: event?.data ?? {}, at: Date.now() };
    origin.alerts.push(alert);
    response.writeHead(204).end();
    onAlert?.(alert);
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error) => {
      if (!response.headersSent) response.writeHead(500).end(String(error));
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(undefined));
  });
  const address = server.address();
  const listeningPort = typeof address === "object" && address ? address.port : port;
  const base = `http://${host.includes(":") ? `[${host}]` : host}:${listeningPort}`;

  const origin = {
    /** Where the relay delivers: ORIGIN_URL. */
    url: `${base}${path}`,
    /** Where alerts go: ALERT_URL. */
    alertUrl: `${base}/alerts`,
    port: listeningPort,
    server,
    /** Every delivery attempt, in arrival order (unless `keepAttempts` is false). @type {Attempt[]} */
    attempts: /** @type {Attempt[]} */ ([]),
    /** Every verified alert, in arrival order. @type {Alert[]} */
    alerts: /** @type {Alert[]} */ ([]),
    /** Deliveries answered 2xx since the last reset. */
    deliveries: 0,
    /** Receipts answered 2xx since the last reset (a batch counts each of its receipts). */
    receipts: 0,
    /** When the first delivery since the last reset was answered 2xx (epoch ms; 0: none yet). */
    firstOkAt: 0,
    /** Per receipt answered 2xx: ms from the relay's `receivedAt` to its arrival here (the delivery latency). @type {number[]} */
    latencies: /** @type {number[]} */ ([]),
    /** Answers other than 2xx (`refused`), 401s to deliveries, and alerts refused for their signature. */
    counts: { refused: 0, badSignatures: 0, badAlertSignatures: 0 },
    /** Zeroes `deliveries`, `receipts`, `firstOkAt` and `latencies` (not the attempts). */
    reset() {
      origin.deliveries = 0;
      origin.receipts = 0;
      origin.firstOkAt = 0;
      origin.latencies = [];
    },
    /** The answer when no script applies, from now on. @param {Answer} next */
    answer(next) {
      defaultAnswer = next;
    },
    /**
     * An outage: `step` (503 by default) for everything not scripted, for `forMs` or until `recover()`.
     * @param {{ step?: Step, forMs?: number }} [options]
     */
    fail({ step = { status: 503 }, forMs = Infinity } = {}) {
      outage = { step, until: Date.now() + forMs };
    },
    /** Ends an outage started by `fail()`. */
    recover() {
      outage.until = 0;
    },
    /** Whether an outage started by `fail()` is on. */
    failing: () => Date.now() < outage.until,
    /**
     * The next answers for this conversation (at `path` only, when given: one destination of
     * several); after them, the default answer.
     * @param {string} conversation @param {Step[]} steps @param {string} [path]
     */
    script(conversation, steps, path) {
      scripts.set(path ? `${conversation} ${path}` : conversation, [...steps]);
    },
    /** Answers the attempts of this conversation held by a `hold` step; returns how many. @param {string} conversation */
    release(conversation) {
      const waiting = held.get(conversation) ?? [];
      held.delete(conversation);
      for (const resume of waiting) resume();
      return waiting.length;
    },
    /** The attempts of one conversation, in arrival order. @param {string} conversation */
    attemptsOf: (conversation) => origin.attempts.filter((attempt) => attempt.conversation === conversation),
    /** The attempts of one webhook-id (one receipt, or one batch), in arrival order. @param {string} webhookId */
    attemptsWithId: (webhookId) => origin.attempts.filter((attempt) => attempt.id === webhookId),
    /** The attempts that carried this receipt, in arrival order. @param {string} receiptId */
    deliveriesOf: (receiptId) => origin.attempts.filter((attempt) => attempt.receiptIds.includes(receiptId)),
    /** The attempts answered 2xx, in arrival order. */
    delivered: () => origin.attempts.filter((attempt) => attempt.status >= 200 && attempt.status < 300),
    /** Stops listening and drops open connections (held answers included). */
    close() {
      for (const waiting of held.values()) for (const resume of waiting) resume();
      held.clear();
      return new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve(undefined));
      });
    },
  };
  return origin;
}

/**
 * A real local origin for the tests (runs in Node, started by global-setup.ts). It verifies every
 * delivery with the `standardwebhooks` package, answers per conversation as a test scripts it
 * (including hanging up without an answer), and records what arrived. A separate control server
 * lets tests in workerd script it and read its log.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Webhook } from "standardwebhooks";
import { z } from "zod";
import { ROTATED_FORWARD_SECRET, Step, type Attempt } from "./origin-types";

const DeliveredReceipt = z.looseObject({ id: z.string(), conversation: z.string() });
/** One receipt, or (FORWARD_BATCH_MAX above 1) several of one conversation, in order. */
const Payload = z.union([
  z.object({ type: z.literal("receipt.read"), timestamp: z.string(), data: DeliveredReceipt }),
  z.object({ type: z.literal("receipt.read.batch"), timestamp: z.string(), data: z.array(DeliveredReceipt).min(1) }),
]);
const receiptsOf = (payload: z.infer<typeof Payload>) => (Array.isArray(payload.data) ? payload.data : [payload.data]);

export interface OriginHandle {
  originPort: number;
  controlPort: number;
  close(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks).toString("utf8");
}

function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(JSON.stringify(body));
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address && typeof address === "object") resolve(address.port);
      else reject(new Error("the server has no port"));
    });
  });
}

const header = (request: IncomingMessage, name: string) => String(request.headers[name] ?? "");

/** The verified payload, or undefined when the signature (or the timestamp) does not hold. */
function verifyWith(webhook: Webhook, body: string, request: IncomingMessage): z.infer<typeof Payload> | undefined {
  try {
    // Throws on a bad signature or a timestamp more than 5 minutes off.
    const payload = webhook.verify(body, {
      "webhook-id": header(request, "webhook-id"),
      "webhook-timestamp": header(request, "webhook-timestamp"),
      "webhook-signature": header(request, "webhook-signature"),
    });
    return Payload.parse(payload);
  } catch {
    return undefined;
  }
}

/** Starts the origin; it verifies with `secret` (the relay's FORWARD_SECRET in tests) and with ROTATED_FORWARD_SECRET. */
export async function startOrigin(secret: string): Promise<OriginHandle> {
  const verifiers = [secret, ROTATED_FORWARD_SECRET].map((known) => ({ secret: known, webhook: new Webhook(known) }));
  const scripts = new Map<string, Step[]>();
  const attempts: Attempt[] = [];
  /** Alerts POSTed to the control server's /alerts (ALERT_URL in the alert tests), as they came. */
  const alerts: { headers: Record<string, string>; body: string; at: number }[] = [];
  const sockets = new Set<Socket>();
  /** Answers held until the test releases them, per conversation. */
  const held = new Map<string, (() => void)[]>();

  const origin = createServer(async (request, response) => {
    const body = await readBody(request);
    const verifiedBy = verifiers.map((verifier) => ({ secret: verifier.secret, payload: verifyWith(verifier.webhook, body, request) }));
    const payload = verifiedBy.find((result) => result.payload)?.payload;
    const receipts = payload ? receiptsOf(payload) : [];
    const conversation = receipts[0]?.conversation ?? "";
    // A script for this conversation at this path (one destination of several) comes first.
    const path = request.url ?? "";
    const scripted = scripts.get(`${conversation} ${path}`) ?? scripts.get(conversation);
    const step: Step = payload ? (scripted?.shift() ?? { status: 200 }) : { status: 401 };
    // Logged on arrival, so that a test sees an attempt the relay is still waiting on.
    const attempt: Attempt = {
      id: header(request, "webhook-id"),
      conversation,
      status: 0,
      refused: "refuse" in step,
      verified: payload !== undefined,
      verifiedWith: verifiedBy.filter((result) => result.payload).map((result) => result.secret),
      signatures: header(request, "webhook-signature").split(" ").filter(Boolean).length,
      at: Date.now(),
      method: request.method ?? "",
      path: request.url ?? "",
      data: payload?.data,
      receiptIds: receipts.map((receipt) => receipt.id),
      batch: payload?.type === "receipt.read.batch",
    };
    attempts.push(attempt);
    if ("refuse" in step) {
      request.socket.destroy();
      return;
    }
    if (step.delayMs) await new Promise((resolve) => setTimeout(resolve, step.delayMs));
    if (step.hold) await new Promise<void>((resolve) => held.set(conversation, [...(held.get(conversation) ?? []), resolve]));
    // The relay gave up waiting (its timeout): nothing it could see was answered.
    if (response.destroyed || request.socket.destroyed) return;
    attempt.status = step.status;
    const headers: Record<string, string> = {};
    if (step.retryAfter) headers["retry-after"] = step.retryAfter;
    if (step.location) headers.location = step.location;
    // No keep-alive: an idle connection would hold up the eviction of the object that opened it.
    send(response, step.status, { ok: step.status < 300 }, { ...headers, connection: "close" });
  });
  origin.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  const originPort = await listen(origin);

  const control = createServer(async (request, response) => {
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    const conversation = url.searchParams.get("conversation") ?? "";
    if (request.method === "POST" && url.pathname === "/script") {
      const path = url.searchParams.get("path");
      scripts.set(path ? `${conversation} ${path}` : conversation, z.array(Step).parse(JSON.parse(await readBody(request))));
      return send(response, 200, { ok: true });
    }
    // A tiny alert receiver: records every POST (headers and body) and answers as ?status= says.
    if (request.method === "POST" && url.pathname === "/alerts") {
      const body = await readBody(request);
      const headers = Object.fromEntries(["content-type", "webhook-id", "webhook-timestamp", "webhook-signature"].map((name) => [name, header(request, name)]));
      alerts.push({ headers, body, at: Date.now() });
      const status = Number(url.searchParams.get("status") ?? "200");
      return send(response, status, { ok: status < 300 }, { connection: "close" });
    }
    if (request.method === "GET" && url.pathname === "/alerts") return send(response, 200, alerts);
    if (request.method === "POST" && url.pathname === "/release") {
      const waiting = held.get(conversation) ?? [];
      held.delete(conversation);
      for (const release of waiting) release();
      return send(response, 200, { released: waiting.length });
    }
    if (request.method === "GET" && url.pathname === "/attempts") {
      return send(
        response,
        200,
        attempts.filter((attempt) => attempt.conversation === conversation),
      );
    }
    return send(response, 404, { error: "unknown control route" });
  });
  const controlPort = await listen(control);

  return {
    originPort,
    controlPort,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all([origin, control].map((server) => new Promise((resolve) => server.close(resolve))));
    },
  };
}

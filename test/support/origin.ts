/**
 * A real local origin for the tests (runs in Node, started by global-setup.ts). It verifies every
 * delivery with the `standardwebhooks` package, answers per conversation as a test scripts it, and
 * records what arrived. A separate control server (always up) lets tests in workerd script it,
 * read its log, and close or reopen the origin's listener to make connections be refused.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Webhook } from "standardwebhooks";
import { z } from "zod";
import { Step, type Attempt } from "./origin-types";

const Payload = z.object({ type: z.literal("receipt.read"), timestamp: z.string(), data: z.looseObject({ conversation: z.string() }) });

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

function listen(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      if (address && typeof address === "object") resolve(address.port);
      else reject(new Error("the server has no port"));
    });
  });
}

export async function startOrigin(secret: string): Promise<OriginHandle> {
  const webhook = new Webhook(secret);
  const scripts = new Map<string, Step[]>();
  const attempts: Attempt[] = [];
  const sockets = new Set<Socket>();

  const origin = createServer(async (request, response) => {
    const body = await readBody(request);
    let conversation = "";
    let verified = false;
    let data: unknown;
    try {
      // Throws on a bad signature or a timestamp more than 5 minutes off.
      const payload = webhook.verify(body, {
        "webhook-id": String(request.headers["webhook-id"] ?? ""),
        "webhook-timestamp": String(request.headers["webhook-timestamp"] ?? ""),
        "webhook-signature": String(request.headers["webhook-signature"] ?? ""),
      });
      data = Payload.parse(payload).data;
      conversation = Payload.parse(payload).data.conversation;
      verified = true;
    } catch {
      verified = false;
    }
    const step: Step = verified ? (scripts.get(conversation)?.shift() ?? { status: 200 }) : { status: 401 };
    if (step.delayMs) await new Promise((resolve) => setTimeout(resolve, step.delayMs));
    // The relay gave up waiting (its timeout): nothing it could see was answered.
    const answered = !response.destroyed && !request.socket.destroyed;
    attempts.push({
      id: String(request.headers["webhook-id"] ?? ""),
      conversation,
      status: answered ? step.status : 0,
      verified,
      at: Date.now(),
      method: request.method ?? "",
      path: request.url ?? "",
      data,
    });
    if (!answered) return;
    const headers: Record<string, string> = {};
    if (step.retryAfter) headers["retry-after"] = step.retryAfter;
    if (step.location) headers.location = step.location;
    send(response, step.status, { ok: step.status < 300 }, headers);
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
      scripts.set(conversation, z.array(Step).parse(JSON.parse(await readBody(request))));
      return send(response, 200, { ok: true });
    }
    if (request.method === "GET" && url.pathname === "/attempts") {
      return send(
        response,
        200,
        attempts.filter((attempt) => attempt.conversation === conversation),
      );
    }
    if (request.method === "POST" && url.pathname === "/down") {
      // Stop listening and drop open connections: new connections are refused.
      await new Promise<void>((resolve) => {
        origin.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return send(response, 200, { ok: true });
    }
    if (request.method === "POST" && url.pathname === "/up") {
      if (!origin.listening) await listen(origin, originPort);
      return send(response, 200, { ok: true });
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

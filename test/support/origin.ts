/**
 * A real local origin for the tests (runs in Node, started by global-setup.ts): scripts/lib/origin.mjs,
 * which verifies every delivery with the `standardwebhooks` package, answers per conversation as a
 * test scripts it (including hanging up without an answer), and records what arrived. A separate
 * control server lets tests in workerd script it and read its log (origin-control.ts).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { z } from "zod";
import { startOrigin as startScriptableOrigin } from "../../scripts/lib/origin.mjs";
import { ROTATED_FORWARD_SECRET, Step } from "./origin-types";

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

/** Starts the origin; it verifies with `secret` (the relay's FORWARD_SECRET in tests) and with ROTATED_FORWARD_SECRET. */
export async function startOrigin(secret: string): Promise<OriginHandle> {
  // 200 unless scripted; no keep-alive: an idle connection would hold up the eviction of the object that opened it.
  const origin = await startScriptableOrigin({ secrets: [secret, ROTATED_FORWARD_SECRET], answer: { status: 200 }, keepAlive: false });
  /** Alerts POSTed to the control server's /alerts (ALERT_URL in the alert tests), as they came: the tests verify them. */
  const alerts: { headers: Record<string, string>; body: string; at: number }[] = [];

  const control = createServer(async (request, response) => {
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    const conversation = url.searchParams.get("conversation") ?? "";
    if (request.method === "POST" && url.pathname === "/script") {
      origin.script(conversation, z.array(Step).parse(JSON.parse(await readBody(request))), url.searchParams.get("path") ?? undefined);
      return send(response, 200, { ok: true });
    }
    // A tiny alert receiver: records every POST (headers and body) and answers as ?status= says.
    if (request.method === "POST" && url.pathname === "/alerts") {
      const body = await readBody(request);
      const headers = Object.fromEntries(
        ["content-type", "webhook-id", "webhook-timestamp", "webhook-signature"].map((name) => [name, String(request.headers[name] ?? "")]),
      );
      alerts.push({ headers, body, at: Date.now() });
      const status = Number(url.searchParams.get("status") ?? "200");
      return send(response, status, { ok: status < 300 }, { connection: "close" });
    }
    if (request.method === "GET" && url.pathname === "/alerts") return send(response, 200, alerts);
    if (request.method === "POST" && url.pathname === "/release") return send(response, 200, { released: origin.release(conversation) });
    if (request.method === "GET" && url.pathname === "/attempts") return send(response, 200, origin.attemptsOf(conversation));
    return send(response, 404, { error: "unknown control route" });
  });
  const controlPort = await listen(control);

  return {
    originPort: origin.port,
    controlPort,
    close: async () => {
      await Promise.all([origin.close(), new Promise((resolve) => control.close(resolve))]);
    },
  };
}

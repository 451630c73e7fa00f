/** `/v1/hooks/<provider>/...`: resolve the provider, then method, size, and the ingest pipeline. */
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { clientAddress, countAuthFailure } from "./auth-limit";
import { claimsStub } from "./claims/stub";
import { storeReceipt } from "./conversation/accept-queue";
import { answerResponse, apiError, limitBody } from "./http";
import { outcomeOf, type Ingestor } from "./ingest";
import { recordCallback } from "./ops/metrics";
import { DEFAULT_MAX_BODY_BYTES, type Answer } from "./providers/provider";
import { providers } from "./ingestors";

/** The body limit of most providers (each may take more: `Provider.maxBodyBytes`). */
export const MAX_BODY_BYTES = DEFAULT_MAX_BODY_BYTES;

type CallbackEnv = { Bindings: Env; Variables: { ingestor: Ingestor; path: string[]; url: URL } };

/** One decoder for every body: `decode` without `stream` keeps no state between calls. */
const utf8 = new TextDecoder();

/** One metrics point per answered callback (docs/metrics.md); `ms` is 0 for refusals made before the pipeline. */
function answered(env: Env, provider: string, answer: Answer, ms = 0, headers: Record<string, string> = {}): Response {
  const outcome = outcomeOf(answer);
  recordCallback(env.METRICS, {
    provider,
    event: outcome?.event ?? "",
    outcome: outcome?.code ?? "unknown",
    refused: outcome?.refused ?? answer.status >= 400,
    status: answer.status,
    ms,
  });
  return answerResponse(answer, headers);
}

const decode = (segment: string): string | undefined => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
};

const resolveProvider = createMiddleware<CallbackEnv>(async function resolveProvider(c, next) {
  // Segments after /v1/hooks.
  // Parsed once per callback: the pipeline reads it too (its query, e.g. Tencent's Sign).
  const url = new URL(c.req.url);
  const [name = "", ...rest] = url.pathname.split("/").slice(3);
  const ingestor = providers.get(decode(name) ?? "");
  if (!ingestor) {
    // The name is the caller's: recorded as "unknown", never as sent.
    recordCallback(c.env.METRICS, { provider: "unknown", outcome: "not_found", refused: true, status: 404, ms: 0 });
    return apiError(404, "not_found", `no callback URL for provider "${name.slice(0, 40)}": use ${[...providers.keys()].join(", ")}`);
  }
  const path = rest.filter((segment) => segment !== "").map(decode);
  // A malformed percent-escape below a provider's URL is that provider's unknown path.
  if (path.some((segment) => segment === undefined)) {
    return answered(c.env, ingestor.name, ingestor.refuse({ status: 404, code: "unknown_path", message: "the URL holds a malformed percent-escape" }));
  }
  c.set("ingestor", ingestor);
  c.set("url", url);
  c.set(
    "path",
    path.filter((segment): segment is string => segment !== undefined),
  );
  await next();
});

const requirePost = createMiddleware<CallbackEnv>(async function requirePost(c, next) {
  const ingestor = c.var.ingestor;
  // A provider that verifies its callback URL with a GET (Meta's hub.challenge) answers it here.
  if (c.req.method === "GET" && ingestor.handshake) {
    const { answer, ...verified } = await ingestor.handshake(c.var.url, {
      env: c.env,
      countAuthFailure: () => countAuthFailure(c.env.AUTH_FAILURES, clientAddress(c.req.raw.headers)),
    });
    const response = answered(c.env, ingestor.name, answer);
    if (!("text" in verified)) return response;
    return new Response(verified.text, { status: 200, headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });
  }
  if (c.req.method !== "POST") {
    const answer = ingestor.refuse({
      status: 405,
      code: "method_not_allowed",
      message: ingestor.handshake ? "callbacks are POST requests (and GET for the handshake)" : "callbacks are POST requests",
    });
    return answered(c.env, ingestor.name, answer, 0, { allow: ingestor.handshake ? "GET, POST" : "POST" });
  }
  await next();
});

// Counts streamed bytes, and drains a slightly larger body before refusing, so that a chunked
// upload still gets the provider's answer (src/http.ts, `limitBody`). Each provider its own limit.
const bodyLimits = new Map<number, ReturnType<typeof limitBody<CallbackEnv>>>();
const limitCallbackBody = createMiddleware<CallbackEnv>(function limitCallbackBody(c, next) {
  const maxBytes = c.var.ingestor.maxBodyBytes;
  let limit = bodyLimits.get(maxBytes);
  if (!limit) {
    limit = limitBody<CallbackEnv>(maxBytes, (c) =>
      answered(c.env, c.var.ingestor.name, c.var.ingestor.refuse({ status: 413, code: "body_too_large", message: `the body is over ${maxBytes} bytes` })),
    );
    bodyLimits.set(maxBytes, limit);
  }
  return limit(c, next);
});

export const callbackRoutes = new Hono<CallbackEnv>().all("/*", resolveProvider, requirePost, limitCallbackBody, async (c) => {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  // Workers' clock moves only across I/O: this measures the pipeline's waits (claim, store), not CPU alone.
  const started = Date.now();
  const answer = await c.var.ingestor.handle(
    { url: c.var.url, path: c.var.path, body: utf8.decode(bytes), bytes, headers: c.req.raw.headers },
    {
      env: c.env,
      now: Date.now(),
      store: (receipt) => storeReceipt(c.env, receipt),
      claim: (claim, conversation) => claimsStub(c.env, claim.key).claim(claim.key, conversation, claim.expiresAt, claim.digest),
      countAuthFailure: () => countAuthFailure(c.env.AUTH_FAILURES, clientAddress(c.req.raw.headers)),
    },
  );
  return answered(c.env, c.var.ingestor.name, answer, Date.now() - started);
});

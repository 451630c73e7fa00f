/** `/v1/hooks/<provider>/...`: resolve the provider, then method, size, and the ingest pipeline. */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import { conversationStub } from "./conversation/stub";
import { answerResponse, apiError } from "./http";
import type { Hook } from "./ingest";
import { hooks } from "./providers";
import { settingsOf } from "./settings";

export const MAX_BODY_BYTES = 64 * 1024;

type HookEnv = { Bindings: Env; Variables: { hook: Hook; path: string[] } };

const resolveHook = createMiddleware<HookEnv>(async function resolveHook(c, next) {
  // Segments after /v1/hooks; a malformed percent-escape cannot name a provider.
  let segments: string[];
  try {
    segments = new URL(c.req.url).pathname.split("/").slice(3).map(decodeURIComponent);
  } catch {
    return apiError(404, "not_found", "no such hook");
  }
  const [name = "", ...path] = segments;
  const hook = hooks.get(name);
  if (!hook) return apiError(404, "not_found", `no hook for provider "${name.slice(0, 40)}": use easemob, tencent or openim`);
  c.set("hook", hook);
  c.set(
    "path",
    path.filter((segment) => segment !== ""),
  );
  await next();
});

const requirePost = createMiddleware<HookEnv>(async function requirePost(c, next) {
  if (c.req.method !== "POST") {
    return answerResponse(c.var.hook.refuse({ status: 405, code: "method_not_allowed", message: "callbacks are POST requests" }), { allow: "POST" });
  }
  await next();
});

const limitBody = bodyLimit({
  maxSize: MAX_BODY_BYTES,
  onError: (c) => answerResponse(c.var.hook.refuse({ status: 413, code: "body_too_large", message: `the body is over ${MAX_BODY_BYTES} bytes` })),
});

export const hookRoutes = new Hono<HookEnv>().all("/*", resolveHook, requirePost, limitBody, async (c) => {
  const answer = await c.var.hook.handle(
    { url: new URL(c.req.url), path: c.var.path, body: await c.req.text(), headers: c.req.raw.headers },
    {
      settings: settingsOf(c.env),
      now: Date.now(),
      store: (receipt) => conversationStub(c.env, receipt.conversation).accept(receipt),
    },
  );
  return answerResponse(answer);
});

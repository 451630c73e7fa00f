/** The Hono app: routes, 404 and one error handler. Wiring only; the logic lives in the modules. */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { apiRoutes } from "./api/routes";
import { hookRoutes } from "./hooks";
import { apiError, jsonResponse } from "./http";
import { ignoredEvents } from "./ingest";
import { log } from "./log";
import { hooks } from "./providers";
import { settingsOf } from "./settings";

export const app = new Hono<{ Bindings: Env }>()
  .get("/healthz", (c) => {
    const result = settingsOf(c.env);
    if (!result.ok) return jsonResponse(500, { status: "misconfigured", problems: result.problems });
    const { settings } = result;
    return jsonResponse(200, {
      status: "ok",
      providers: Object.fromEntries([...hooks.values()].map((hook) => [hook.name, hook.status(settings)])),
      forwarding: settings.ORIGIN_URL ? { enabled: true } : { enabled: false, missing: "ORIGIN_URL" },
      api: settings.ADMIN_TOKEN ? { enabled: true } : { enabled: false, missing: "ADMIN_TOKEN" },
      ignoredEventsSinceStart: Object.fromEntries(ignoredEvents),
    });
  })
  .route("/v1/hooks", hookRoutes)
  .route("/v1", apiRoutes)
  .notFound((c) => apiError(404, "not_found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`))
  .onError((error) => {
    // Middleware (bearer auth) refuses by throwing a response it already shaped.
    if (error instanceof HTTPException) return error.getResponse();
    log("error", "unhandled", { error: String(error) });
    return apiError(500, "internal_error", "the relay failed to handle this request");
  });

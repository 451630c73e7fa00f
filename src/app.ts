/** The Hono app: routes, 404 and one error handler. Wiring only; the logic lives in the modules. */
import { Hono } from "hono";
import { apiRoutes } from "./api/routes";
import { callbackRoutes } from "./callback-routes";
import { dashboardRoutes } from "./dashboard/routes";
import { healthOf } from "./health";
import { apiError, jsonResponse } from "./http";
import { log } from "./log";

export const app = new Hono<{ Bindings: Env }>()
  .get("/healthz", (c) => {
    const health = healthOf(c.env);
    return jsonResponse(health.status === "down" ? 503 : 200, health);
  })
  .route("/v1/hooks", callbackRoutes)
  .route("/v1", apiRoutes)
  .route("/dashboard", dashboardRoutes)
  .notFound((c) => apiError(404, "not_found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`))
  .onError((error) => {
    log("error", "unhandled", { error: String(error) });
    return apiError(500, "internal_error", "the relay failed to handle this request");
  });

/** The Hono app: routes, 404 and one error handler. Wiring only; the logic lives in the modules. */
import { Hono } from "hono";
import { apiRoutes } from "./api/routes";
import { callbackRoutes } from "./callback-routes";
import { assetPath, ICON } from "./dashboard/assets";
import { dashboardRoutes } from "./dashboard/routes";
import { healthOf } from "./health";
import { apiError, jsonResponse } from "./http";
import { log } from "./log";

export const app = new Hono<{ Bindings: Env }>()
  .get("/healthz", async (c) => {
    const health = await healthOf(c.env);
    return jsonResponse(health.status === "down" ? 503 : 200, health);
  })
  // Browsers ask for it by this name when a page declares no icon: the dashboard's (its pages link
  // it). 302: the icon's hashed name changes with its content.
  .get("/favicon.ico", (c) => c.redirect(assetPath(ICON), 302))
  .route("/v1/hooks", callbackRoutes)
  .route("/v1", apiRoutes)
  .route("/dashboard", dashboardRoutes)
  .notFound((c) => apiError(404, "not_found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`))
  .onError((error) => {
    log("error", "unhandled", { error: String(error) });
    return apiError(500, "internal_error", "the relay failed to handle this request");
  });

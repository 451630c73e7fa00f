/**
 * The operators' dashboard, served by the Worker under /dashboard (docs/dashboard.md):
 * server-rendered pages over the same data as the API, a session cookie instead of the Bearer
 * token, CSRF checks on every POST and a strict Content-Security-Policy on every page.
 *
 * Order matters: Hono runs handlers in the order they are registered, so the live-tail route comes
 * first and answers its WebSocket upgrade untouched (no middleware may wrap or copy a 101
 * response); the assets come before the session check (they hold nothing private), and every
 * page after it.
 */
import { Hono, type Context } from "hono";
import { csrf } from "hono/csrf";
import { createMiddleware } from "hono/factory";
import { html } from "hono/html";
import { HTTPException } from "hono/http-exception";
import type { JSX } from "hono/jsx/jsx-runtime";
import { secureHeaders } from "hono/secure-headers";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { clientAddress, countAuthFailure } from "../auth-limit";
import { openLiveTail } from "../conversation/live-tail";
import { conversationStub } from "../conversation-stub";
import { timingSafeEqual } from "../crypto/timing-safe";
import { apiError, jsonResponse, limitBody } from "../http";
import { log } from "../log";
import { indexDb } from "../ops/conversation-index";
import { ReplayFilter } from "../ops/replay-job";
import { conversationsPage, destinationDeadLettersPage } from "../queries/conversations";
import { destinationsOverview, setPaused } from "../queries/destinations";
import { replayStatus, startReplayJob } from "../queries/replays";
import { apiAccessOf, settingsOf } from "../settings";
import { ASSET_CACHE_CONTROL, assetNamed } from "./assets";
import { INDEX_PAGE, loadConversation, loadOverview, Requeued } from "./data";
import {
  ConversationKey,
  ConversationQuery,
  ConversationsQuery,
  DeadLettersFlash,
  DeadLettersQuery,
  describeInvalid,
  DestinationPathName,
  DestinationsFlash,
  LiveQuery,
  LoginForm,
  LoginQuery,
  NextPath,
  ReplayAllForm,
  ReplayConversationForm,
} from "./inputs";
import { conversationPath, ErrorPanel, IndexOff } from "./layout";
import { load } from "./load";
import { ConversationPage } from "./pages/conversation";
import { ConversationsPageView } from "./pages/conversations";
import { DeadLettersPage } from "./pages/dead-letters";
import { DestinationsPage } from "./pages/destinations";
import { LivePage } from "./pages/live";
import { DisabledPage, LoginPage, MessagePage } from "./pages/messages";
import { OverviewPage } from "./pages/overview";
import { ReplayPage } from "./pages/replay";
import { endSession, hasSession, startSession } from "./session";

type DashboardEnv = { Bindings: Env; Variables: { adminToken: string } };
type DashboardContext = Context<DashboardEnv>;

/**
 * Forms are a few fields: at most a 4096-character token or conversation key (keys are ASCII,
 * so three times that URL-encoded) and a 2048-character path. Anything larger is not one of ours.
 */
export const MAX_FORM_BYTES = 16 * 1024;

/** Only the two assets run or style a page; nothing inline, nothing from elsewhere. */
const pageHeaders = secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'none'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'"],
    imgSrc: ["'self'", "data:"],
    connectSrc: ["'self'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
    baseUri: ["'none'"],
  },
  xFrameOptions: "DENY",
});

function render(c: DashboardContext, status: ContentfulStatusCode, page: JSX.Element): Response | Promise<Response> {
  return c.html(html`<!doctype html>${page}`, status);
}

/** The dashboard is on exactly when the API is: with a valid ADMIN_TOKEN, which is also the sign-in token. */
function adminTokenOf(env: Env): { ok: true; token: string } | { ok: false; reason: string } {
  const access = apiAccessOf(settingsOf(env));
  return access.state === "on" ? { ok: true, token: access.token } : { ok: false, reason: `The dashboard is off: ${access.reason}.` };
}

const requireEnabled = createMiddleware<DashboardEnv>(async function requireEnabled(c, next) {
  const admin = adminTokenOf(c.env);
  if (!admin.ok) return render(c, 503, <DisabledPage reason={admin.reason} />);
  c.set("adminToken", admin.token);
  await next();
});

/** Pages that show relay data are never stored by a browser or a proxy. */
const noStore = createMiddleware<DashboardEnv>(async function noStore(c, next) {
  await next();
  c.header("cache-control", "no-store");
});

/**
 * A page without a session sends a browser to the sign-in form (coming back here after); a POST
 * or the replay progress JSON is refused 401 instead (a redirect would lose the form).
 */
const requireSession = createMiddleware<DashboardEnv>(async function requireSession(c, next) {
  const session = await load("checking the session", () => hasSession(c, c.env, c.var.adminToken, Date.now()));
  // Sign-outs live in a Durable Object (session.ts): when it cannot answer, refuse rather than guess.
  if (!session.ok) return failedPage(c, 503, "Could not check your session.", session.error);
  if (session.value) return next();
  const url = new URL(c.req.url);
  if (url.pathname.endsWith(".json")) return apiError(401, "unauthorized", "no dashboard session: sign in at /dashboard/login");
  if (c.req.method !== "GET") {
    return render(
      c,
      401,
      <MessagePage title="Signed out" signedIn={false} testId="signed-out">
        <p>
          Your session has ended. <a href="/dashboard/login">Sign in</a> again, then repeat what you were doing.
        </p>
      </MessagePage>,
    );
  }
  const back = NextPath.safeParse(url.pathname + url.search);
  return c.redirect(back.success ? `/dashboard/login?next=${encodeURIComponent(back.data)}` : "/dashboard/login", 303);
});

const tooLarge = (c: DashboardContext) =>
  render(
    c,
    413,
    <MessagePage title="Too large" signedIn={true} testId="too-large">
      <p>That form was larger than any of this dashboard's.</p>
    </MessagePage>,
  );

/** Every body, counted as it streams: a chunked upload is refused past the limit, never read whole (src/http.ts). */
const limitForm = limitBody<DashboardEnv>(MAX_FORM_BYTES, tooLarge);

const notFoundPage = (c: DashboardContext, message: string) =>
  render(
    c,
    404,
    <MessagePage title="Not found" signedIn={true} testId="not-found">
      <p>{message}</p>
      <p>
        <a href="/dashboard">Overview</a>
      </p>
    </MessagePage>,
  );

const failedPage = (c: DashboardContext, status: ContentfulStatusCode, title: string, message: string) =>
  render(
    c,
    status,
    <MessagePage title={title} signedIn={true} testId="failed">
      <ErrorPanel title={title} message={message} />
    </MessagePage>,
  );

export const dashboardRoutes = new Hono<DashboardEnv>()
  // Live tail (docs/dashboard.md, "Live tail"): the session and the Origin are checked here, since
  // a browser sends cookies with a cross-site WebSocket handshake (cross-site WebSocket hijacking).
  .get("/conversations/:key/live", async (c) => {
    const admin = adminTokenOf(c.env);
    if (!admin.ok) return new Response(admin.reason, { status: 503 });
    const session = await load("checking the session", () => hasSession(c, c.env, admin.token, Date.now()));
    if (!session.ok) return new Response("could not check the dashboard session: try again in a moment", { status: 503 });
    if (!session.value) return new Response("no dashboard session: sign in at /dashboard/login", { status: 403 });
    if (c.req.header("origin") !== new URL(c.req.url).origin) return new Response("the live tail opens from this dashboard's own pages only", { status: 403 });
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("expected a WebSocket upgrade", { status: 426, headers: { upgrade: "websocket" } });
    }
    const key = ConversationKey.safeParse(c.req.param("key"));
    if (!key.success) return new Response("the conversation key must be 1 to 4096 characters", { status: 400 });
    return openLiveTail(c.env, key.data, c.req.raw);
  })
  .use("*", pageHeaders)
  .get("/assets/:name", (c) => {
    const asset = assetNamed(c.req.param("name"));
    if (!asset) return c.text("no such asset", 404, { "cache-control": "no-store" });
    return c.body(asset.body, 200, { "content-type": asset.contentType, "cache-control": ASSET_CACHE_CONTROL });
  })
  .use("*", noStore, requireEnabled, csrf(), limitForm)
  .get("/login", async (c) => {
    const query = LoginQuery.parse(c.req.query());
    // Signed in already: on to the page. A session that cannot be checked gets the form.
    const session = await load("checking the session", () => hasSession(c, c.env, c.var.adminToken, Date.now()));
    if (session.ok && session.value) return c.redirect(query.next ?? "/dashboard", 303);
    return render(c, 200, <LoginPage next={query.next} />);
  })
  .post("/login", async (c) => {
    const body = await c.req.parseBody();
    const form = LoginForm.safeParse(body);
    if (!form.success) return render(c, 400, <LoginPage error={`Invalid form: ${describeInvalid(form.error)}`} />);
    const { token, next } = form.data;
    if (!(await timingSafeEqual(token.trim(), c.var.adminToken))) {
      // Counted like the API's failed Bearer tokens (src/auth-limit.ts).
      const limit = await countAuthFailure(c.env.AUTH_FAILURES, clientAddress(c.req.raw.headers));
      if (limit.limited) {
        c.header("retry-after", String(limit.retryAfterSeconds));
        return render(c, 429, <LoginPage next={next} error="Too many failed sign-ins from this address: try again in a minute." />);
      }
      return render(c, 401, <LoginPage next={next} error="That is not the admin token (ADMIN_TOKEN)." />);
    }
    await startSession(c, c.var.adminToken, Date.now());
    return c.redirect(next ?? "/dashboard", 303);
  })
  // Ends the session on the server too (session.ts): a copied cookie is refused from now on.
  .post("/logout", async (c) => {
    const ended = await load("signing out", () => endSession(c, c.env, c.var.adminToken, Date.now()));
    if (!ended.ok) return failedPage(c, 503, "Could not sign out.", `${ended.error}. Your session is still valid: try again.`);
    return c.redirect("/dashboard/login", 303);
  })
  .use("*", requireSession)
  .get("/", async (c) => render(c, 200, <OverviewPage data={await loadOverview(c.env, Date.now())} />))
  .get("/conversations", async (c) => {
    const query = ConversationsQuery.safeParse(c.req.query());
    if (!query.success) {
      return render(c, 400, <ConversationsPageView filters={{}} result={{ kind: "invalid", message: describeInvalid(query.error) }} />);
    }
    const { provider, status, prefix, cursor } = query.data;
    const filters = { provider, status, prefix };
    const db = indexDb(c.env);
    if (!db) return render(c, 503, <ConversationsPageView filters={filters} result={{ kind: "index-off" }} />);
    const page = await load("reading the index", () => conversationsPage(db, { provider, status, prefix, cursor, limit: INDEX_PAGE }));
    return render(c, page.ok ? 200 : 503, <ConversationsPageView filters={filters} result={{ kind: "loaded", page }} />);
  })
  // Several conversations' live tails in one feed: the page names them, its script opens one
  // socket each on the route above (docs/dashboard.md, "Live tail").
  .get("/live", (c) => {
    const query = LiveQuery.safeParse({ conversation: c.req.queries("conversation") ?? [] });
    if (!query.success) return render(c, 400, <LivePage result={{ kind: "invalid", message: describeInvalid(query.error) }} />);
    return render(c, 200, <LivePage result={{ kind: "watching", conversations: query.data.conversation }} />);
  })
  .get("/conversations/:key", async (c) => {
    const key = ConversationKey.safeParse(c.req.param("key"));
    if (!key.success) return notFoundPage(c, "A conversation key is 1 to 4096 characters.");
    const conversation = key.data;
    const query = ConversationQuery.parse(c.req.query());
    const recentLimit = settingsOf(c.env).settings.RECENT_LIMIT;
    const data = await load("reading the conversation", () => loadConversation(c.env, conversation, recentLimit, query.readers));
    if (!data.ok) return failedPage(c, 503, "Could not read this conversation.", data.error);
    if (!data.value.summary && query.watch !== "1") {
      return render(
        c,
        404,
        <MessagePage title="Conversation not found" signedIn={true} testId="not-found">
          <p>The relay has never stored a receipt of this conversation.</p>
          <p>
            <a href={`${conversationPath(conversation)}?watch=1`} data-testid="watch-link">
              Watch it anyway
            </a>
            : its page waits for the first receipt on the live tail.
          </p>
        </MessagePage>,
      );
    }
    return render(c, 200, <ConversationPage data={data.value} requeued={query.requeued} />);
  })
  // Re-queues this conversation's dead letters, then back to where the button was.
  .post("/conversations/:key/replay", async (c) => {
    const key = ConversationKey.safeParse(c.req.param("key"));
    if (!key.success) return notFoundPage(c, "A conversation key is 1 to 4096 characters.");
    const body = await c.req.parseBody();
    const form = ReplayConversationForm.safeParse(body);
    if (!form.success) return failedPage(c, 400, "Invalid replay.", describeInvalid(form.error));
    const { back, destination } = form.data;
    const retried = await load("re-queueing the dead letters", async () =>
      Requeued.parse(await conversationStub(c.env, key.data).retryDeadLetters(destination)),
    );
    if (!retried.ok) return failedPage(c, 503, "Could not re-queue the dead letters.", retried.error);
    if (!retried.value) return notFoundPage(c, "The relay has never stored a receipt of this conversation.");
    const requeued = `requeued=${retried.value.requeued}`;
    const ofDestination = destination !== undefined ? `&destination=${encodeURIComponent(destination)}` : "";
    return c.redirect(back === "dead-letters" ? `/dashboard/dead-letters?${requeued}${ofDestination}` : `${conversationPath(key.data)}?${requeued}`, 303);
  })
  .get("/dead-letters", async (c) => {
    const { requeued } = DeadLettersFlash.parse(c.req.query());
    const query = DeadLettersQuery.safeParse(c.req.query());
    if (!query.success) return render(c, 400, <DeadLettersPage filters={{}} result={{ kind: "invalid", message: describeInvalid(query.error) }} />);
    const { provider, prefix, cursor, destination } = query.data;
    const filters = { provider, prefix, destination };
    const db = indexDb(c.env);
    if (!db) return render(c, 503, <DeadLettersPage filters={filters} result={{ kind: "index-off" }} />);
    // The relay-wide dead letters are the index's failing rows (failed > 0); of one destination, those whose part of the row has failed > 0.
    const page = await load("reading the index", () =>
      destination !== undefined
        ? destinationDeadLettersPage(db, destination, { provider, prefix, cursor, limit: INDEX_PAGE })
        : conversationsPage(db, { provider, prefix, cursor, status: "failing", limit: INDEX_PAGE }),
    );
    return render(c, page.ok ? 200 : 503, <DeadLettersPage filters={filters} result={{ kind: "loaded", page }} requeued={requeued} />);
  })
  // Every destination with its figures, Pause/Resume and a replay of its dead letters.
  .get("/destinations", async (c) => {
    const flash = DestinationsFlash.parse(c.req.query());
    const overview = await load("reading the destinations", () => destinationsOverview(c.env, Date.now(), "dashboard"));
    return render(c, overview.ok ? 200 : 503, <DestinationsPage result={overview} flash={flash} />);
  })
  .post("/destinations/:name/:action{pause|resume}", async (c) => {
    const name = DestinationPathName.safeParse(c.req.param("name"));
    if (!name.success) return notFoundPage(c, "No destination has this name.");
    const pause = c.req.param("action") === "pause";
    const result = await load(pause ? "pausing the destination" : "resuming the destination", () => setPaused(c.env, name.data, pause));
    if (!result.ok) return failedPage(c, 503, pause ? "Could not pause." : "Could not resume.", result.error);
    if (!result.value.ok) {
      if (result.value.status === 404) return notFoundPage(c, result.value.message);
      return failedPage(c, 503, pause ? "Could not pause." : "Could not resume.", result.value.message);
    }
    return c.redirect(`/dashboard/destinations?${pause ? "paused" : "resumed"}=${encodeURIComponent(name.data)}`, 303);
  })
  // Replay all: a durable job (src/ops/replay-job.ts), then its progress page.
  .post("/replays", async (c) => {
    const body = await c.req.parseBody();
    const form = ReplayAllForm.safeParse(body);
    const filter = form.success ? ReplayFilter.safeParse(form.data) : form;
    if (!filter.success) return failedPage(c, 400, "Invalid replay filter.", describeInvalid(filter.error));
    if (!indexDb(c.env)) {
      return render(
        c,
        503,
        <MessagePage title="Replays need the index" signedIn={true} testId="failed">
          <IndexOff />
        </MessagePage>,
      );
    }
    const job = await load("starting the replay", () => startReplayJob(c.env, filter.data));
    if (!job.ok) return failedPage(c, 503, "Could not start the replay.", job.error);
    return c.redirect(`/dashboard/replays/${job.value.id}`, 303);
  })
  // `<id>` is the progress page; `<id>.json` what its script polls.
  .get("/replays/:name", async (c) => {
    const name = c.req.param("name");
    const asJson = name.endsWith(".json");
    const id = asJson ? name.slice(0, -".json".length) : name;
    const job = await load("reading the replay", () => replayStatus(c.env, id));
    if (asJson) {
      if (!job.ok) return apiError(503, "replay_unavailable", job.error);
      return job.value ? jsonResponse(200, job.value) : apiError(404, "replay_not_found", "no replay with this id");
    }
    if (!job.ok) return failedPage(c, 503, "Could not read the replay.", job.error);
    if (!job.value) return notFoundPage(c, "No replay with this id.");
    return render(c, 200, <ReplayPage job={job.value} />);
  })
  .get("/*", (c) => notFoundPage(c, "No dashboard page here."))
  .onError((error, c) => {
    if (error instanceof HTTPException && error.status === 403) {
      // hono/csrf: a form posted from another site (or without Origin and Sec-Fetch-Site).
      return render(
        c,
        403,
        <MessagePage title="Refused" signedIn={false} testId="csrf-refused">
          <p>This form was not sent from this dashboard's own pages, so it was refused. Reload the page and try again.</p>
        </MessagePage>,
      );
    }
    if (error instanceof HTTPException) return error.getResponse();
    log("error", "dashboard_failed", { what: "page", error: String(error) });
    return render(
      c,
      500,
      <MessagePage title="Something failed" signedIn={false} testId="failed">
        <p>The dashboard could not show this page; the relay logged why. Try again in a moment.</p>
      </MessagePage>,
    );
  });

/**
 * The app's API (Bearer ADMIN_TOKEN), one sub-app behind one check: a conversation's receipts,
 * read state, outbox and summary, replay of dead letters, the conversation index, destinations and
 * stats. This file routes, validates each request (query strings through Hono's validator, with
 * zod) and answers; the data comes from src/queries, the same functions the dashboard calls. Reads
 * come from the KV read model unless `?consistent=true` asks the object, which is the truth.
 */
import { Hono, type Context } from "hono";
import { createMiddleware } from "hono/factory";
import { validator } from "hono/validator";
import { z } from "zod";
import { DeliveryFilter, MAX_DELIVERIES_PAGE } from "../conversation/object";
import { Snapshot, snapshotKey } from "../conversation/snapshot";
import { conversationStub } from "../conversation-stub";
import { timingSafeEqual } from "../crypto/timing-safe";
import { apiError, jsonResponse, limitBody } from "../http";
import { log } from "../log";
import { DestinationName } from "../ops/replay-job";
import { conversationSummary } from "../queries/conversation-summary";
import { conversationsPage, Cursor, destinationDeadLettersPage, encodeCursor, ListQuery } from "../queries/conversations";
import { destinationsOverview } from "../queries/destinations";
import { replayStatus } from "../queries/replays";
import { startReplay, withIndex } from "./conversations";
import { pauseAnswer } from "./destinations";
import { describeIssue } from "../providers/provider";
import { clientAddress, countAuthFailure } from "../auth-limit";
import { apiAccessOf, settingsOf, type Settings } from "../settings";
import { relayStats, StatsWindow } from "../ops/stats";
import { MAX_READS_PAGE, ReadsPage } from "../conversation/read-state";

/** Readers per page of GET …/reads unless `limit` says otherwise (at most MAX_READS_PAGE). */
const READS_PAGE = 100;

type ApiEnv = { Bindings: Env; Variables: { settings: Settings; conversation: string } };

/** The API is on only with a valid ADMIN_TOKEN; checked before the token itself. */
const requireApiEnabled = createMiddleware<ApiEnv>(async function requireApiEnabled(c, next) {
  const relay = settingsOf(c.env);
  const access = apiAccessOf(relay);
  if (access.state === "off") return apiError(503, "api_disabled", `the API is off: ${access.reason}`);
  c.set("settings", relay.settings);
  await next();
});

/**
 * `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. Written out rather than
 * hono/bearer-auth, which refuses tokens outside RFC 6750's token68 characters: any ADMIN_TOKEN
 * an operator pastes in must work.
 */
const requireAdminToken = createMiddleware<ApiEnv>(async function requireAdminToken(c, next) {
  const header = c.req.header("authorization");
  if (!header) {
    return apiError(401, "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>", { "www-authenticate": 'Bearer realm="receipt-relay"' });
  }
  const token = /^Bearer +(.+)$/i.exec(header.trim())?.[1];
  if (!token) {
    return apiError(400, "invalid_request", "the Authorization header must be Bearer <token>", { "www-authenticate": 'Bearer error="invalid_request"' });
  }
  if (!(await timingSafeEqual(token, c.var.settings.ADMIN_TOKEN ?? ""))) {
    const limit = await countAuthFailure(c.env.AUTH_FAILURES, clientAddress(c.req.raw.headers));
    if (limit.limited) {
      return apiError(429, "too_many_failures", "too many failed authentications from this address: try again later", {
        "retry-after": String(limit.retryAfterSeconds),
      });
    }
    return apiError(401, "unauthorized", "the bearer token does not match ADMIN_TOKEN", { "www-authenticate": 'Bearer error="invalid_token"' });
  }
  await next();
});

const MAX_CONVERSATION_CHARS = 4096;
const Conversation = z.string().min(1).max(MAX_CONVERSATION_CHARS);
const Consistent = z
  .enum(["true", "false"])
  .optional()
  .transform((value) => value === "true");
/** GET /v1/dead-letters: the index's filters but `status` (failing, always), and `destination`. */
const { status: _status, ...deadLettersShape } = ListQuery;
const DeadLettersQuery = { ...deadLettersShape, destination: DestinationName.optional() };

/**
 * The query string validated by Hono's validator with `shape` (unknown parameters are ignored):
 * 400 `invalid_query` naming the first bad parameter. `shape` may depend on the request's settings.
 * A parameter given twice arrives as an array, which no shape takes.
 */
function validQuery<T extends z.ZodRawShape>(shape: T | ((c: Context<ApiEnv>) => T)) {
  return validator("query", (values, c: Context<ApiEnv>) => {
    const result = z.object(typeof shape === "function" ? shape(c) : shape).safeParse(values);
    if (!result.success) return apiError(400, "invalid_query", describeIssue(result.error.issues).replace(/^field /, "query parameter "));
    return result.data;
  });
}

/** `limit` of the newest receipts: at most RECENT_LIMIT, the receipts an object keeps listing. */
const recentLimited = (c: Context<ApiEnv>) => ({ limit: z.coerce.number().int().min(1).max(c.var.settings.RECENT_LIMIT).optional() });

/**
 * The conversation's KV snapshot: "absent" when none is published yet; "unreadable" when KV fails,
 * and then the object answers instead (KV is a cache of it: a KV outage costs latency, not answers).
 */
async function readSnapshot(env: Env, conversation: string): Promise<Snapshot | "absent" | "unreadable"> {
  let stored: unknown;
  try {
    stored = await env.RECEIPTS_KV.get(await snapshotKey(conversation), "json");
  } catch (error) {
    log("warn", "kv_read_failed", { conversation, error: String(error) });
    return "unreadable";
  }
  if (stored === null) return "absent";
  const parsed = Snapshot.safeParse(stored);
  return parsed.success && parsed.data.conversation === conversation ? parsed.data : "absent";
}

/**
 * API bodies are small JSON filters: the largest valid one holds a 4096-character conversation key
 * (keys are ASCII). Counted as they stream (src/http.ts): a chunked upload is refused past it, unread.
 */
export const MAX_API_BODY_BYTES = 16 * 1024;
const limitApiBody = limitBody<ApiEnv>(MAX_API_BODY_BYTES, () => apiError(413, "body_too_large", `the body is over ${MAX_API_BODY_BYTES} bytes`));

const neverSeen = () => apiError(404, "conversation_not_found", "the relay has never stored a receipt of this conversation");

const replayNotFound = () => apiError(404, "replay_not_found", "no replay with this id");

const notYet = () =>
  apiError(
    404,
    "conversation_not_found",
    "no snapshot of this conversation yet; the read model lags the store by a second or so: add ?consistent=true to ask the store",
  );

const validateConversation = createMiddleware<ApiEnv>(async function validateConversation(c, next) {
  const conversation = Conversation.safeParse(c.req.param("conversation"));
  if (!conversation.success) return apiError(400, "invalid_conversation", `the conversation key must be 1 to ${MAX_CONVERSATION_CHARS} characters`);
  c.set("conversation", conversation.data);
  await next();
});

export const apiRoutes = new Hono<ApiEnv>()
  // Every API route behind one check, made before routing: without the token, no /v1 path (an
  // unknown one included) says whether it exists. (/v1/hooks is routed before this app.)
  .use("*", requireApiEnabled, requireAdminToken)
  .use("/conversations/:conversation/*", validateConversation)
  // The relay-wide index (D1): every conversation, filtered, in key order, a page at a time.
  .get("/conversations", validQuery(ListQuery), async (c) => {
    const params = c.req.valid("query");
    return withIndex(c.env, async (db) => jsonResponse(200, await conversationsPage(db, params)));
  })
  // One conversation from its object: counts, last delivery, newest receipts with their delivery state.
  .get("/conversations/:conversation", validateConversation, validQuery(recentLimited), async (c) => {
    const summary = await conversationSummary(c.env, c.var.conversation, c.req.valid("query").limit ?? c.var.settings.RECENT_LIMIT);
    return summary ? jsonResponse(200, summary) : neverSeen();
  })
  // Bulk replay of every matching dead letter, as a durable job.
  .post("/replays", limitApiBody, (c) => startReplay(c.env, c.req.raw))
  .get("/replays/:id", async (c) => {
    const status = await replayStatus(c.env, c.req.param("id"));
    return status ? jsonResponse(200, status) : replayNotFound();
  })
  // Relay-wide figures from the index (src/ops/stats.ts).
  .get("/stats", validQuery({ window: StatsWindow.optional() }), async (c) => {
    const { window = "24h" } = c.req.valid("query");
    return withIndex(c.env, async (db) => jsonResponse(200, await relayStats(db, window, Date.now())));
  })
  .get(
    "/conversations/:conversation/receipts",
    validQuery((c) => ({ ...recentLimited(c), consistent: Consistent })),
    async (c) => {
      const conversation = c.var.conversation;
      const params = c.req.valid("query");
      const limit = params.limit ?? c.var.settings.RECENT_LIMIT;
      const snapshot = params.consistent || c.var.settings.SNAPSHOT_INTERVAL_SECONDS === 0 ? "unreadable" : await readSnapshot(c.env, conversation);
      if (snapshot === "absent") return notYet();
      if (snapshot === "unreadable") {
        const receipts = await conversationStub(c.env, conversation).recent(limit);
        if (!receipts) return neverSeen();
        return jsonResponse(200, { conversation: conversation, consistent: true, receipts });
      }
      return jsonResponse(200, { conversation: conversation, consistent: false, updatedAt: snapshot.updatedAt, receipts: snapshot.receipts.slice(0, limit) });
    },
  )
  // Read state in reader order, a page at a time (docs/design.md, "Bounds"): the snapshot holds
  // the newest MAX_SNAPSHOT_READERS readers (`readsTruncated` when there are more); the object all.
  .get(
    "/conversations/:conversation/reads",
    validQuery({ consistent: Consistent, limit: z.coerce.number().int().min(1).max(MAX_READS_PAGE).optional(), cursor: Cursor }),
    async (c) => {
      const conversation = c.var.conversation;
      const params = c.req.valid("query");
      const { limit = READS_PAGE, cursor } = params;
      const snapshot = params.consistent || c.var.settings.SNAPSHOT_INTERVAL_SECONDS === 0 ? "unreadable" : await readSnapshot(c.env, conversation);
      if (snapshot === "absent") return notYet();
      if (snapshot === "unreadable") {
        // Validated rather than inferred through the RPC stub's types (too deep for tsc).
        const page = ReadsPage.nullable().parse(await conversationStub(c.env, conversation).readStates(limit, cursor));
        if (!page) return neverSeen();
        const next = page.next !== undefined ? { cursor: encodeCursor(page.next) } : {};
        return jsonResponse(200, { conversation, consistent: true, readers: page.readers, reads: page.reads, ...next });
      }
      const rest = cursor === undefined ? snapshot.reads : snapshot.reads.filter((read) => read.reader > cursor);
      const reads = rest.slice(0, limit);
      const last = rest.length > limit ? reads[reads.length - 1] : undefined;
      return jsonResponse(200, {
        conversation,
        consistent: false,
        updatedAt: snapshot.updatedAt,
        readers: snapshot.readers ?? snapshot.reads.length,
        ...(snapshot.readsTruncated ? { readsTruncated: true } : {}),
        reads,
        ...(last ? { cursor: encodeCursor(last.reader) } : {}),
      });
    },
  )
  // One entry per receipt and destination (every destination of a receipt on the same page).
  .get(
    "/conversations/:conversation/deliveries",
    validQuery({
      status: DeliveryFilter.optional(),
      limit: z.coerce.number().int().min(1).max(MAX_DELIVERIES_PAGE).optional(),
      after: z.coerce.number().int().min(0).optional(),
      destination: DestinationName.optional(),
    }),
    async (c) => {
      const conversation = c.var.conversation;
      const params = c.req.valid("query");
      const limit = params.limit ?? 100;
      const deliveries = await conversationStub(c.env, conversation).deliveries(params.status, limit, params.after ?? 0, params.destination);
      if (!deliveries) return neverSeen();
      // A full page (a receipt's destinations are never split, so it may hold a few more) may have more behind it: `after` continues from its last seq.
      const last = deliveries.length >= limit ? deliveries[deliveries.length - 1] : undefined;
      return jsonResponse(200, { conversation, deliveries, ...(last ? { after: last.seq } : {}) });
    },
  )
  // Re-queues the dead letters, of every destination or of `destination` (query parameter or JSON body).
  .post("/conversations/:conversation/deliveries/retry", limitApiBody, async (c) => {
    const conversation = c.var.conversation;
    const destination = await destinationParameter(c.req.raw, c.req.query("destination"));
    if (!destination.ok) return destination.response;
    const retried = await conversationStub(c.env, conversation).retryDeadLetters(destination.value);
    if (!retried) return neverSeen();
    const { requeued } = retried;
    return jsonResponse(200, { conversation: conversation, ...(destination.value !== undefined ? { destination: destination.value } : {}), requeued });
  })
  // Conversations holding dead letters: the index's failing view (D1), with the same paging; of
  // one destination with `destination` (each row then with that destination's part).
  .get("/dead-letters", validQuery(DeadLettersQuery), async (c) => {
    const { destination, ...list } = c.req.valid("query");
    return withIndex(c.env, async (db) =>
      jsonResponse(
        200,
        destination !== undefined ? await destinationDeadLettersPage(db, destination, list) : await conversationsPage(db, { ...list, status: "failing" }),
      ),
    );
  })
  // Drops one conversation's dead letters of one destination (a removed one, say): settled as skipped, never sent.
  .delete("/dead-letters", validQuery({ destination: DestinationName, conversation: Conversation }), async (c) => {
    const { destination, conversation } = c.req.valid("query");
    const purged = await conversationStub(c.env, conversation).purgeDeadLetters(destination);
    if (!purged) return neverSeen();
    return jsonResponse(200, { conversation, destination, purged: purged.purged });
  })
  // Every destination: configuration, paused state and figures from the index (src/queries/destinations.ts).
  .get("/destinations", async (c) => jsonResponse(200, await destinationsOverview(c.env)))
  .post("/destinations/:name/pause", limitApiBody, (c) => pauseAnswer(c.env, c.req.param("name"), true))
  .post("/destinations/:name/resume", limitApiBody, (c) => pauseAnswer(c.env, c.req.param("name"), false));

/** An optional `destination`, from the query or a JSON body `{ "destination": … }` (an empty body: none). */
async function destinationParameter(
  request: Request,
  fromQuery: string | undefined,
): Promise<{ ok: true; value: string | undefined } | { ok: false; response: Response }> {
  let fromBody: unknown;
  const text = await request.text();
  if (text.trim() !== "") {
    try {
      fromBody = z.object({ destination: z.unknown().optional() }).loose().parse(JSON.parse(text)).destination;
    } catch {
      return { ok: false, response: apiError(400, "invalid_body", 'the body must be empty or JSON: { "destination"?: string }') };
    }
  }
  const given = fromQuery ?? fromBody;
  if (given === undefined) return { ok: true, value: undefined };
  const parsed = DestinationName.safeParse(given);
  if (!parsed.success) return { ok: false, response: apiError(400, "invalid_query", `destination ${parsed.error.issues[0]?.message ?? "is not valid"}`) };
  return { ok: true, value: parsed.data };
}

/**
 * The API's answers over the conversation index (D1) and replay jobs: the 503s that name the fix
 * when the index is off or failing, and POST /v1/replays's body. The data comes from src/queries.
 */
import { apiError, jsonResponse } from "../http";
import { describeIssue } from "../providers/provider";
import { indexDb, indexProblemOf, noteIndexProblem, reportIndexProblem, type IndexProblem } from "../ops/conversation-index";
import { parseReplayFilter } from "../ops/replay-job";
import { INDEX_OFF } from "../queries/conversations";
import { IndexUnavailableError, startReplayJob } from "../queries/replays";

const indexDisabled = () => apiError(503, "index_disabled", INDEX_OFF);

/** The index is bound but cannot be used (tables missing, D1 failing): 503 with what to do, never 500. */
const indexUnavailable = (problem: IndexProblem) => apiError(503, "index_unavailable", problem.message);

/**
 * An API answer that reads the index: 503 `index_disabled` without `DB`, 503 `index_unavailable`
 * when D1 fails (logged once per kind, and shown by /healthz at once), never 500.
 */
export async function withIndex(env: Env, read: (db: D1Database) => Promise<Response>): Promise<Response> {
  const db = indexDb(env);
  if (!db) return indexDisabled();
  try {
    const response = await read(db);
    reportIndexProblem("api", undefined);
    return response;
  } catch (error) {
    const problem = error instanceof IndexUnavailableError ? error.problem : indexProblemOf(error);
    noteIndexProblem(db, problem, Date.now());
    reportIndexProblem("api", problem);
    return indexUnavailable(problem);
  }
}

/** POST /v1/replays: the body is the job's filter (empty: every dead letter); 202 with the job's progress. */
export async function startReplay(env: Env, request: Request): Promise<Response> {
  if (!indexDb(env)) return indexDisabled();
  let body: unknown;
  try {
    const text = await request.text();
    body = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    return apiError(
      400,
      "invalid_body",
      'the body must be JSON: { "provider"?: string, "prefix"?: string, "destination"?: string } or { "delivered": { "conversation"?: string, "since"?: ISO-8601, "until"?: ISO-8601 }, "destination"?: string }',
    );
  }
  const filter = parseReplayFilter(body);
  if (!filter.success) return apiError(400, "invalid_body", describeIssue(filter.error.issues));
  return withIndex(env, async () => {
    const status = await startReplayJob(env, filter.data);
    return jsonResponse(202, status, { location: `/v1/replays/${status.id}` });
  });
}

/**
 * The API's answers for destinations (docs/destinations.md): pause and resume. The overview and
 * pausing itself are src/queries/destinations.ts, which the dashboard calls too.
 */
import { apiError, jsonResponse } from "../http";
import { DestinationName } from "../ops/replay-job";
import { setPaused } from "../queries/destinations";

/** POST /v1/destinations/<name>/pause or /resume: 404 for a name no destination can have. */
export async function pauseAnswer(env: Env, name: string, pause: boolean): Promise<Response> {
  if (!DestinationName.safeParse(name).success) {
    return apiError(404, "destination_not_found", `no destination ${JSON.stringify(name.slice(0, 64))}: names are 1 to 32 lowercase letters, digits or dashes`);
  }
  const result = await setPaused(env, name, pause);
  if (!result.ok) return apiError(result.status, result.code, result.message);
  const { ok: _ok, ...body } = result;
  return jsonResponse(200, body);
}

/** Small HTTP helpers shared by the routes. */
import type { Answer } from "./providers/provider";

export function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8", ...headers } });
}

export function answerResponse(answer: Answer, headers: Record<string, string> = {}): Response {
  return jsonResponse(answer.status, answer.body, { ...answer.headers, ...headers });
}

/** The app API's one error shape. */
export function apiError(status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  return jsonResponse(status, { error: { code, message } }, headers);
}

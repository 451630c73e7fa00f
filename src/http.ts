/** Small HTTP helpers shared by the routes. */
import type { Context, Env as HonoEnv, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
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

/**
 * How much more of an over-limit body is read, and dropped as it comes, before the refusal goes
 * out. workerd cannot read a request body once the response is sent, and an HTTP/1.1 client still
 * uploading when the answer comes gets its connection reset and loses the answer (issue 15: a 413
 * with an empty body, or `wrangler dev`'s 503 for the next request). Bodies up to this much past
 * the limit are read to their end, so their sender gets the refusal; larger ones are not read.
 */
export const DRAIN_MAX_BYTES = 1024 * 1024;

/** Reads and drops what is left of `source`, up to `budget` bytes; never throws. */
async function drain(source: ReadableStreamDefaultReader<Uint8Array>, pending: Promise<unknown>, budget: number): Promise<void> {
  try {
    await pending;
    for (let left = budget; left > 0;) {
      const { done, value } = await source.read();
      if (done) return;
      left -= value.byteLength;
    }
  } catch {
    // The client went away: nothing left to drain.
  }
}

/**
 * `hono/body-limit` (which counts streamed bytes, so a chunked body without Content-Length is
 * refused as soon as it passes `maxSize`, never read whole), answered by `refuse`, and with the
 * rest of a small over-limit body drained first (`DRAIN_MAX_BYTES`). Memory stays within `maxSize`.
 */
export function limitBody<E extends HonoEnv>(maxSize: number, refuse: (c: Context<E>) => Response | Promise<Response>): MiddlewareHandler<E> {
  return async function limitBody(c, next) {
    const { body, headers } = c.req.raw;
    if (!body) return next();
    const declared = headers.has("transfer-encoding") ? Number.NaN : Number(headers.get("content-length") ?? Number.NaN);
    // A declared length within the limit needs hono's check only; one too large to drain is refused unread.
    if (declared <= maxSize || declared > maxSize + DRAIN_MAX_BYTES) return bodyLimit({ maxSize, onError: () => refuse(c) })(c, next);
    // Reads go through a stream of ours, so that a refusal can still drain the source that hono's reader locked.
    const source = body.getReader();
    let pending: Promise<unknown> = Promise.resolve();
    c.req.raw = new Request(c.req.raw, {
      body: new ReadableStream<Uint8Array>(
        {
          async pull(controller) {
            const read = source.read();
            pending = read;
            const { done, value } = await read;
            if (done) controller.close();
            else controller.enqueue(value);
          },
          cancel: (reason) => source.cancel(reason),
        },
        // Nothing is read ahead of the reader.
        { highWaterMark: 0 },
      ),
    });
    const refuseDrained = async () => {
      await drain(source, pending, DRAIN_MAX_BYTES);
      return refuse(c);
    };
    return bodyLimit({ maxSize, onError: refuseDrained })(c, next);
  };
}

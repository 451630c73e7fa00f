// Body limits count streamed bytes (src/http.ts, `limitBody`): a chunked body (no Content-Length)
// over a route's limit is refused 413 without being read whole, in each route's own answer shape,
// and a body a little over the limit is drained first so that its sender gets the answer
// (issue 18 finding 2, issue 15).
import { describe, expect, it } from "vitest";
import { exports } from "cloudflare:workers";
import { MAX_API_BODY_BYTES } from "../src/api/routes";
import { MAX_FORM_BYTES } from "../src/dashboard/routes";
import { DRAIN_MAX_BYTES } from "../src/http";
import { providers } from "../src/ingestors";
import { ADMIN_TOKEN, send } from "./support/callbacks";
import { contractAdapters, type ContractAdapter } from "./support/provider-contract";

const MiB = 1024 * 1024;

/** A chunked body of `total` bytes, made as it is read; `pulled()` says how many bytes were read so far. */
function chunked(total: number, chunk = 64 * 1024, byte = "x"): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  let sent = 0;
  const piece = new TextEncoder().encode(byte.repeat(chunk));
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (sent >= total) return controller.close();
        const next = piece.subarray(0, Math.min(chunk, total - sent));
        sent += next.length;
        controller.enqueue(next);
      },
    },
    { highWaterMark: 0 },
  );
  return { body, pulled: () => sent };
}

/** Every registered provider, its hook's path, and its answer shape read back (test/support/provider-contract.ts). */
const CALLBACKS = [...providers].map(([name, ingestor]) => {
  const adapter = contractAdapters.get(name);
  if (!adapter) throw new Error(`no contract adapter for "${name}": add one to test/support/provider-contract.ts`);
  return [name, adapter, ingestor.maxBodyBytes] as const;
});

async function expectTooLarge(adapter: ContractAdapter, response: Response): Promise<void> {
  expect(response.status).toBe(413);
  expect(adapter.read(response.status, await response.json())).toMatchObject({ ok: false, code: "body_too_large" });
}

describe("callbacks: a chunked body over the provider's limit (64 KiB; Meta's 3 MiB)", () => {
  it.each(CALLBACKS)("%s: 413 in the provider's shape, the body drained first", async (_, adapter, maxBodyBytes) => {
    // Just over the limit, as a provider's oversized callback would be: read to its end before the
    // answer, so an HTTP/1.1 sender still uploading is not reset and gets the answer (issue 15).
    const total = maxBodyBytes + 200 * 1024;
    const { body, pulled } = chunked(total, 4096);
    const { signed } = await adapter.receipt();
    await expectTooLarge(adapter, await send(signed.path, { body, headers: { "transfer-encoding": "chunked" } }));
    expect(pulled()).toBe(total);
  });

  it.each(CALLBACKS)("%s: 20 MB is refused after reading at most the limit and the drain", async (_, adapter, maxBodyBytes) => {
    const { body, pulled } = chunked(20 * MiB);
    const { signed } = await adapter.receipt();
    await expectTooLarge(adapter, await send(signed.path, { body, headers: { "transfer-encoding": "chunked" } }));
    expect(pulled()).toBeLessThan(maxBodyBytes + DRAIN_MAX_BYTES + 2 * MiB);
  });
});

describe("dashboard forms", () => {
  it("POST /dashboard/login refuses a 20 MB chunked body 413 before reading it", async () => {
    const { body, pulled } = chunked(20 * MiB, 64 * 1024, "a");
    const response = await exports.default.fetch(
      new Request("http://relay.test/dashboard/login", {
        method: "POST",
        redirect: "manual",
        headers: {
          origin: "http://relay.test",
          "content-type": "application/x-www-form-urlencoded",
          "transfer-encoding": "chunked",
          "cf-connecting-ip": `2001:db8::${crypto.randomUUID().slice(0, 4)}`,
        },
        body,
      }),
    );
    expect(response.status).toBe(413);
    expect(await response.text()).toContain('data-testid="too-large"');
    expect(pulled()).toBeLessThan(MAX_FORM_BYTES + DRAIN_MAX_BYTES + 2 * MiB);
  });

  it("a chunked sign-in form within the limit still signs in", async () => {
    const form = new TextEncoder().encode(new URLSearchParams({ token: ADMIN_TOKEN }).toString());
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(form);
        controller.close();
      },
    });
    const response = await exports.default.fetch(
      new Request("http://relay.test/dashboard/login", {
        method: "POST",
        redirect: "manual",
        headers: { origin: "http://relay.test", "content-type": "application/x-www-form-urlencoded", "transfer-encoding": "chunked" },
        body,
      }),
    );
    expect(response.status).toBe(303);
    expect(response.headers.get("set-cookie")).toContain("relay_session=");
  });
});

describe("API bodies", () => {
  it.each([["/v1/replays"], ["/v1/conversations/easemob%3Ax%3Au%3Aa%3Ab/deliveries/retry"]])(
    "POST %s refuses a 20 MB chunked body 413 before reading it",
    async (path) => {
      const { body, pulled } = chunked(20 * MiB, 64 * 1024, " ");
      const response = await exports.default.fetch(
        new Request(`http://relay.test${path}`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json", "transfer-encoding": "chunked" },
          body,
        }),
      );
      expect(response.status).toBe(413);
      expect(await response.json()).toEqual({ error: { code: "body_too_large", message: `the body is over ${MAX_API_BODY_BYTES} bytes` } });
      expect(pulled()).toBeLessThan(MAX_API_BODY_BYTES + DRAIN_MAX_BYTES + 2 * MiB);
    },
  );
});

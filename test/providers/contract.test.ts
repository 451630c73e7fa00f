/**
 * The provider contract: every generic case, run against every registered provider through the
 * worker (or its pipeline where what matters is what was stored). Per-provider requests and answer
 * shapes come from test/support/provider-contract.ts; the provider's own file keeps what is its own.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { MAX_BODY_BYTES } from "../../src/callback-routes";
import { providers } from "../../src/ingestors";
import { MAX_JSON_DEPTH } from "../../src/providers/provider";
import { Receipt } from "../../src/receipt";
import { api } from "../support/callbacks";
import { contractAdapters, rawOf, recordingDeps, sendSigned, type ContractAdapter, type Signed } from "../support/provider-contract";
import { testSettings } from "../support/settings";

const receiptsIn = async (conversation: string) => {
  const listed = await api(`/v1/conversations/${encodeURIComponent(conversation)}/receipts?consistent=true`);
  if (listed.status === 404) return [];
  expect(listed.status).toBe(200);
  return z.object({ receipts: z.array(Receipt) }).parse(await listed.json()).receipts;
};

/** Sends and reads the answer back in the provider's own shape (the adapter's zod schema throws on any other). */
async function answerTo(adapter: ContractAdapter, signed: Signed, init: RequestInit = {}) {
  const response = await sendSigned(signed, init);
  return { status: response.status, answer: adapter.read(response.status, await response.json()) };
}

/** A chunked body of `total` bytes, made as it is read. */
function chunked(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  const piece = new TextEncoder().encode("x".repeat(4096));
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      const next = piece.subarray(0, Math.min(piece.length, total - sent));
      sent += next.length;
      controller.enqueue(next);
    },
  });
}

function nested(depth: number): unknown {
  let value: unknown = 0;
  for (let level = 0; level < depth; level++) value = [value];
  return value;
}

describe.each([...providers.keys()])("%s keeps the provider contract", (name) => {
  const adapter = contractAdapters.get(name);
  const ingestor = providers.get(name);

  it("has a contract adapter", () => {
    expect(adapter, `no contract adapter for "${name}": add one to test/support/provider-contract.ts`).toBeDefined();
  });
  if (!adapter || !ingestor) return;

  it("answers a non-POST 405 with Allow: POST (and GET where GET is the provider's handshake)", async () => {
    const { signed } = await adapter.receipt();
    const response = await sendSigned(signed, { method: ingestor.handshake ? "PUT" : "GET", body: undefined });
    expect(response.headers.get("allow")).toBe(ingestor.handshake ? "GET, POST" : "POST");
    expect({ status: response.status, answer: adapter.read(response.status, await response.json()) }).toEqual({
      status: 405,
      answer: { ok: false, code: "method_not_allowed", message: expect.any(String) },
    });
  });

  it("answers a body over 64 KiB 413, with Content-Length and chunked", async () => {
    const { signed } = await adapter.receipt();
    const refused = { status: 413, answer: { ok: false, code: "body_too_large", message: expect.any(String) } };
    expect(await answerTo(adapter, { ...signed, body: "x".repeat(MAX_BODY_BYTES + 1) })).toEqual(refused);
    const headers = { ...signed.headers, "transfer-encoding": "chunked" };
    expect(await answerTo(adapter, { ...signed, headers }, { body: chunked(MAX_BODY_BYTES + 1) })).toEqual(refused);
  });

  it("refuses a bad signature or token, storing nothing", async () => {
    const { body, conversation } = await adapter.receipt();
    expect(await answerTo(adapter, await adapter.sign(body, { forged: true }))).toEqual({
      status: adapter.forged.status,
      answer: { ok: false, code: adapter.forged.code, message: expect.any(String) },
    });
    expect(await receiptsIn(conversation)).toEqual([]);
  });

  it("answers a malformed signed body 400, naming the field", async () => {
    const { body } = await adapter.receipt();
    expect(await answerTo(adapter, await adapter.sign(adapter.malformed.edit(body)))).toEqual({
      status: 400,
      answer: { ok: false, code: expect.any(String), message: expect.stringContaining(`field ${adapter.malformed.field}`) },
    });
  });

  it("refuses a lone surrogate in an id, naming the field", async () => {
    const { body } = await adapter.receipt();
    const signed = await adapter.sign(adapter.loneSurrogate.edit(body));
    // JSON.stringify escapes it: the text is well-formed, the decoded string is not.
    expect(signed.body).toContain("\\ud800");
    expect(await answerTo(adapter, signed)).toEqual({
      status: 400,
      answer: { ok: false, code: "invalid_body", message: expect.stringContaining(`field ${adapter.loneSurrogate.field}`) },
    });
  });

  it(`refuses JSON nested deeper than ${MAX_JSON_DEPTH} levels (too_deep)`, async () => {
    const { body } = await adapter.receipt();
    expect(await answerTo(adapter, await adapter.sign({ ...body, nested: nested(MAX_JSON_DEPTH + 8) }))).toEqual({
      status: 400,
      answer: { ok: false, code: "too_deep", message: expect.any(String) },
    });
  });

  it("is disabled while its settings are unset: 503 provider_disabled, naming the setting", async () => {
    const { signed } = await adapter.receipt();
    expect(ingestor.status({})).toEqual({ state: "disabled", missing: adapter.settings.required });
    const deps = recordingDeps({});
    const answer = await ingestor.handle(rawOf(signed), deps);
    expect({ status: answer.status, answer: adapter.read(answer.status, answer.body) }).toEqual({
      status: 503,
      answer: { ok: false, code: "provider_disabled", message: expect.stringContaining(adapter.settings.required) },
    });
    expect(deps.stored).toEqual([]);
  });

  it("is misconfigured with a malformed setting: 503 provider_misconfigured, naming it, never echoing a value", async () => {
    const { signed } = await adapter.receipt();
    for (const { env, names } of adapter.settings.misconfigured) {
      expect(ingestor.status(env)).toMatchObject({ state: "misconfigured" });
      const deps = recordingDeps(env);
      const answer = await ingestor.handle(rawOf(signed), deps);
      expect({ status: answer.status, answer: adapter.read(answer.status, answer.body) }).toEqual({
        status: 503,
        answer: { ok: false, code: "provider_misconfigured", message: expect.stringContaining(names) },
      });
      expect(JSON.stringify(answer.body)).not.toContain("sekrit");
      expect(deps.stored).toEqual([]);
    }
  });

  it("takes the same callback twice as a duplicate, storing it once", async () => {
    const { signed, conversation } = await adapter.receipt();
    const first = await answerTo(adapter, signed);
    expect(first.status).toBe(200);
    expect(first.answer).toEqual({ ok: true, ...("result" in first.answer ? { result: "accepted" } : {}) });
    const second = await answerTo(adapter, signed);
    expect(second.status).toBe(200);
    expect(second.answer).toEqual({ ok: true, ...("result" in second.answer ? { result: "duplicate" } : {}) });
    expect(await receiptsIn(conversation)).toHaveLength(1);
  });

  it("answers an authentic event that is not a read receipt 200, storing nothing", async () => {
    const other = await adapter.other();
    const answered = await answerTo(adapter, other);
    expect(answered.status).toBe(200);
    expect(answered.answer).toEqual({ ok: true, ...("result" in answered.answer ? { result: "ignored" } : {}) });
    const deps = recordingDeps(testSettings);
    expect((await ingestor.handle(rawOf(other), deps)).status).toBe(200);
    expect(deps.stored).toEqual([]);
  });
});

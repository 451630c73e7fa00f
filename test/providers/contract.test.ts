/**
 * The provider contract: every generic case, run against every registered provider through the
 * worker (or its pipeline where what matters is what was stored). Per-provider requests and answer
 * shapes come from test/support/provider-contract.ts; the provider's own file keeps what is its own.
 */
import { describe, expect, it } from "vitest";
import { MAX_BODY_BYTES } from "../../src/callback-routes";
import { providers } from "../../src/ingestors";
import { registry } from "../../src/providers";
import { META_MAX_BODY_BYTES } from "../../src/providers/meta";
import { MAX_JSON_DEPTH } from "../../src/providers/provider";
import { providerNames } from "../../src/receipt";
import { fixtures, freshSeed, sendCallback, signedSample, receiptsIn } from "../support/callbacks";
import {
  contractAdapters,
  rawOf,
  receiptsOf,
  recordingDeps,
  sendSigned,
  withWrongSecrets,
  type ContractAdapter,
  type Signed,
} from "../support/provider-contract";
import { testSettings } from "../support/settings";

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

  it("answers a body over its limit 413 (64 KiB, Meta's 3 MiB), with Content-Length and chunked", async () => {
    const { signed } = await adapter.receipt();
    const maxBytes = ingestor.maxBodyBytes;
    expect(maxBytes).toBe(name === "whatsapp" || name === "messenger" || name === "instagram" ? META_MAX_BODY_BYTES : MAX_BODY_BYTES);
    const refused = { status: 413, answer: { ok: false, code: "body_too_large", message: `the body is over ${maxBytes} bytes` } };
    expect(await answerTo(adapter, { ...signed, body: "x".repeat(maxBytes + 1) })).toEqual(refused);
    const headers = { ...signed.headers, "transfer-encoding": "chunked" };
    expect(await answerTo(adapter, { ...signed, headers }, { body: chunked(maxBytes + 1) })).toEqual(refused);
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

  const loneSurrogate = adapter.loneSurrogate;
  if (loneSurrogate) {
    it("refuses a lone surrogate in an id, naming the field", async () => {
      const { body } = await adapter.receipt();
      const signed = await adapter.sign(loneSurrogate.edit(body));
      // JSON.stringify escapes it: the text is well-formed, the decoded string is not.
      expect(signed.body).toContain("\\ud800");
      expect(await answerTo(adapter, signed)).toEqual({
        status: 400,
        answer: { ok: false, code: "invalid_body", message: expect.stringContaining(`field ${loneSurrogate.field}`) },
      });
    });
  }

  const invalidItem = adapter.invalidItem;
  if (invalidItem) {
    it("skips an invalid item of a batch (naming its field) and stores the batch's valid receipts", async () => {
      const { body, conversation } = await adapter.receipt();
      const signed = await adapter.sign(invalidItem.edit(body));
      expect(signed.body).toContain("\\ud800");
      const provider = registry.find((entry) => entry.name === name)!;
      const parsed = provider.parse(rawOf(signed));
      if (!parsed.ok) throw new Error(parsed.rejection.message);
      const normalized = await provider.normalize(parsed.value, { receivedAt: new Date().toISOString() });
      expect(normalized).toMatchObject({ ok: true, value: { kind: "receipts", invalid: [expect.stringContaining(`field ${invalidItem.field}`)] } });
      expect(await answerTo(adapter, signed)).toEqual({ status: 200, answer: { ok: true, result: "accepted" } });
      expect(await receiptsIn(conversation)).toHaveLength(1);
    });
  }

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

/** The providers' docs pages by name: only their paths are read (the glob is resolved when the test is built). */
const docsPages = new Set(Object.keys(import.meta.glob("../../docs/providers/*.md")).map((file) => file.replace(/^.*\/(.+)\.md$/, "$1")));

describe("the registry", () => {
  it("is the one list of providers: every name in providerNames is registered, once", () => {
    expect(registry.map((provider) => provider.name).sort()).toEqual([...providerNames].sort());
  });
});

// What adding a provider takes (docs/adding-a-provider.md): its file and registry line, its docs
// page, its fixtures, and samples that its own members make fresh and sign.
describe.each(registry.map((provider) => [provider.name, provider] as const))(
  "%s comes with what every script and test takes from the registry",
  (name, provider) => {
    it("has its docs page, fixtures of its own, and samples whose fixtures exist", () => {
      expect(docsPages.has(name), `docs/providers/${name}.md is missing`).toBe(true);
      expect([...fixtures.keys()].filter((fixture) => fixture.startsWith(`${name}-`)).length, `no test/fixtures/${name}-*.json`).toBeGreaterThan(0);
      expect(provider.samples.length).toBeGreaterThan(0);
      for (const sample of provider.samples) expect(fixtures.has(sample.fixture), `test/fixtures/${sample.fixture}.json is missing`).toBe(true);
    });

    it("takes each of its samples (the first its plainest read receipt), made fresh and signed by its own members, and stores every receipt each makes", async () => {
      const success = provider.answer({ ok: true, result: "accepted", event: "any" });
      for (const index of provider.samples.keys()) {
        const seed = freshSeed();
        const callback = await signedSample(provider, index, seed);
        const response = await sendCallback(callback);
        expect({ sample: index, status: response.status, body: await response.json() }).toEqual({ sample: index, status: success.status, body: success.body });
        const expected = await receiptsOf(provider, callback);
        expect(expected.length).toBeGreaterThan(0);
        for (const receipt of expected) {
          // `fresh` put the seed into the callback: each receipt's conversation names its conversation or reader.
          expect(
            [seed.conversation, seed.reader].some((part) => receipt.conversation.includes(part)),
            receipt.conversation,
          ).toBe(true);
          expect((await receiptsIn(receipt.conversation)).map((stored) => stored.id)).toContain(receipt.id);
        }
      }
    });

    it("makes a new callback of a new message at a new time, in the same conversations", async () => {
      const seed = freshSeed();
      const next = { ...seed, message: seed.message + 1, now: seed.now + 1 };
      const [first, second] = await Promise.all([signedSample(provider, 0, seed), signedSample(provider, 0, next)]);
      const [firstReceipts, secondReceipts] = await Promise.all([receiptsOf(provider, first), receiptsOf(provider, second)]);
      expect(secondReceipts.map((receipt) => receipt.conversation)).toEqual(firstReceipts.map((receipt) => receipt.conversation));
      for (const receipt of secondReceipts) expect(firstReceipts.map((made) => made.id)).not.toContain(receipt.id);
    });

    it("refuses its first sample signed with secrets the relay does not hold: 401, storing nothing", async () => {
      const seed = freshSeed();
      const forged = await signedSample(provider, 0, seed, withWrongSecrets(testSettings));
      const response = await sendCallback(forged);
      expect(response.status).toBe(401);
      for (const receipt of await receiptsOf(provider, forged)) expect(await receiptsIn(receipt.conversation)).toEqual([]);
    });
  },
);

/**
 * Stream Chat under fuzzing: arbitrary bodies and headers, forged signatures, signed but mutated
 * samples. Stream signs the whole body (HMAC-SHA256 hex in X-Signature), so any change needs a new signature.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signStream, stream, type StreamConfig } from "../../src/providers/stream";
import { STREAM_SECRETS, streamSamples } from "../support/callbacks";
import { rawCallback, runProvider } from "../support/pipeline";
import { NOW, RECEIVED_AT, anyBodyText, editsOf, expectWellFormedOutcome, hostileString, renderEdited, settings } from "./arbitraries";

const config: StreamConfig = { secrets: STREAM_SECRETS };
const sample = fc.constantFrom(streamSamples.read, streamSamples.other);
const secret = fc.constantFrom(...STREAM_SECRETS);
/** Header values as a request carries them (printable ASCII; workerd warns about anything else). */
const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), maxLength: 80 });

const run = (text: string, signature: string | undefined, extra: Record<string, string> = {}, path: readonly string[] = []) =>
  runProvider(
    stream,
    rawCallback(text, {
      url: "https://relay.test/v1/hooks/stream",
      path: [...path],
      headers: { ...extra, ...(signature === undefined ? {} : { "x-signature": signature }) },
    }),
    config,
    NOW,
    RECEIVED_AT,
  );

/** Written apart from the provider: the signature is one of the secrets' HMAC over the text, in any case. */
async function authentic(text: string, signature: string | undefined): Promise<boolean> {
  if (signature === undefined) return false;
  const expected = await Promise.all(STREAM_SECRETS.map((key) => signStream(key, text)));
  return expected.includes(signature.toLowerCase());
}

/** Anything but the right signature for `text`: another secret's, another text's, or junk. */
const forgedSignature = (text: string) =>
  fc.oneof(
    hostileString.filter((value) => /^[\x20-\x7e]*$/.test(value)),
    fc.constant(undefined),
    headerValue.map((key) => signStream(`not-${key}`, text)),
    secret.map((key) => signStream(key, `${text} `)),
  );

const extraHeaders = fc.record(
  { "x-api-key": headerValue, "x-webhook-id": headerValue, "x-webhook-attempt": headerValue, "content-encoding": fc.constantFrom("gzip", "identity") },
  { requiredKeys: [] },
);

describe("stream under fuzzing", () => {
  it("never throws, refuses only with a documented status, and accepts only authentic callbacks", async () => {
    const text = fc.oneof(
      anyBodyText,
      sample.chain((body) => editsOf(body).map(({ edits, additions }) => renderEdited(body, edits, additions))),
    );
    const input = text.chain((body) =>
      fc.record({
        body: fc.constant(body),
        signature: fc.oneof({ weight: 2, arbitrary: secret.map((key) => signStream(key, body)) }, { weight: 1, arbitrary: forgedSignature(body) }),
        headers: extraHeaders,
        path: fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 2 }) }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(input, async ({ body, signature, headers, path }) => {
        const signed = await signature;
        const result = await run(body, signed, headers, path);
        expectWellFormedOutcome("stream", result);
        if (result.stage === "done") expect(await authentic(body, signed)).toBe(true);
      }),
      settings(),
    );
  });

  it("refuses a wrong or missing signature at verify, whatever the body holds", async () => {
    const input = sample
      .chain((body) => editsOf(body).map(({ edits, additions }) => renderEdited(body, edits, additions)))
      .chain((body) => fc.record({ body: fc.constant(body), signature: forgedSignature(body), headers: extraHeaders }));
    await fc.assert(
      fc.asyncProperty(input, async ({ body, signature, headers }) => {
        const signed = await signature;
        fc.pre(!(await authentic(body, signed)));
        // A gzip header over a plain body is read as plain: only the signature decides here.
        const { "content-encoding": _ignored, ...plain } = headers;
        expect(await run(body, signed, plain)).toMatchObject({ stage: "verify", status: 401 });
      }),
      settings(),
    );
  });
});

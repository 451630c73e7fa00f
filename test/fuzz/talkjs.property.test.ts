/**
 * TalkJS under fuzzing: arbitrary bodies, forged signatures, signed but mutated samples.
 * TalkJS signs `<X-TalkJS-Timestamp>.<body>` (HMAC-SHA256, upper-case hex in X-TalkJS-Signature).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signTalkjs, talkjs, type TalkjsConfig } from "../../src/providers/talkjs";
import { TALKJS_APP, TALKJS_SECRETS, talkjsSamples } from "../support/callbacks";
import { rawCallback, runProvider } from "../support/pipeline";
import { NOW, RECEIVED_AT, anyBodyText, editsOf, expectWellFormedOutcome, hostileString, renderEdited, settings } from "./arbitraries";

const configs: TalkjsConfig[] = [
  { secrets: TALKJS_SECRETS, maxEventAgeSeconds: 300 },
  { secrets: TALKJS_SECRETS, appIds: [TALKJS_APP], maxEventAgeSeconds: 300 },
];
const live = (body: object) => ({ ...body, createdAt: NOW });
const sample = fc.constantFrom(live(talkjsSamples.read), live(talkjsSamples.other));
const secret = fc.constantFrom(...TALKJS_SECRETS);
const config = fc.constantFrom(...configs);
const editedSample = sample.chain((body) => editsOf(body).map(({ edits, additions }) => renderEdited(body, edits, additions)));
const TIMESTAMP = String(NOW);

const run = (text: string, signature: string | undefined, cfg: TalkjsConfig, path: readonly string[] = [TALKJS_APP], timestamp = TIMESTAMP) =>
  runProvider(
    talkjs,
    rawCallback(text, {
      url: "https://relay.test/v1/hooks/talkjs",
      path: [...path],
      headers: { "x-talkjs-timestamp": timestamp, ...(signature === undefined ? {} : { "x-talkjs-signature": signature }) },
    }),
    cfg,
    NOW,
    RECEIVED_AT,
  );

/** Written apart from the provider: the signature is one of the keys' HMAC over `<timestamp>.<text>`, in any case. */
async function authentic(text: string, signature: string | undefined, timestamp = TIMESTAMP): Promise<boolean> {
  if (signature === undefined) return false;
  const expected = await Promise.all(TALKJS_SECRETS.map((key) => signTalkjs(key, timestamp, text)));
  return expected.includes(signature.toUpperCase());
}

/** Anything but the right signature for `text`: another key's, another text's or timestamp's, or junk. */
const forgedSignature = (text: string) =>
  fc.oneof(
    hostileString.filter((value) => /^[\x20-\x7e]*$/.test(value)),
    fc.constant(undefined),
    hostileString.map((key) => signTalkjs(`not-${key}`, TIMESTAMP, text)),
    secret.map((key) => signTalkjs(key, TIMESTAMP, `${text} `)),
    secret.map((key) => signTalkjs(key, String(NOW + 1), text)),
  );

describe("talkjs under fuzzing", () => {
  it("never throws, refuses only with a documented status, and accepts only authentic callbacks", async () => {
    const input = fc.oneof(anyBodyText, editedSample).chain((body) =>
      fc.record({
        body: fc.constant(body),
        signature: fc.oneof({ weight: 2, arbitrary: secret.map((key) => signTalkjs(key, TIMESTAMP, body)) }, { weight: 1, arbitrary: forgedSignature(body) }),
        config,
        path: fc.oneof({ weight: 4, arbitrary: fc.constant([TALKJS_APP]) }, { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 2 }) }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(input, async ({ body, signature, config: cfg, path }) => {
        const signed = await signature;
        const result = await run(body, signed, cfg, path);
        expectWellFormedOutcome("talkjs", result);
        if (result.stage === "done") expect(await authentic(body, signed)).toBe(true);
      }),
      settings(),
    );
  });

  it("refuses a wrong or missing signature at verify, whatever the body holds", async () => {
    const input = editedSample.chain((body) => fc.record({ body: fc.constant(body), signature: forgedSignature(body), config }));
    await fc.assert(
      fc.asyncProperty(input, async ({ body, signature, config: cfg }) => {
        const signed = await signature;
        fc.pre(!(await authentic(body, signed)));
        // Before the app is judged: a forger learns nothing about TALKJS_APP_ID.
        expect(await run(body, signed, cfg)).toMatchObject({ stage: "verify", status: 401 });
      }),
      settings(),
    );
  });

  it("refuses any timestamp outside the window, even correctly signed", async () => {
    const offset = fc.oneof(fc.integer({ min: 300_001, max: 10 ** 12 }), fc.integer({ min: -(10 ** 12), max: -300_001 }));
    await fc.assert(
      fc.asyncProperty(offset, secret, async (delta, key) => {
        const text = JSON.stringify(live(talkjsSamples.read));
        const timestamp = String(Math.max(0, NOW + delta));
        const result = await run(text, await signTalkjs(key, timestamp, text), configs[0]!, [TALKJS_APP], timestamp);
        expect(result).toMatchObject({ stage: "verify", status: 401 });
      }),
      settings(100),
    );
  });
});

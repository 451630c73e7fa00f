/**
 * TalkJS under fuzzing: arbitrary bodies, forged signatures, signed but mutated samples.
 * TalkJS signs `<X-TalkJS-Timestamp>.<body>` (HMAC-SHA256, upper-case hex in X-TalkJS-Signature).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signTalkjs, talkjs, type TalkjsConfig } from "../../src/providers/talkjs";
import { TALKJS_APP, TALKJS_SECRETS, talkjsSamples } from "../support/callbacks";
import { rawCallback, runProvider, type Stage } from "../support/pipeline";
import {
  NOW,
  RECEIVED_AT,
  acceptsOnlyAuthentic,
  editsOf,
  expectWellFormedOutcome,
  hostileString,
  refusesForgedAtVerify,
  renderEdited,
  settings,
  type SignedFuzz,
} from "./arbitraries";

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

const fuzz: SignedFuzz<TalkjsConfig, Stage> = {
  editedSample,
  sign: (body) => secret.map((key) => signTalkjs(key, TIMESTAMP, body)),
  forge: forgedSignature,
  config,
  path: fc.oneof({ weight: 4, arbitrary: fc.constant([TALKJS_APP]) }, { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 2 }) }),
  run: (text, signature, cfg, path) => run(text, signature, cfg, path),
  authentic: (text, signature) => authentic(text, signature),
  expectOutcome: (result) => expectWellFormedOutcome("talkjs", result),
};

describe("talkjs under fuzzing", () => {
  it("never throws, refuses only with a documented status, and accepts only authentic callbacks", () => acceptsOnlyAuthentic(fuzz));
  // Before the app is judged: a forger learns nothing about TALKJS_APP_ID.
  it("refuses a wrong or missing signature at verify, whatever the body holds", () => refusesForgedAtVerify(fuzz));

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

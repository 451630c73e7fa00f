/**
 * Sendbird under fuzzing: arbitrary bodies, forged signatures, signed but mutated samples.
 * Sendbird signs the body's bytes as sent (HMAC-SHA256 hex in x-sendbird-signature).
 */
import fc from "fast-check";
import { describe, it } from "vitest";
import { sendbird, signSendbird, type SendbirdConfig } from "../../src/providers/sendbird";
import { SENDBIRD_APP, SENDBIRD_TOKENS, sendbirdSamples } from "../support/callbacks";
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
  type SignedFuzz,
} from "./arbitraries";

const configs: SendbirdConfig[] = [{ tokens: SENDBIRD_TOKENS }, { tokens: SENDBIRD_TOKENS, appIds: [SENDBIRD_APP] }];
const sample = fc.constantFrom(sendbirdSamples.read, sendbirdSamples.other);
const token = fc.constantFrom(...SENDBIRD_TOKENS);
const config = fc.constantFrom(...configs);
const editedSample = sample.chain((body) => editsOf(body).map(({ edits, additions }) => renderEdited(body, edits, additions)));

const run = (text: string, signature: string | undefined, cfg: SendbirdConfig, path: readonly string[] = []) =>
  runProvider(
    sendbird,
    rawCallback(text, {
      url: "https://relay.test/v1/hooks/sendbird",
      path: [...path],
      headers: signature === undefined ? {} : { "x-sendbird-signature": signature },
    }),
    cfg,
    NOW,
    RECEIVED_AT,
  );

/** Written apart from the provider: the signature is one of the tokens' HMAC over the text, in any case. */
async function authentic(text: string, signature: string | undefined): Promise<boolean> {
  if (signature === undefined) return false;
  const expected = await Promise.all(SENDBIRD_TOKENS.map((key) => signSendbird(key, text)));
  return expected.includes(signature.toLowerCase());
}

/** Anything but the right signature for `text`: another token's, another text's, or junk. */
const forgedSignature = (text: string) =>
  fc.oneof(
    hostileString.filter((value) => /^[\x20-\x7e]*$/.test(value)),
    fc.constant(undefined),
    hostileString.map((key) => signSendbird(`not-${key}`, text)),
    token.map((key) => signSendbird(key, `${text} `)),
  );

const fuzz: SignedFuzz<SendbirdConfig, Stage> = {
  editedSample,
  sign: (body) => token.map((key) => signSendbird(key, body)),
  forge: forgedSignature,
  config,
  path: fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 2 }) }),
  run,
  authentic,
  expectOutcome: (result) => expectWellFormedOutcome("sendbird", result),
};

describe("sendbird under fuzzing", () => {
  it("never throws, refuses only with a documented status, and accepts only authentic callbacks", () => acceptsOnlyAuthentic(fuzz));
  // Before the app_id is read: a forger learns nothing about SENDBIRD_APP_ID.
  it("refuses a wrong or missing signature at verify, whatever the body holds", () => refusesForgedAtVerify(fuzz));
});

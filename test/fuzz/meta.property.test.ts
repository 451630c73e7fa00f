/**
 * WhatsApp, Messenger and Instagram under fuzzing, one parametrized suite (they share Meta's
 * envelope and signature): arbitrary bodies, forged signatures, signed but mutated samples.
 * Meta signs the body's bytes as sent: X-Hub-Signature-256 = sha256=hex(HMAC-SHA256(App Secret, body)).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signMeta, type MetaConfig } from "../../src/providers/meta";
import { instagram } from "../../src/providers/instagram";
import { messenger } from "../../src/providers/messenger";
import { whatsapp } from "../../src/providers/whatsapp";
import { META_SECRETS, META_VERIFY_TOKENS, metaSamples } from "../support/callbacks";
import { testSettings } from "../support/settings";
import { rawCallback, runBatchProvider, type BatchStage, type Stage } from "../support/pipeline";
import {
  NOW,
  RECEIVED_AT,
  editsOf,
  expectSoundReceipt,
  expectWellFormedOutcome,
  hostileString,
  renderEdited,
  acceptsOnlyAuthentic,
  refusesForgedAtVerify,
  type SignedFuzz,
} from "./arbitraries";

const secret = fc.constantFrom(...META_SECRETS);

/** Each Meta product: its provider, its samples, and the setting that lists its allowed ids. */
const PRODUCTS = [
  { name: "whatsapp", provider: whatsapp, allowed: testSettings.WHATSAPP_PHONE_NUMBER_IDS },
  { name: "messenger", provider: messenger, allowed: testSettings.MESSENGER_PAGE_IDS },
  { name: "instagram", provider: instagram, allowed: testSettings.INSTAGRAM_ACCOUNT_IDS },
] as const;

describe.each(PRODUCTS)("$name under fuzzing", ({ name, provider, allowed }) => {
  const configs: MetaConfig[] = [
    { secrets: META_SECRETS, verifyTokens: META_VERIFY_TOKENS },
    { secrets: META_SECRETS, verifyTokens: META_VERIFY_TOKENS, allowed: allowed.split(",") },
  ];
  const sample = fc.constantFrom<object>(metaSamples[name].read, metaSamples[name].other);
  const config = fc.constantFrom(...configs);
  const editedSample = sample.chain((body) => editsOf(body).map(({ edits, additions }) => renderEdited(body, edits, additions)));

  const run = (text: string, signature: string | undefined, cfg: MetaConfig, path: readonly string[] = []) =>
    runBatchProvider(
      provider,
      rawCallback(text, {
        url: `https://relay.test/v1/hooks/${name}`,
        path: [...path],
        headers: signature === undefined ? {} : { "x-hub-signature-256": signature },
      }),
      cfg,
      NOW,
      RECEIVED_AT,
    );

  /** Written apart from the provider: the signature is sha256= and one secret's HMAC over the text, hex in any case. */
  async function authentic(text: string, signature: string | undefined): Promise<boolean> {
    if (signature === undefined || !signature.startsWith("sha256=")) return false;
    const expected = await Promise.all(META_SECRETS.map((key) => signMeta(key, text)));
    return expected.includes(`sha256=${signature.slice(7).toLowerCase()}`);
  }

  const forgedSignature = (text: string) =>
    fc.oneof(
      hostileString.filter((value) => /^[\x20-\x7e]*$/.test(value)),
      fc.constant(undefined),
      hostileString.map((key) => signMeta(`not-${key}`, text)),
      secret.map((key) => signMeta(key, `${text} `)),
      secret.map(async (key) => (await signMeta(key, text)).slice(7)),
    );

  function expectOutcome(result: BatchStage): void {
    if (result.stage !== "done") return expectWellFormedOutcome(name, result as Stage);
    for (const { receipt } of result.receipts) expectSoundReceipt(receipt, name);
    for (const [event, count] of Object.entries(result.ignored)) {
      expect(event).toEqual(expect.any(String));
      expect(count).toBeGreaterThan(0);
    }
  }

  const fuzz: SignedFuzz<MetaConfig, BatchStage> = {
    editedSample,
    sign: (body) => secret.map((key) => signMeta(key, body)),
    forge: forgedSignature,
    config,
    path: fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 2 }) }),
    run,
    authentic,
    expectOutcome,
  };

  it("never throws, refuses only with a documented status, and accepts only authentic callbacks", () => acceptsOnlyAuthentic(fuzz));
  // Before the ids are read: a forger learns nothing about the allow-list.
  it("refuses a wrong or missing signature at verify, whatever the body holds", () => refusesForgedAtVerify(fuzz));
});

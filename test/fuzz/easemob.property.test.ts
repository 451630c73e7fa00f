/**
 * Easemob under fuzzing: arbitrary bodies, forged signatures, signed but mutated samples, lone
 * surrogates in ids, deep nesting. Every run is pure (no bindings) and seeded.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { easemob, signEasemob, type EasemobConfig } from "../../src/providers/easemob";
import { EASEMOB_SECRETS, samples } from "../support/callbacks";
import { rawCallback, runProvider } from "../support/pipeline";
import {
  NOW,
  RECEIVED_AT,
  anyBodyText,
  editsOf,
  expectRefusalNamingField,
  expectSoundReceipt,
  expectWellFormedOutcome,
  hostileString,
  loneSurrogateString,
  nestedText,
  renderEdited,
  settings,
  touchedFields,
} from "./arbitraries";

/** The relay's default window for Easemob. */
const MAX_AGE_MS = 300_000;
const config: EasemobConfig = { secrets: EASEMOB_SECRETS, maxEventAgeSeconds: MAX_AGE_MS / 1000 };
/** What a signature is checked over, and what `parse` needs before it checks one. */
const SIGNED = ["callId", "timestamp", "security"];
const ENVELOPE = [...SIGNED, "chat_type"];
const sample = fc.constantFrom(samples.easemob.single, samples.easemob.group, samples.easemob.channel);
const secret = fc.constantFrom(...EASEMOB_SECRETS);
/** Timestamps on both sides of the freshness window. */
const timestamp = fc.integer({ min: NOW - MAX_AGE_MS - 60_000, max: NOW + MAX_AGE_MS + 60_000 });
const freshTimestamp = fc.integer({ min: NOW - MAX_AGE_MS, max: NOW + MAX_AGE_MS });

const run = (text: string, path: readonly string[] = []) =>
  runProvider(easemob, rawCallback(text, { url: "https://relay.test/v1/hooks/easemob", path: [...path] }), config, NOW, RECEIVED_AT);

/** A sample with a fresh timestamp and a real signature, before any edit. */
async function signed(body: object, key: string, at: number, callId?: string): Promise<Record<string, unknown>> {
  const copy: Record<string, unknown> = { ...structuredClone(body), timestamp: at };
  if (callId !== undefined) copy.callId = callId;
  copy.security = await signEasemob(String(copy.callId), key, at);
  return copy;
}

/** What the relay must check, written independently: the fields Easemob signs, and their age. */
const SignedFields = z.object({ callId: z.string(), timestamp: z.union([z.number(), z.string()]), security: z.string() });

async function authentic(text: string): Promise<boolean> {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return false;
  }
  const fields = SignedFields.safeParse(body);
  if (!fields.success) return false;
  const { callId, timestamp: at, security } = fields.data;
  const expected = await Promise.all(EASEMOB_SECRETS.map((key) => signEasemob(callId, key, at)));
  return expected.includes(security.toLowerCase()) && Math.abs(NOW - Number(at)) <= MAX_AGE_MS;
}

describe("easemob under fuzzing", () => {
  it("never throws, refuses only with a documented status, and accepts only authentic callbacks", async () => {
    const signedEdited = fc
      .tuple(sample, secret, timestamp)
      .chain(([body, key, at]) =>
        fc.record({ kind: fc.constant("signed" as const), body: fc.constant(body), key: fc.constant(key), at: fc.constant(at), edited: editsOf(body) }),
      );
    const spec = fc.oneof(fc.record({ kind: fc.constant("text" as const), text: anyBodyText }), signedEdited);
    const path = fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 2 }) });
    await fc.assert(
      fc.asyncProperty(spec, path, async (input, segments) => {
        const text =
          input.kind === "text" ? input.text : renderEdited(await signed(input.body, input.key, input.at), input.edited.edits, input.edited.additions);
        const result = await run(text, segments);
        expectWellFormedOutcome("easemob", result);
        if (result.stage === "done") expect(await authentic(text)).toBe(true);
      }),
      settings(),
    );
  });

  it("refuses a wrong signature at verify, whatever else the body holds", async () => {
    const forgery = fc.oneof(
      // Signed with a secret the relay does not hold.
      fc.record({ kind: fc.constant("secret" as const), key: hostileString }),
      // A real signature, but of another callId or timestamp.
      fc.record({ kind: fc.constant("callId" as const), key: secret, callId: fc.stringMatching(/^[\x21-\x7e]{1,40}$/) }),
      fc.record({ kind: fc.constant("timestamp" as const), key: secret, at: freshTimestamp }),
      // 32 hex characters that are not the signature.
      fc.record({ kind: fc.constant("hex" as const), hex: fc.stringMatching(/^[0-9a-fA-F]{32}$/) }),
    );
    const cases = sample.chain((body) => fc.tuple(fc.constant(body), freshTimestamp, forgery, editsOf(body, ENVELOPE)));
    await fc.assert(
      fc.asyncProperty(cases, async ([body, at, forged, { edits, additions }]) => {
        const callId = String(body.callId);
        const security =
          forged.kind === "secret"
            ? await signEasemob(callId, forged.key, at)
            : forged.kind === "callId"
              ? await signEasemob(forged.callId, forged.key, at)
              : forged.kind === "timestamp"
                ? await signEasemob(callId, forged.key, forged.at)
                : forged.hex;
        const genuine = await Promise.all(EASEMOB_SECRETS.map((key) => signEasemob(callId, key, at)));
        fc.pre(!genuine.includes(security.toLowerCase()));
        const text = renderEdited({ ...structuredClone(body), timestamp: at, security }, edits, additions);
        expect(await run(text)).toMatchObject({ stage: "verify", status: 401, code: "bad_signature" });
      }),
      settings(),
    );
  });

  it("turns a signed, mutated sample into a sound receipt or a 400 naming the field", async () => {
    const cases = fc
      .tuple(sample, secret, freshTimestamp)
      .chain(([body, key, at]) => fc.tuple(fc.constant(body), fc.constant(key), fc.constant(at), editsOf(body, SIGNED)));
    await fc.assert(
      fc.asyncProperty(cases, async ([body, key, at, { edits, additions }]) => {
        const result = await run(renderEdited(await signed(body, key, at), edits, additions));
        const touched = touchedFields(edits, additions);
        if (result.stage === "done" && result.kind === "receipt") expectSoundReceipt(result.receipt, "easemob");
        else if (result.stage === "done") expect(touched.has("chat_type"), `ignored ${result.event}`).toBe(true);
        else expectRefusalNamingField(result, touched);
      }),
      settings(),
    );
  });

  it.each(["from", "to", "group_id"])("refuses a lone surrogate in %s with 400 naming it", async (field) => {
    await fc.assert(
      fc.asyncProperty(sample, secret, loneSurrogateString, async (body, key, id) => {
        const result = await run(JSON.stringify({ ...(await signed(body, key, NOW)), [field]: id }));
        expect(result).toMatchObject({ status: 400, code: "invalid_body", message: expect.stringMatching(new RegExp(`^field ${field}: `)) });
      }),
      settings(100),
    );
  });

  it("refuses a signed body nested deeper than 32 levels with too_deep, and only then", async () => {
    // Brackets, quotes and backslashes inside strings must not count as nesting.
    const decoy = fc.constantFrom('"[[[{{{"', '"\\\\"', '"\\"[{"', '"]]]}}}"', '"\\\\\\"["', "0");
    await fc.assert(
      fc.asyncProperty(sample, secret, fc.integer({ min: 1, max: 60 }), decoy, async (body, key, depth, inner) => {
        const text = JSON.stringify(await signed(body, key, NOW)).replace(/}$/, `,"nested":${nestedText(depth, inner)}}`);
        const result = await run(text);
        // The body object is one level more.
        if (depth + 1 > 32) expect(result).toMatchObject({ stage: "parse", status: 400, code: "too_deep" });
        else expect(result).toMatchObject({ stage: "done", kind: "receipt" });
      }),
      settings(150),
    );
  });

  it("refuses a signed body nested 6,000 levels deep with 400 too_deep", async () => {
    const text = JSON.stringify(await signed(samples.easemob.single, EASEMOB_SECRETS[0] ?? "", NOW)).replace(/}$/, `,"nested":${nestedText(6000)}}`);
    expect(await run(text)).toMatchObject({ stage: "parse", status: 400, code: "too_deep" });
  });
});

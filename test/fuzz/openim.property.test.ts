/**
 * OpenIM under fuzzing: arbitrary paths, headers and bodies, wrong tokens, mutated samples, lone
 * surrogates in ids, deep nesting. OpenIM signs nothing: the path token is its whole authentication.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { openim, type OpenimConfig } from "../../src/providers/openim";
import { OPENIM_TOKEN, samples } from "../support/callbacks";
import { rawCallback, runProvider } from "../support/pipeline";
import {
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

const config: OpenimConfig = { token: OPENIM_TOKEN };
const SINGLE = "callbackAfterSingleMsgReadCommand";
const GROUP = "callbackAfterGroupMsgReadCommand";
const commands = [
  { command: SINGLE, body: samples.openim.single },
  { command: GROUP, body: samples.openim.group },
] as const;
const sampleCommand = fc.constantFrom(...commands);

/** Header values as a request carries them (printable ASCII; workerd warns about anything else). */
const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), maxLength: 200 });
const operationId = fc.option(headerValue, { nil: undefined });

const run = (path: readonly string[], text: string, operation?: string) =>
  runProvider(
    openim,
    rawCallback(text, { url: "https://relay.test/v1/hooks/openim", path: [...path], headers: operation === undefined ? {} : { operationID: operation } }),
    config,
    0,
    RECEIVED_AT,
  );

/** A token that is not OPENIM_TOKEN but close to it, or anything at all. */
const wrongToken = fc
  .oneof(
    hostileString,
    fc.constantFrom(
      OPENIM_TOKEN.slice(0, -1),
      `${OPENIM_TOKEN}x`,
      OPENIM_TOKEN.toUpperCase(),
      ` ${OPENIM_TOKEN}`,
      `${OPENIM_TOKEN}\u0000`,
      `${OPENIM_TOKEN.slice(0, -1)}\ud800`,
    ),
    fc.nat({ max: OPENIM_TOKEN.length - 1 }).chain((at) => hostileString.map((text) => `${OPENIM_TOKEN.slice(0, at)}${text}${OPENIM_TOKEN.slice(at + 1)}`)),
  )
  .filter((token) => token !== OPENIM_TOKEN);

describe("openim under fuzzing", () => {
  it("never throws, refuses only with a documented status, and accepts only the right token", async () => {
    const segment = fc.oneof(fc.constant(OPENIM_TOKEN), fc.constantFrom(SINGLE, GROUP), hostileString);
    const anyInput = fc.record({ kind: fc.constant("any" as const), path: fc.array(segment, { maxLength: 4 }), text: anyBodyText });
    const edited = sampleCommand.chain(({ command, body }) =>
      fc.record({
        kind: fc.constant("edited" as const),
        path: fc.oneof(
          { weight: 3, arbitrary: fc.constant([OPENIM_TOKEN, command]) },
          { weight: 1, arbitrary: fc.tuple(wrongToken, fc.constant(command)) },
          { weight: 1, arbitrary: fc.array(segment, { maxLength: 4 }) },
        ),
        body: fc.constant(body),
        edited: editsOf(body),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyInput, edited), operationId, async (input, operation) => {
        const text = input.kind === "any" ? input.text : renderEdited(input.body, input.edited.edits, input.edited.additions);
        const result = await run(input.path, text, operation);
        expectWellFormedOutcome("openim", result);
        if (result.stage === "done") expect(input.path[0]).toBe(OPENIM_TOKEN);
      }),
      settings(),
    );
  });

  it("refuses a wrong or missing token at verify, whatever the body holds", async () => {
    const cases = sampleCommand.chain(({ command, body }) =>
      fc.tuple(fc.constant(command), fc.constant(body), fc.option(wrongToken, { nil: undefined }), editsOf(body)),
    );
    await fc.assert(
      fc.asyncProperty(cases, operationId, async ([command, body, token, { edits, additions }], operation) => {
        const path = token === undefined ? [] : [token, command];
        const result = await run(path, renderEdited(body, edits, additions), operation);
        expect(result).toMatchObject({ stage: "verify", status: 401 });
      }),
      settings(),
    );
  });

  it("turns a mutated sample under the right token into a sound receipt or a 400 naming the field", async () => {
    const cases = sampleCommand.chain(({ command, body }) => fc.tuple(fc.constant(command), fc.constant(body), editsOf(body)));
    await fc.assert(
      fc.asyncProperty(cases, operationId, async ([command, body, { edits, additions }], operation) => {
        const result = await run([OPENIM_TOKEN, command], renderEdited(body, edits, additions), operation);
        if (result.stage === "done") {
          expect(result.kind).toBe("receipt");
          if (result.kind === "receipt") expectSoundReceipt(result.receipt, "openim");
        }
        // The reader anchors the split of conversationID, so a changed userID shows up as a conversationID mismatch.
        else expectRefusalNamingField(result, touchedFields(edits, additions), { conversationID: ["userID"], Seqs: ["seqs"] });
      }),
      settings(),
    );
  });

  const idFields = [
    { command: commands[0], field: "userID", value: (id: string) => ({ userID: id }) },
    { command: commands[0], field: "conversationID", value: (id: string) => ({ conversationID: `si_u1_${id}` }) },
    { command: commands[1], field: "sendID", value: (id: string) => ({ sendID: id }) },
    { command: commands[1], field: "receiveID", value: (id: string) => ({ receiveID: id }) },
  ];
  it.each(idFields.map((entry) => [entry.field, entry] as const))("refuses a lone surrogate in %s with 400 naming it", async (field, { command, value }) => {
    await fc.assert(
      fc.asyncProperty(loneSurrogateString, async (id) => {
        const result = await run([OPENIM_TOKEN, command.command], JSON.stringify({ ...command.body, ...value(id) }));
        expect(result).toMatchObject({ status: 400, code: "invalid_body", message: expect.stringMatching(new RegExp(`^field ${field}: `)) });
      }),
      settings(50),
    );
  });

  it("refuses a body nested deeper than 32 levels with too_deep, and only then", async () => {
    const decoy = fc.constantFrom('"[[[{{{"', '"\\\\"', '"\\"[{"', '"]]]}}}"', '"\\\\\\"["', "0");
    await fc.assert(
      fc.asyncProperty(sampleCommand, fc.integer({ min: 1, max: 60 }), decoy, async ({ command, body }, depth, inner) => {
        const text = JSON.stringify(body).replace(/}$/, `,"nested":${nestedText(depth, inner)}}`);
        const result = await run([OPENIM_TOKEN, command], text);
        if (depth + 1 > 32) expect(result).toMatchObject({ stage: "normalize", status: 400, code: "too_deep" });
        else expect(result).toMatchObject({ stage: "done", kind: "receipt" });
      }),
      settings(150),
    );
  });

  it("refuses a body nested 6,000 levels deep with 400 too_deep", async () => {
    const text = JSON.stringify(samples.openim.single).replace(/}$/, `,"nested":${nestedText(6000)}}`);
    expect(await run([OPENIM_TOKEN, SINGLE], text)).toMatchObject({ stage: "normalize", status: 400, code: "too_deep" });
  });
});

/**
 * Tencent under fuzzing: arbitrary queries and bodies, forged Sign or SdkAppid, signed but mutated
 * samples, lone surrogates in ids, deep nesting. Every run is pure (no bindings) and seeded.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signTencent, tencent, type TencentConfig } from "../../src/providers/tencent";
import { samples, TENCENT_TOKEN } from "../support/callbacks";
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

const config: TencentConfig = { sdkAppIds: ["1400000001", "1400000002"], token: TENCENT_TOKEN };
const NOW_SECONDS = NOW / 1000;
const MAX_SKEW_SECONDS = 60;

const commands = [
  { command: "C2C.CallbackAfterMsgReport", body: samples.tencent.report },
  { command: "Group.CallbackAfterReadReceipt", body: samples.tencent.group },
  { command: "C2C.CallbackAfterMsgReadReceipt", body: samples.tencent.receipt },
] as const;
const sampleCommand = fc.constantFrom(...commands);
const sdkAppId = fc.constantFrom(...config.sdkAppIds);
const requestTime = fc.integer({ min: NOW_SECONDS - MAX_SKEW_SECONDS - 30, max: NOW_SECONDS + MAX_SKEW_SECONDS + 30 });
const freshRequestTime = fc.integer({ min: NOW_SECONDS - MAX_SKEW_SECONDS, max: NOW_SECONDS + MAX_SKEW_SECONDS });

interface Query {
  SdkAppid?: string;
  CallbackCommand?: string;
  RequestTime?: string;
  Sign?: string;
  OptPlatform?: string;
}

function urlOf(query: Query, extra: readonly (readonly [string, string])[] = []): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, value);
  for (const [name, value] of extra) params.append(name, value);
  return `https://relay.test/v1/hooks/tencent?${params}`;
}

/** A query Tencent would send: allowed SdkAppid, a real Sign over RequestTime. */
async function signedQuery(command: string, app: string, at: number, platform = "iOS"): Promise<Query> {
  return { SdkAppid: app, CallbackCommand: command, RequestTime: String(at), Sign: await signTencent(TENCENT_TOKEN, at), OptPlatform: platform };
}

const run = (url: string, text: string, path: readonly string[] = []) =>
  runProvider(tencent, rawCallback(text, { url, path: [...path] }), config, NOW, RECEIVED_AT);

/** What the relay must check, written independently: an allowed SdkAppid and a fresh, real Sign. */
async function authentic(url: string): Promise<boolean> {
  const query = new URL(url).searchParams;
  const [app, sign, at] = [query.get("SdkAppid"), query.get("Sign"), query.get("RequestTime")];
  if (app === null || !config.sdkAppIds.includes(app) || sign === null || at === null || !/^\d+$/.test(at)) return false;
  return sign.toLowerCase() === (await signTencent(TENCENT_TOKEN, at)) && Math.abs(NOW_SECONDS - Number(at)) <= MAX_SKEW_SECONDS;
}

describe("tencent under fuzzing", () => {
  it("never throws, refuses only with a documented status, and accepts only authentic callbacks", async () => {
    const queryName = fc.oneof(fc.constantFrom("SdkAppid", "CallbackCommand", "RequestTime", "Sign", "OptPlatform"), hostileString);
    const anyQuery = fc.record({
      kind: fc.constant("any" as const),
      query: fc.array(fc.tuple(queryName, hostileString), { maxLength: 6 }),
      text: anyBodyText,
    });
    const signedEdited = sampleCommand.chain(({ command, body }) =>
      fc.record({
        kind: fc.constant("signed" as const),
        command: fc.oneof({ weight: 4, arbitrary: fc.constant(command) }, { weight: 1, arbitrary: hostileString }),
        app: fc.oneof({ weight: 4, arbitrary: sdkAppId }, { weight: 1, arbitrary: hostileString }),
        at: requestTime,
        body: fc.constant(body),
        edited: editsOf(body),
        extra: fc.array(fc.tuple(hostileString, hostileString), { maxLength: 2 }),
      }),
    );
    const path = fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 2 }) });
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyQuery, signedEdited), path, async (input, segments) => {
        const [url, text] =
          input.kind === "any"
            ? [urlOf({}, input.query), input.text]
            : [urlOf(await signedQuery(input.command, input.app, input.at), input.extra), renderEdited(input.body, input.edited.edits, input.edited.additions)];
        const result = await run(url, text, segments);
        expectWellFormedOutcome("tencent", result);
        if (result.stage === "done") expect(await authentic(url)).toBe(true);
      }),
      settings(),
    );
  });

  it("refuses a wrong Sign or SdkAppid at verify, whatever the body holds", async () => {
    const forgery = fc.oneof(
      fc.record({ kind: fc.constant("token" as const), token: hostileString }),
      fc.record({ kind: fc.constant("time" as const), at: fc.integer({ min: 0, max: 10 ** 12 - 1 }) }),
      fc.record({ kind: fc.constant("hex" as const), sign: fc.oneof(fc.stringMatching(/^[0-9a-fA-F]{64}$/), hostileString) }),
      fc.record({ kind: fc.constant("unsigned" as const), keep: fc.constantFrom("Sign", "RequestTime", "neither") }),
      fc.record({ kind: fc.constant("app" as const), app: hostileString.filter((app) => !config.sdkAppIds.includes(app)) }),
    );
    const cases = sampleCommand.chain(({ command, body }) =>
      fc.tuple(fc.constant(command), fc.constant(body), sdkAppId, freshRequestTime, forgery, editsOf(body)),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ([command, body, app, at, forged, { edits, additions }]) => {
        const query = await signedQuery(command, app, at);
        if (forged.kind === "token") {
          // Sign covers token + RequestTime only: another token that concatenates to the same text signs alike.
          fc.pre(`${forged.token}${at}` !== `${TENCENT_TOKEN}${at}`);
          query.Sign = await signTencent(forged.token, at);
        } else if (forged.kind === "time") {
          fc.pre(String(forged.at) !== query.RequestTime);
          query.Sign = await signTencent(TENCENT_TOKEN, forged.at);
        } else if (forged.kind === "hex") {
          fc.pre(forged.sign.toLowerCase() !== query.Sign);
          query.Sign = forged.sign;
        } else if (forged.kind === "unsigned") {
          if (forged.keep !== "Sign") delete query.Sign;
          if (forged.keep !== "RequestTime") delete query.RequestTime;
        } else query.SdkAppid = forged.app;
        const result = await run(urlOf(query), renderEdited(body, edits, additions));
        expect(result).toMatchObject({ stage: "verify", status: forged.kind === "app" ? 403 : 401 });
      }),
      settings(),
    );
  });

  it("turns a signed, mutated sample into a sound receipt or a 400 naming the field", async () => {
    const cases = sampleCommand.chain(({ command, body }) => fc.tuple(fc.constant(command), fc.constant(body), sdkAppId, freshRequestTime, editsOf(body)));
    await fc.assert(
      fc.asyncProperty(cases, async ([command, body, app, at, { edits, additions }]) => {
        const result = await run(urlOf(await signedQuery(command, app, at)), renderEdited(body, edits, additions));
        if (result.stage === "done") {
          expect(result.kind).toBe("receipt");
          if (result.kind === "receipt") expectSoundReceipt(result.receipt, "tencent");
        } else expectRefusalNamingField(result, touchedFields(edits, additions));
      }),
      settings(),
    );
  });

  const idFields = [
    { command: commands[0], path: ["Report_Account"] },
    { command: commands[0], path: ["Peer_Account"] },
    { command: commands[1], path: ["GroupId"] },
    { command: commands[1], path: ["GroupMsgReceiptList", "0", "ReadReceiptMembers", "0", "Member_Account"] },
    { command: commands[2], path: ["Operator_Account"] },
    { command: commands[2], path: ["Peer_Account"] },
    { command: commands[2], path: ["C2CMsgInfo", "0", "From_Account"] },
    { command: commands[2], path: ["C2CMsgInfo", "0", "To_Account"] },
  ];
  it.each(idFields.map((field) => [`${field.command.command} ${field.path.join(".")}`, field] as const))(
    "refuses a lone surrogate in %s with 400 naming it",
    async (_, { command, path }) => {
      await fc.assert(
        fc.asyncProperty(sdkAppId, freshRequestTime, loneSurrogateString, async (app, at, id) => {
          const text = renderEdited(command.body, [{ path, text: JSON.stringify(id) }]);
          const result = await run(urlOf(await signedQuery(command.command, app, at)), text);
          expect(result).toMatchObject({ status: 400, code: "invalid_body", message: expect.stringMatching(new RegExp(`^field ${path.join("\\.")}: `)) });
        }),
        settings(50),
      );
    },
  );

  it("refuses a signed body nested deeper than 32 levels with too_deep, and only then", async () => {
    const decoy = fc.constantFrom('"[[[{{{"', '"\\\\"', '"\\"[{"', '"]]]}}}"', '"\\\\\\"["', "0");
    await fc.assert(
      fc.asyncProperty(sampleCommand, sdkAppId, fc.integer({ min: 1, max: 60 }), decoy, async ({ command, body }, app, depth, inner) => {
        const text = JSON.stringify(body).replace(/}$/, `,"nested":${nestedText(depth, inner)}}`);
        const result = await run(urlOf(await signedQuery(command, app, NOW_SECONDS)), text);
        if (depth + 1 > 32) expect(result).toMatchObject({ stage: "normalize", status: 400, code: "too_deep" });
        else expect(result).toMatchObject({ stage: "done", kind: "receipt" });
      }),
      settings(150),
    );
  });

  it("refuses a signed body nested 6,000 levels deep with 400 too_deep", async () => {
    const text = JSON.stringify(samples.tencent.report).replace(/}$/, `,"nested":${nestedText(6000)}}`);
    const url = urlOf(await signedQuery(commands[0].command, "1400000001", NOW_SECONDS));
    expect(await run(url, text)).toMatchObject({ stage: "normalize", status: 400, code: "too_deep" });
  });
});

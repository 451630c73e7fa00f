/** Runs one provider's pure steps in order and says where a callback stopped, for unit tests. */
import { expect, it } from "vitest";
import type { EventTime, Parsed, Provider, RawCallback } from "../../src/providers/provider";
import type { Receipt } from "../../src/receipt";

export type Stage =
  | { stage: "parse" | "verify" | "normalize"; status: number; code: string; message: string }
  | { stage: "done"; kind: "ignored"; event: string }
  | { stage: "done"; kind: "receipt"; receipt: Receipt };

/** A batching provider's (Meta's) stages: its `done` makes any number of receipts. */
export type BatchStage =
  | Exclude<Stage, { stage: "done" }>
  | { stage: "done"; kind: "receipts"; receipts: { receipt: Receipt; eventTime: EventTime }[]; ignored: Record<string, number>; invalid: string[] };

/** Parse, verify, normalize: where the callback stopped, or what it normalized to. */
async function stages<Config, Envelope>(provider: Provider<Config, Envelope>, raw: RawCallback, config: Config, now: number, receivedAt: string) {
  const parsed = provider.parse(raw);
  if (!parsed.ok) return { stage: "parse" as const, ...parsed.rejection };
  const refused = await provider.verify(parsed.value, config, now);
  if (refused) return { stage: "verify" as const, ...refused };
  const normalized = await provider.normalize(parsed.value, { receivedAt });
  if (!normalized.ok) return { stage: "normalize" as const, ...normalized.rejection };
  return { stage: "done" as const, ...normalized.value };
}

export async function runProvider<Config, Envelope>(
  provider: Provider<Config, Envelope>,
  raw: RawCallback,
  config: Config,
  now: number,
  receivedAt: string,
): Promise<Stage> {
  const result = await stages(provider, raw, config, now, receivedAt);
  if (result.stage === "done" && result.kind === "receipts") throw new Error("a batch: use runBatchProvider");
  return result;
}

/** `runProvider` for a provider whose callbacks are batches (Meta): parse, verify, normalize. */
export async function runBatchProvider<Config, Envelope>(
  provider: Provider<Config, Envelope>,
  raw: RawCallback,
  config: Config,
  now: number,
  receivedAt: string,
): Promise<BatchStage> {
  const result = await stages(provider, raw, config, now, receivedAt);
  if (result.stage === "done" && result.kind !== "receipts") throw new Error(`not a batch: ${result.kind}`);
  return result;
}

/** The receipt a run produced, or a failure that shows where it stopped. */
export function receiptFrom(result: Stage): Receipt {
  if (result.stage !== "done" || result.kind !== "receipt") throw new Error(`no receipt: ${JSON.stringify(result)}`);
  return result.receipt;
}

export const bodyText = (body: unknown) => (typeof body === "string" ? body : JSON.stringify(body));

/** A raw callback as the router hands it over: path segments after the provider, body text, headers. */
export function rawCallback(
  body: unknown,
  { url = "https://relay.test/v1/hooks/x", path = [] as string[], headers = {} as Record<string, string> } = {},
): RawCallback {
  const text = bodyText(body);
  return { url: new URL(url), path, body: text, bytes: new TextEncoder().encode(text), headers: new Headers(headers) };
}

/**
 * The cases every provider that signs its raw body shares (Stream, Sendbird, TalkJS): a path below
 * its hook is 404, and a signed body that is not a JSON object is 400 with its own code. `run`
 * signs and runs a body's text; `belowHook` parses a callback addressed below the hook.
 */
export function itRefusesWhatIsNotItsBody(run: (text: string) => Promise<Stage>, belowHook: () => Promise<Parsed<unknown>>): void {
  it("answers 404 for a path below the hook", async () => {
    expect(await belowHook()).toMatchObject({ ok: false, rejection: { status: 404, code: "unknown_path" } });
  });

  it.each([
    ["not JSON", "{", "invalid_json"],
    ["empty", "", "empty_body"],
    ["an array", "[]", "invalid_body"],
  ])("refuses a signed body that is %s with 400", async (_, text, code) => {
    expect(await run(text)).toMatchObject({ stage: "normalize", status: 400, code });
  });
}

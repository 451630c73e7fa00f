/** Runs one provider's pure steps in order and says where a callback stopped, for unit tests. */
import type { EventTime, Provider, RawCallback } from "../../src/providers/provider";
import type { Receipt } from "../../src/receipt";

export type Stage =
  | { stage: "parse" | "verify" | "normalize"; status: number; code: string; message: string }
  | { stage: "done"; kind: "ignored"; event: string }
  | { stage: "done"; kind: "receipt"; receipt: Receipt };

/** A batching provider's (Meta's) stages: its `done` makes any number of receipts. */
export type BatchStage =
  | Exclude<Stage, { stage: "done" }>
  | { stage: "done"; kind: "receipts"; receipts: { receipt: Receipt; eventTime: EventTime }[]; ignored: Record<string, number> };

export async function runProvider<Config, Envelope>(
  provider: Provider<Config, Envelope>,
  raw: RawCallback,
  config: Config,
  now: number,
  receivedAt: string,
): Promise<Stage> {
  const parsed = provider.parse(raw);
  if (!parsed.ok) return { stage: "parse", ...parsed.rejection };
  const refused = await provider.verify(parsed.value, config, now);
  if (refused) return { stage: "verify", ...refused };
  const normalized = await provider.normalize(parsed.value, { receivedAt });
  if (!normalized.ok) return { stage: "normalize", ...normalized.rejection };
  if (normalized.value.kind === "receipts") throw new Error("a batch: use runBatchProvider");
  return { stage: "done", ...normalized.value };
}

/** `runProvider` for a provider whose callbacks are batches (Meta): parse, verify, normalize. */
export async function runBatchProvider<Config, Envelope>(
  provider: Provider<Config, Envelope>,
  raw: RawCallback,
  config: Config,
  now: number,
  receivedAt: string,
): Promise<BatchStage> {
  const parsed = provider.parse(raw);
  if (!parsed.ok) return { stage: "parse", ...parsed.rejection };
  const refused = await provider.verify(parsed.value, config, now);
  if (refused) return { stage: "verify", ...refused };
  const normalized = await provider.normalize(parsed.value, { receivedAt });
  if (!normalized.ok) return { stage: "normalize", ...normalized.rejection };
  if (normalized.value.kind !== "receipts") throw new Error(`not a batch: ${normalized.value.kind}`);
  return { stage: "done", ...normalized.value };
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

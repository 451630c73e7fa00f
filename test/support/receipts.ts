/** Normalized receipts for tests that talk to the object directly. */
import { expect } from "vitest";
import { env } from "cloudflare:workers";
import { conversationStub } from "../../src/conversation-stub";
import type { Receipt } from "../../src/receipt";
import { unique } from "./callbacks";
import { publishNow, runAlarm } from "./conversation-object";
import { script } from "./origin-control";

export function makeReceipt(conversation: string, n: number, overrides: Partial<Receipt> = {}): Receipt {
  return {
    id: `test:${conversation}:${n}`,
    provider: "tencent",
    event: "C2C.CallbackAfterMsgReport",
    app: "1400000001",
    chat: "single",
    conversation,
    readers: ["alice"],
    peer: "bob",
    messages: [{ seq: n }],
    readAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    receivedAt: new Date().toISOString(),
    raw: { n },
    ...overrides,
  };
}

export function newConversation(): string {
  return unique("tencent:1400000001:u:alice:bob-");
}

export const stubFor = (conversation: string) => conversationStub(env, conversation);

/** Accepts receipts `from`..`from + count - 1` of a conversation, each for the first time; their ids in order. */
export async function acceptAll(conversation: string, from: number, count: number): Promise<string[]> {
  const stub = stubFor(conversation);
  const ids: string[] = [];
  for (let n = from; n < from + count; n++) {
    const receipt = makeReceipt(conversation, n);
    expect(await stub.accept(receipt)).toBe("accepted");
    ids.push(receipt.id);
  }
  return ids;
}

/**
 * A conversation with `receipts` receipts, delivered once and published to the index; the origin
 * refuses the first `refused` deliveries (400: dead letters at once).
 */
export async function published(conversation: string, receipts: number, { refused = 0 } = {}): Promise<void> {
  const stub = stubFor(conversation);
  if (refused > 0)
    await script(
      conversation,
      Array.from({ length: refused }, () => ({ status: 400 })),
    );
  for (let n = 1; n <= receipts; n++) await stub.accept(makeReceipt(conversation, n));
  await runAlarm(stub);
  await publishNow(stub);
}

/** A conversation whose `receipts` deliveries the origin all refuses, published to the index. */
export const withDeadLetters = (conversation: string, receipts: number): Promise<void> => published(conversation, receipts, { refused: receipts });

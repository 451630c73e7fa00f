/**
 * The per-receipt bounds (src/receipt.ts, docs/design.md "Bounds") under fuzzing: whatever lists a
 * provider makes, the receipt that is stored stays within them and says what it left out.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_MESSAGES_PER_RECEIPT, MAX_READERS_PER_RECEIPT, Receipt, withinBounds } from "../../src/receipt";
import { RECEIVED_AT, settings } from "./arbitraries";

/** Lists from empty to past the bounds (the providers name each reader once). */
const names = fc.integer({ min: 0, max: MAX_READERS_PER_RECEIPT + 50 }).map((count) => Array.from({ length: count }, (_, i) => `r${i}`));
const receipts = fc
  .record({
    readers: names,
    messages: fc.integer({ min: 0, max: MAX_MESSAGES_PER_RECEIPT + 50 }),
    perMessage: fc.integer({ min: 0, max: 8 }),
  })
  .map(({ readers, messages, perMessage }): Receipt => ({
    id: "tencent:fuzz",
    provider: "tencent",
    event: "Group.CallbackAfterReadReceipt",
    app: "1400000001",
    chat: "group",
    conversation: "tencent:1400000001:g:fuzz",
    readers,
    group: "fuzz",
    messages: Array.from({ length: messages }, (_, i) => ({ seq: i, readers: readers.filter((_, at) => (at + i) % 9 < perMessage) })),
    readAt: RECEIVED_AT,
    receivedAt: RECEIVED_AT,
    raw: {},
  }));

describe("per-receipt bounds", () => {
  it("keep every receipt within them, count exactly what they leave out, and keep each message's readers among the kept", () => {
    let overBound = 0;
    fc.assert(
      fc.property(receipts, (receipt) => {
        const bounded = withinBounds(receipt);
        if (receipt.readers.length > MAX_READERS_PER_RECEIPT || receipt.messages.length > MAX_MESSAGES_PER_RECEIPT) overBound++;
        expect(Receipt.safeParse(bounded).success).toBe(true);
        expect(bounded.readers.length).toBeLessThanOrEqual(MAX_READERS_PER_RECEIPT);
        expect(bounded.messages.length).toBeLessThanOrEqual(MAX_MESSAGES_PER_RECEIPT);
        expect(bounded.readers).toEqual(receipt.readers.slice(0, MAX_READERS_PER_RECEIPT));
        expect(bounded.messages.map((message) => message.seq)).toEqual(receipt.messages.slice(-MAX_MESSAGES_PER_RECEIPT).map((message) => message.seq));
        const droppedReaders = receipt.readers.length - bounded.readers.length;
        const droppedMessages = receipt.messages.length - bounded.messages.length;
        expect(bounded.truncated?.readers ?? 0).toBe(droppedReaders);
        expect(bounded.truncated?.messages ?? 0).toBe(droppedMessages);
        if (droppedReaders === 0 && droppedMessages === 0) expect(bounded).toBe(receipt);
        const kept = new Set(bounded.readers);
        for (const message of bounded.messages) expect((message.readers ?? []).every((reader) => kept.has(reader))).toBe(true);
      }),
      settings(100),
    );
    // The runs did reach past the bounds.
    expect(overBound).toBeGreaterThan(10);
  });
});

import { describe, expect, it } from "vitest";
import { foldReadState, type ReadState } from "../src/conversation/read-state";
import type { Receipt } from "../src/receipt";

const base: Receipt = {
  id: "r1",
  provider: "tencent",
  event: "Group.CallbackAfterReadReceipt",
  app: "1",
  chat: "group",
  conversation: "tencent:1:g:g",
  readers: ["a", "b"],
  group: "g",
  messages: [],
  readAt: "2026-01-01T00:00:10.000Z",
  receivedAt: "2026-01-01T00:00:11.000Z",
  raw: {},
};
const receipt = (overrides: Partial<Receipt>): Receipt => ({ ...base, ...overrides });

describe("foldReadState", () => {
  it("starts from the first receipt", () => {
    const state = foldReadState(
      undefined,
      receipt({
        messages: [
          { id: "m1", seq: 4 },
          { id: "m2", seq: 5 },
        ],
        unreadTotal: 3,
      }),
      "a",
    );
    expect(state).toEqual({ reader: "a", lastReadAt: base.readAt, receiptId: "r1", messageId: "m2", seq: 5, unreadTotal: 3 });
  });

  it("counts a message with a readers list only for the readers it names", () => {
    const group = receipt({
      messages: [
        { seq: 7, readers: ["a"] },
        { seq: 6, readers: ["a", "b"] },
      ],
    });
    expect(foldReadState(undefined, group, "a").seq).toBe(7);
    expect(foldReadState(undefined, group, "b").seq).toBe(6);
  });

  it("moves marks forward only, and the latest fields follow the latest readAt", () => {
    let state: ReadState | undefined;
    state = foldReadState(
      state,
      receipt({ id: "new", readAt: "2026-01-01T00:01:00.000Z", messages: [{ id: "m9", seq: 9 }], upTo: { time: "2026-01-01T00:00:59.000Z" } }),
      "a",
    );
    // An older receipt arriving late changes nothing it should not.
    state = foldReadState(
      state,
      receipt({
        id: "old",
        readAt: "2026-01-01T00:00:01.000Z",
        messages: [{ id: "m3", seq: 3 }],
        upTo: { time: "2026-01-01T00:00:00.000Z", seq: 2 },
        unreadTotal: 99,
      }),
      "a",
    );
    expect(state).toEqual({
      reader: "a",
      lastReadAt: "2026-01-01T00:01:00.000Z",
      receiptId: "new",
      messageId: "m9",
      seq: 9,
      time: "2026-01-01T00:00:59.000Z",
    });
    // A newer one with a higher upTo.seq but no message id keeps the last id.
    state = foldReadState(state, receipt({ id: "newer", readAt: "2026-01-01T00:02:00.000Z", upTo: { seq: 12 }, unreadTotal: 0 }), "a");
    expect(state).toMatchObject({ receiptId: "newer", messageId: "m9", seq: 12, unreadTotal: 0 });
  });
});

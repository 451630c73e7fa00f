// Conversation keys: the same for both users, distinct for distinct chats, path-safe.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { groupConversationKey, readerConversationKey, singleConversationKey } from "../src/receipt";

const id = fc.string({ unit: "grapheme", minLength: 1, maxLength: 24 });
const provider = fc.constantFrom("easemob" as const, "tencent" as const, "openim" as const);

describe("conversation keys", () => {
  it("are the same for both users of a one-to-one chat", () => {
    fc.assert(fc.property(provider, id, id, id, (name, app, a, b) => singleConversationKey(name, app, a, b) === singleConversationKey(name, app, b, a)));
  });

  it("never collide between different chats, apps, providers or kinds, whatever the ids hold", () => {
    const chat = fc.oneof(
      fc
        .tuple(provider, id, id, id)
        .map(([name, app, a, b]) => ({ key: singleConversationKey(name, app, a, b), identity: JSON.stringify([name, app, "u", ...[a, b].sort()]) })),
      fc
        .tuple(provider, id, id)
        .map(([name, app, group]) => ({ key: groupConversationKey(name, app, group), identity: JSON.stringify([name, app, "g", group]) })),
      fc
        .tuple(provider, id, id)
        .map(([name, app, reader]) => ({ key: readerConversationKey(name, app, reader), identity: JSON.stringify([name, app, "r", reader]) })),
    );
    fc.assert(
      fc.property(chat, chat, (left, right) => (left.identity === right.identity) === (left.key === right.key)),
      { numRuns: 2000 },
    );
  });

  it("hold no separator or path character inside a part, and decode back to the ids", () => {
    fc.assert(
      fc.property(provider, id, id, id, (name, app, a, b) => {
        const key = singleConversationKey(name, app, a, b);
        expect(key).not.toMatch(/[/?#\s]/);
        const parts = key.split(":").map(decodeURIComponent);
        expect(parts.slice(0, 3)).toEqual([name, app, "u"]);
        expect(parts.slice(3).sort()).toEqual([a, b].sort());
      }),
    );
  });
});

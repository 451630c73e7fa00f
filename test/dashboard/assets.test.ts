// The dashboard's browser script (src/dashboard/browser/, built into src/dashboard/assets/script.generated.ts),
// the formatting it shares with the server-rendered pages (src/dashboard/format.ts) and the live
// events' schema it shares with the conversation's object (src/conversation/live-event.ts).
import { describe, expect, it } from "vitest";
import { LiveEvent } from "../../src/conversation/live-event";
import { SCRIPT } from "../../src/dashboard/assets";
import { durationText, messagesText, readersText, timeText } from "../../src/dashboard/format";

describe("the browser script", () => {
  it("is one classic script: no module syntax, nothing it would fetch", () => {
    expect(SCRIPT.body.startsWith('"use strict";\n(() => {')).toBe(true);
    expect(SCRIPT.body).not.toMatch(/^\s*(import|export)\b/m);
    expect(SCRIPT.body).not.toMatch(/\bimport\s*\(/);
  });

  it("carries the pages' formatting, bundled from format.ts rather than written again", () => {
    expect(SCRIPT.body).toContain("// src/dashboard/format.ts");
    for (const name of ["timeText", "durationText", "readersText", "messagesText"]) expect(SCRIPT.body).toContain(`function ${name}(`);
  });

  it("checks live events with live-event.ts's schema, bundling zod/mini only, not zod's whole API", () => {
    expect(SCRIPT.body).toContain("// src/conversation/live-event.ts");
    expect(SCRIPT.body).toContain("// node_modules/zod/v4/mini/");
    expect(SCRIPT.body).not.toContain("// node_modules/zod/v4/classic/");
    // About 58 KB as built (17 KB before zod); zod's classic API would make it near 800 KB.
    expect(SCRIPT.body.length).toBeLessThan(80_000);
  });
});

describe("the live events' schema", () => {
  const receipt = { id: "r1", event: "read", readAt: "2026-12-03T10:00:00.000Z", readers: ["alice"], messages: [{ id: "m1" }, { seq: 7 }] };
  const delivery = {
    type: "delivery",
    destination: "origin",
    receiptIds: ["r1"],
    outcome: "delivered",
    status: 200,
    ms: 12,
    attempt: 1,
    at: "2026-12-03T10:00:01.000Z",
  };

  it("takes each event the object sends, the receipt's fields the pages do not read left out", () => {
    const sent = { type: "receipt", seq: 1, acceptedAt: "2026-12-03T10:00:00.500Z", receipt: { ...receipt, provider: "tencent", raw: { a: 1 } } };
    expect(LiveEvent.parse(sent)).toEqual({ ...sent, receipt });
    expect(LiveEvent.parse(delivery)).toEqual(delivery);
    expect(LiveEvent.parse({ type: "requeued", count: 2, at: "2026-12-03T10:00:02.000Z" })).toMatchObject({ count: 2 });
    expect(LiveEvent.parse({ type: "hello", conversation: "c", at: "2026-12-03T10:00:00.000Z" })).toMatchObject({ type: "hello" });
  });

  it("refuses what the pages could not show, which the script drops", () => {
    for (const message of [
      null,
      "receipt",
      { type: "unknown", at: "2026-12-03T10:00:00.000Z" },
      { type: "receipt", seq: 1, acceptedAt: "2026-12-03T10:00:00.500Z", receipt: { ...receipt, readers: "alice" } },
      { type: "receipt", seq: 1, acceptedAt: "2026-12-03T10:00:00.500Z", receipt: { ...receipt, id: undefined } },
      { ...delivery, receiptIds: [] },
      { ...delivery, outcome: "lost" },
      { type: "requeued", at: "2026-12-03T10:00:02.000Z" },
    ]) {
      expect(LiveEvent.safeParse(message).success, JSON.stringify(message)).toBe(false);
    }
  });
});

describe("the shared formatting", () => {
  it("writes times as the pages always have, and anything else as it came", () => {
    expect(timeText("2026-12-03T10:00:00.123Z")).toBe("2026-12-03 10:00:00 UTC");
    expect(timeText("2026-12-03T11:00:00+01:00")).toBe("2026-12-03 10:00:00 UTC");
    expect(timeText("not a time")).toBe("not a time");
  });

  it("writes durations in ms, s, min or h, and '-' when there is none", () => {
    expect([999, 1500, 119_999, 120_000, 7_199_999, 7_200_000].map(durationText)).toEqual(["999 ms", "1.5 s", "120.0 s", "2 min", "120 min", "2.0 h"]);
    expect([null, undefined, Number.NaN].map(durationText)).toEqual(["-", "-", "-"]);
  });

  it("names readers and messages as a receipt row does, whatever a socket sent", () => {
    expect(readersText([])).toBe("-");
    expect(readersText(["a", "b"])).toBe("a, b");
    expect(messagesText({ messages: [{ id: "m1" }, { seq: 7 }, {}] })).toBe("m1, #7, ?");
    expect(messagesText({ messages: [], upTo: { seq: 12 } })).toBe("up to #12");
    expect(messagesText({ messages: [], upTo: { time: "2026-12-03T10:00:00Z" } })).toBe("up to 2026-12-03 10:00:00 UTC");
    expect(messagesText({ messages: [] })).toBe("-");
  });
});

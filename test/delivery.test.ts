// The delivery rules and the Standard Webhooks signature, as plain functions.
import { describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import fc from "fast-check";
import { attemptDelivery, classify, MAX_RETRY_AFTER_MS, nextAttemptDelay, parseRetryAfter, RETRY_JITTER } from "../src/delivery/attempt";
import { signWebhook, webhookBody, webhookHeaders } from "../src/delivery/webhook";
import { fromBase64 } from "../src/crypto/encoding";
import { DEFAULT_RETRY_SCHEDULE } from "../src/settings";
import { makeReceipt } from "./support/receipts";
import { ROTATED_FORWARD_SECRET } from "./support/origin-types";
import { TEST_FORWARD_SECRET } from "./support/settings";

const keyOf = (secret: string) => {
  const key = fromBase64(secret.slice("whsec_".length));
  if (!key) throw new Error("a test secret is not base64");
  return key;
};
const key = keyOf(TEST_FORWARD_SECRET);
const rotatedKey = keyOf(ROTATED_FORWARD_SECRET);
const NOW = Date.parse("2026-11-22T00:00:00Z");

describe("Standard Webhooks signature", () => {
  it("matches the library's own signer byte for byte", async () => {
    const body = '{"a":1}';
    const library = new Webhook(TEST_FORWARD_SECRET).sign("msg_1", new Date(NOW), body);
    expect(await signWebhook(key, "msg_1", NOW / 1000, body)).toBe(library);
  });

  it("signs once per FORWARD_SECRET, so that an origin holding either secret verifies", async () => {
    const body = webhookBody(makeReceipt("tencent:1:u:a:b", 1));
    const headers = await webhookHeaders([rotatedKey, key], "tencent:abc", Date.now(), body);
    const signatures = headers["webhook-signature"]!.split(" ");
    expect(signatures).toHaveLength(2);
    expect(signatures.every((signature) => /^v1,[A-Za-z0-9+/]+=*$/.test(signature))).toBe(true);
    for (const secret of [ROTATED_FORWARD_SECRET, TEST_FORWARD_SECRET]) {
      expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
    }
  });

  it("wraps the receipt as receipt.read, timestamped with readAt", () => {
    const receipt = makeReceipt("tencent:1:u:a:b", 7);
    expect(JSON.parse(webhookBody(receipt))).toEqual({ type: "receipt.read", timestamp: receipt.readAt, data: receipt });
  });
});

describe("classify", () => {
  // One status per rule, and the edges of the ranges.
  it.each([
    [200, "delivered"],
    [299, "delivered"],
    [408, "retry"],
    [429, "retry"],
    [500, "retry"],
    [400, "give_up"],
    [499, "give_up"],
    [301, "give_up"],
  ])("%i → %s", (status, kind) => {
    expect(classify(status, null, "", NOW).kind).toBe(kind);
  });

  it("keeps Retry-After on retryable answers", () => {
    expect(classify(429, "7", "slow down", NOW)).toEqual({ kind: "retry", status: 429, error: "destination answered 429: slow down", retryAfterMs: 7000 });
  });
});

describe("parseRetryAfter", () => {
  it("reads seconds and HTTP dates, caps them, and ignores nonsense", () => {
    expect(parseRetryAfter("120", NOW)).toBe(120_000);
    expect(parseRetryAfter(new Date(NOW + 30_000).toUTCString(), NOW)).toBe(30_000);
    expect(parseRetryAfter(new Date(NOW - 30_000).toUTCString(), NOW)).toBe(0);
    expect(parseRetryAfter("99999999", NOW)).toBe(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter("soon", NOW)).toBeUndefined();
    expect(parseRetryAfter(null, NOW)).toBeUndefined();
  });
});

describe("nextAttemptDelay", () => {
  it("walks the schedule, then gives up", () => {
    const delays = DEFAULT_RETRY_SCHEDULE.map((_, i) => nextAttemptDelay(DEFAULT_RETRY_SCHEDULE, i + 1));
    expect(delays).toEqual(DEFAULT_RETRY_SCHEDULE.map((seconds) => seconds * 1000));
    expect(nextAttemptDelay(DEFAULT_RETRY_SCHEDULE, DEFAULT_RETRY_SCHEDULE.length + 1)).toBeUndefined();
  });

  it("spreads each step by RETRY_JITTER either way: random 0 is the shortest, 0.5 the step, 1 the longest", () => {
    expect(RETRY_JITTER).toBe(0.2);
    expect([0, 0.5, 1].map((random) => nextAttemptDelay([30], 1, undefined, random))).toEqual([24_000, 30_000, 36_000]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 86_400 }), fc.double({ min: 0, max: 1, noNaN: true }), (seconds, random) => {
        const delay = nextAttemptDelay([seconds], 1, undefined, random);
        expect(delay).toBeGreaterThanOrEqual(Math.round(seconds * 1000 * (1 - RETRY_JITTER)));
        expect(delay).toBeLessThanOrEqual(Math.round(seconds * 1000 * (1 + RETRY_JITTER)));
      }),
    );
  });

  it("lets Retry-After lengthen a step, and never shortens a Retry-After, whatever the jitter", () => {
    expect(nextAttemptDelay([5, 30], 1, 60_000, 1)).toBe(60_000);
    expect(nextAttemptDelay([5, 30], 1, 1000, 0)).toBe(4000);
    // Jitter below the step cannot cut a Retry-After that equals the step.
    expect(nextAttemptDelay([30], 1, 30_000, 0)).toBe(30_000);
    expect(nextAttemptDelay([5], 2, 60_000)).toBeUndefined();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 86_400 }),
        fc.integer({ min: 0, max: MAX_RETRY_AFTER_MS }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (seconds, retryAfterMs, random) => {
          const delay = nextAttemptDelay([seconds], 1, retryAfterMs, random);
          expect(delay).toBe(Math.max(retryAfterMs, nextAttemptDelay([seconds], 1, undefined, random) ?? 0));
          expect(delay).toBeGreaterThanOrEqual(retryAfterMs);
        },
      ),
    );
  });
});

describe("attemptDelivery", () => {
  const request = { url: "https://origin.test/receipts", keys: [key], id: "id-1", body: "{}", timeoutMs: 50 };

  it("sends a signed POST and reads the status", async () => {
    let seen: Request | undefined;
    const result = await attemptDelivery(request, Date.now(), async (input, init) => {
      seen = new Request(input, init);
      return new Response(null, { status: 204 });
    });
    expect(result).toEqual({ kind: "delivered", status: 204 });
    expect(seen?.method).toBe("POST");
    expect(seen?.headers.get("webhook-id")).toBe("id-1");
  });

  it("retries network errors and timeouts, keeping a short error body for 4xx", async () => {
    const refused = await attemptDelivery(request, NOW, () => Promise.reject(new TypeError("connection refused")));
    expect(refused).toEqual({ kind: "retry", error: "network error: connection refused" });
    const hanging = await attemptDelivery(
      request,
      NOW,
      (_, init) => new Promise((_, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason))),
    );
    expect(hanging).toEqual({ kind: "retry", error: "no answer within 50 ms" });
    const rejected = await attemptDelivery(request, NOW, async () => new Response("bad\n payload " + "x".repeat(1000), { status: 422 }));
    expect(rejected.kind).toBe("give_up");
    expect(rejected.kind === "give_up" && rejected.error.length).toBeLessThan(340);
  });
});

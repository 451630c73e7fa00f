// The delivery rules and the Standard Webhooks signature, as plain functions.
import { describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import { attemptDelivery, classify, MAX_RETRY_AFTER_MS, nextAttemptDelay, parseRetryAfter } from "../src/delivery/attempt";
import { signWebhook, webhookBody, webhookHeaders } from "../src/delivery/webhook";
import { fromBase64 } from "../src/crypto/encoding";
import { DEFAULT_RETRY_SCHEDULE } from "../src/settings";
import { makeReceipt } from "./support/receipts";
import { TEST_FORWARD_SECRET } from "./support/settings";

const key = fromBase64(TEST_FORWARD_SECRET.slice("whsec_".length))!;
const NOW = Date.parse("2026-11-22T00:00:00Z");

describe("Standard Webhooks signature", () => {
  it("verifies with the standardwebhooks package", async () => {
    const body = JSON.stringify({ type: "receipt.read", timestamp: "2026-11-22T00:00:00.000Z", data: { id: "x" } });
    const headers = await webhookHeaders(key, "easemob:app_1", Date.now(), body);
    expect(new Webhook(TEST_FORWARD_SECRET).verify(body, headers)).toEqual(JSON.parse(body));
    expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
  });

  it("matches the library's own signer byte for byte", async () => {
    const body = '{"a":1}';
    const library = new Webhook(TEST_FORWARD_SECRET).sign("msg_1", new Date(NOW), body);
    expect(await signWebhook(key, "msg_1", NOW / 1000, body)).toBe(library);
  });

  it("is refused by the library when the body changes", async () => {
    const headers = await webhookHeaders(key, "id", Date.now(), '{"a":1}');
    expect(() => new Webhook(TEST_FORWARD_SECRET).verify('{"a":2}', headers)).toThrow();
  });

  it("wraps the receipt as receipt.read, timestamped with readAt", () => {
    const receipt = makeReceipt("tencent:1:u:a:b", 7);
    expect(JSON.parse(webhookBody(receipt))).toEqual({ type: "receipt.read", timestamp: receipt.readAt, data: receipt });
  });
});

describe("classify", () => {
  it.each([
    [200, "delivered"],
    [204, "delivered"],
    [408, "retry"],
    [429, "retry"],
    [500, "retry"],
    [503, "retry"],
    [400, "give_up"],
    [401, "give_up"],
    [404, "give_up"],
    [410, "give_up"],
    [301, "give_up"],
  ])("%i → %s", (status, kind) => {
    expect(classify(status, null, "", NOW).kind).toBe(kind);
  });

  it("keeps Retry-After on retryable answers", () => {
    expect(classify(429, "7", "slow down", NOW)).toEqual({ kind: "retry", status: 429, error: "origin answered 429: slow down", retryAfterMs: 7000 });
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

  it("lets Retry-After lengthen a step, never shorten it", () => {
    expect(nextAttemptDelay([5, 30], 1, 60_000)).toBe(60_000);
    expect(nextAttemptDelay([5, 30], 1, 1000)).toBe(5000);
    expect(nextAttemptDelay([5], 2, 60_000)).toBeUndefined();
  });
});

describe("attemptDelivery", () => {
  const request = { url: "https://origin.test/receipts", key, id: "id-1", body: "{}", timeoutMs: 50 };

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

// Metrics: the data points' columns (docs/metrics.md), writers that never throw, and one point per callback through the worker.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { app } from "../src/app";
import { callbackDataPoint, deliveryDataPoint, providerOf, recordCallback, recordDelivery, type DataPoint } from "../src/ops/metrics";
import { copy, samples, signedEasemob, tencentPath, unique } from "./support/callbacks";

/** A dataset that keeps what it is given. */
function recordingDataset(): AnalyticsEngineDataset & { points: DataPoint[] } {
  const points: DataPoint[] = [];
  return { points, writeDataPoint: (point) => void points.push(point as DataPoint) };
}

const throwingDataset: AnalyticsEngineDataset = {
  writeDataPoint() {
    throw new Error("analytics engine is down");
  },
};

describe("data points", () => {
  it("a callback: kind, provider, event, outcome, class; status, ms, 0; the provider as index", () => {
    expect(callbackDataPoint({ provider: "easemob", event: "read_ack", outcome: "accepted", refused: false, status: 200, ms: 12 })).toEqual({
      indexes: ["easemob"],
      blobs: ["callback", "easemob", "read_ack", "accepted", "ok"],
      doubles: [200, 12, 0],
    });
    expect(callbackDataPoint({ provider: "tencent", outcome: "bad_signature", refused: true, status: 401, ms: 3 })).toEqual({
      indexes: ["tencent"],
      blobs: ["callback", "tencent", "", "bad_signature", "refused"],
      doubles: [401, 3, 0],
    });
  });

  it("a delivery: the provider comes from the conversation key, which is not recorded", () => {
    const conversation = "easemob:app%23key:u:alice:bob";
    const point = deliveryDataPoint({ conversation, destination: "crm", event: "read_ack", outcome: "delivered", status: 204, ms: 87, attempt: 1 });
    expect(point).toEqual({ indexes: ["easemob"], blobs: ["delivery", "easemob", "read_ack", "delivered", "ok", "crm"], doubles: [204, 87, 1] });
    expect(JSON.stringify(point)).not.toContain("alice");
    // A timeout has no status: 0.
    expect(deliveryDataPoint({ conversation, outcome: "retry", ms: 10_000, attempt: 3 })).toEqual({
      indexes: ["easemob"],
      blobs: ["delivery", "easemob", "", "retry", "failed", ""],
      doubles: [0, 10_000, 3],
    });
    for (const outcome of ["give_up", "dead_letter"] as const) {
      expect(deliveryDataPoint({ conversation, outcome, status: 410, ms: 5, attempt: 2 }).blobs.slice(3, 5)).toEqual([outcome, "failed"]);
    }
  });

  it("blobs are bounded, numbers finite and never negative", () => {
    const point = callbackDataPoint({ provider: "stream", event: "x".repeat(500), outcome: "ignored", refused: false, status: 200, ms: -4 });
    expect(point.blobs[2]).toHaveLength(64);
    expect(point.doubles).toEqual([200, 0, 0]);
    expect(deliveryDataPoint({ conversation: "sendbird:a:g:b", outcome: "retry", ms: Number.NaN, attempt: 1 }).doubles).toEqual([0, 0, 1]);
  });

  it("providerOf reads the first part of a conversation key", () => {
    expect(providerOf("openim:app:r:u1")).toBe("openim");
    expect(providerOf("")).toBe("");
    expect(providerOf("%E0%A4%A:x")).toBe("%E0%A4%A");
  });
});

describe("writers", () => {
  it("write one point each to the dataset", () => {
    const dataset = recordingDataset();
    recordCallback(dataset, { provider: "openim", event: "e", outcome: "duplicate", refused: false, status: 200, ms: 1 });
    recordDelivery(dataset, { conversation: "openim:a:u:x:y", outcome: "dead_letter", status: 500, ms: 2, attempt: 10 });
    expect(dataset.points.map((point) => point.blobs[0])).toEqual(["callback", "delivery"]);
  });

  it("do nothing without the binding, and never throw", () => {
    expect(() => recordCallback(undefined, { provider: "easemob", outcome: "accepted", refused: false, status: 200, ms: 1 })).not.toThrow();
    expect(() => recordDelivery(undefined, { conversation: "easemob:a:g:b", outcome: "delivered", status: 200, ms: 1, attempt: 1 })).not.toThrow();
    expect(() => recordCallback(throwingDataset, { provider: "easemob", outcome: "accepted", refused: false, status: 200, ms: 1 })).not.toThrow();
    expect(() => recordDelivery(throwingDataset, { conversation: "easemob:a:g:b", outcome: "delivered", status: 200, ms: 1, attempt: 1 })).not.toThrow();
  });
});

describe("through the worker", () => {
  const fetchWith = async (metrics: AnalyticsEngineDataset | undefined, path: string, init: RequestInit = {}) => {
    const request = new Request(`http://relay.test${path}`, {
      method: "POST",
      ...init,
      headers: { "content-type": "application/json", "cf-connecting-ip": `2001:db8::${crypto.randomUUID().slice(0, 4)}`, ...init.headers },
    });
    const context = createExecutionContext();
    const response = await app.fetch(request, { ...env, METRICS: metrics }, context);
    await waitOnExecutionContext(context);
    return response;
  };
  const easemobBody = async () =>
    JSON.stringify(await signedEasemob(copy(samples.easemob.single, { callId: `${unique("app#key_")}${Date.now()}`, from: unique("reader-") })));

  it("the tests' wrangler.toml binds METRICS (Miniflare simulates it: writes go nowhere)", () => {
    expect(typeof env.METRICS?.writeDataPoint).toBe("function");
  });

  it("an accepted callback, then its duplicate, each write one point", async () => {
    const dataset = recordingDataset();
    const body = await easemobBody();
    expect((await fetchWith(dataset, "/v1/hooks/easemob", { body })).status).toBe(200);
    expect((await fetchWith(dataset, "/v1/hooks/easemob", { body })).status).toBe(200);
    expect(dataset.points.map((point) => point.blobs)).toEqual([
      ["callback", "easemob", "read_ack", "accepted", "ok"],
      ["callback", "easemob", "read_ack", "duplicate", "ok"],
    ]);
    expect(dataset.points.map((point) => point.doubles[0])).toEqual([200, 200]);
    expect(dataset.points.every((point) => point.indexes[0] === "easemob" && point.doubles[1]! >= 0)).toBe(true);
  });

  it("refusals carry their code, before and inside the pipeline", async () => {
    const dataset = recordingDataset();
    const forged = JSON.stringify({ ...JSON.parse(await easemobBody()), security: "0".repeat(32) });
    expect((await fetchWith(dataset, "/v1/hooks/easemob", { body: forged })).status).toBe(401);
    expect((await fetchWith(dataset, "/v1/hooks/tencent", { method: "GET", body: null })).status).toBe(405);
    expect((await fetchWith(dataset, "/v1/hooks/nosuch", { body: "{}" })).status).toBe(404);
    expect((await fetchWith(dataset, "/v1/hooks/openim", { body: "x".repeat(70 * 1024) })).status).toBe(413);
    expect(dataset.points.map((point) => [...point.blobs.slice(1), point.doubles[0]])).toEqual([
      ["easemob", "", "bad_signature", "refused", 401],
      ["tencent", "", "method_not_allowed", "refused", 405],
      ["unknown", "", "not_found", "refused", 404],
      ["openim", "", "body_too_large", "refused", 413],
    ]);
  });

  it("an authentic event that is not a receipt is recorded as ignored, with its event", async () => {
    const dataset = recordingDataset();
    const path = await tencentPath("C2C.CallbackAfterSendMsg");
    const response = await fetchWith(dataset, path, {
      body: JSON.stringify({ CallbackCommand: "C2C.CallbackAfterSendMsg", From_Account: "a", To_Account: "b" }),
    });
    expect(response.status).toBe(200);
    expect(dataset.points[0]?.blobs).toEqual(["callback", "tencent", "C2C.CallbackAfterSendMsg", "ignored", "ok"]);
  });

  it("a throwing dataset, or none, never changes an answer", async () => {
    for (const metrics of [throwingDataset, undefined]) {
      const response = await fetchWith(metrics, "/v1/hooks/easemob", { body: await easemobBody() });
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ status: "ok", result: "accepted" });
    }
  });
});

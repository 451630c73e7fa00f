// The pipeline with plain values: settings states and store outcomes, no bindings.
import { describe, expect, it } from "vitest";
import { ignoredEvents } from "../src/ingest";
import { hooks } from "../src/providers";
import type { Receipt } from "../src/receipt";
import { parseSettings, type SettingsResult } from "../src/settings";
import { copy, samples, signedEasemob } from "./support/callbacks";
import { rawCallback } from "./support/pipeline";

const easemobHook = hooks.get("easemob")!;
const configured = parseSettings({ EASEMOB_SECRET: "test-easemob-secret-1" });

async function signedRaw() {
  const body = await signedEasemob(copy(samples.easemob.single), { secret: "test-easemob-secret-1" });
  return rawCallback(body, { url: "https://relay.test/v1/hooks/easemob" });
}

async function handle(settings: SettingsResult, store: (receipt: Receipt) => Promise<"accepted" | "duplicate">) {
  return easemobHook.handle(await signedRaw(), { settings, now: Date.now(), store });
}

describe("ingest pipeline", () => {
  it("stores the normalized receipt and answers with what the store did", async () => {
    const stored: Receipt[] = [];
    const accepted = await handle(configured, async (receipt) => (stored.push(receipt), "accepted"));
    expect(accepted).toEqual({ status: 200, body: { status: "ok", result: "accepted" } });
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ provider: "easemob", event: "read_ack", readers: ["1111"] });
    const duplicate = await handle(configured, async () => "duplicate");
    expect(duplicate.body).toEqual({ status: "ok", result: "duplicate" });
  });

  it("answers 503 when the store cannot commit, so the provider may retry", async () => {
    const answer = await handle(configured, () => Promise.reject(new Error("object unreachable")));
    expect(answer).toMatchObject({ status: 503, body: { code: "store_unavailable" } });
  });

  it("says clearly that a provider without settings is disabled", async () => {
    const answer = await handle(parseSettings({}), async () => "accepted");
    expect(answer).toEqual({ status: 503, body: { status: "error", code: "provider_disabled", message: "easemob is not configured: set EASEMOB_SECRET" } });
    if (!configured.ok) throw new Error("test settings are invalid");
    expect(hooks.get("tencent")!.status(configured.settings)).toEqual({ enabled: false, missing: "TENCENT_SDKAPPID" });
    expect(hooks.get("easemob")!.status(configured.settings)).toEqual({ enabled: true });
  });

  it("fails every request on a malformed setting, naming it and not its value", async () => {
    const broken = parseSettings({ EASEMOB_SECRET: "test-easemob-secret-1", RECENT_LIMIT: "lots", FORWARD_SECRET: "whsec_sekrit" });
    for (const name of ["easemob", "tencent", "openim"]) {
      const answer = await hooks.get(name)!.handle(await signedRaw(), { settings: broken, now: Date.now(), store: async () => "accepted" });
      expect(answer.status).toBe(500);
      const text = JSON.stringify(answer.body);
      expect(text).toContain("RECENT_LIMIT");
      expect(text).toContain("FORWARD_SECRET");
      expect(text).not.toContain("sekrit");
    }
  });

  it("counts ignored events under bounded names", async () => {
    const settings = parseSettings({ TENCENT_SDKAPPID: "1400000001" });
    const tencentHook = hooks.get("tencent")!;
    const call = (command: string) =>
      tencentHook.handle(rawCallback("{}", { url: `https://relay.test/v1/hooks/tencent?SdkAppid=1400000001&CallbackCommand=${encodeURIComponent(command)}` }), {
        settings,
        now: Date.now(),
        store: async () => "accepted",
      });
    for (let i = 0; i < 80; i++) expect((await call(`Fake.Command${i}`)).status).toBe(200);
    await call("<script>".repeat(20));
    expect(ignoredEvents.size).toBeLessThanOrEqual(52);
    expect(ignoredEvents.get("tencent:other")).toBeGreaterThan(0);
    expect([...ignoredEvents.keys()].every((key) => key.length < 80 && !key.includes("<"))).toBe(true);
  });

  it("never crashes: a store that throws synchronously still gets an answer", async () => {
    const answer = await handle(configured, () => {
      throw new TypeError("boom");
    });
    expect(answer.status).toBe(503);
  });
});

import { describe, expect, it } from "vitest";
import { DEFAULT_RETRY_SCHEDULE, describeProblems, parseSettings } from "../src/settings";

describe("parseSettings", () => {
  it("gives every default when nothing is set", () => {
    const result = parseSettings({});
    expect(result).toEqual({
      ok: true,
      settings: {
        MAX_EVENT_AGE_SECONDS: 3600,
        RECENT_LIMIT: 100,
        FORWARD_RETRY_SCHEDULE: DEFAULT_RETRY_SCHEDULE,
        FORWARD_TIMEOUT_MS: 10000,
      },
    });
  });

  it("reads lists, numbers, the forward secret, and treats empty as unset", () => {
    const result = parseSettings({
      EASEMOB_SECRET: " one , two ",
      TENCENT_SDKAPPID: "1400000001,1400000002",
      TENCENT_TOKEN: "",
      OPENIM_TOKEN: "0123456789abcdef",
      MAX_EVENT_AGE_SECONDS: "60",
      RECENT_LIMIT: "5",
      ORIGIN_URL: "https://app.example/receipts",
      FORWARD_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      FORWARD_RETRY_SCHEDULE: "1, 2.5,3",
      FORWARD_TIMEOUT_MS: "2500",
      UNRELATED_BINDING: { not: "a setting" },
    });
    if (!result.ok) throw new Error(describeProblems(result.problems));
    expect(result.settings).toMatchObject({
      EASEMOB_SECRET: ["one", "two"],
      TENCENT_SDKAPPID: ["1400000001", "1400000002"],
      OPENIM_TOKEN: "0123456789abcdef",
      MAX_EVENT_AGE_SECONDS: 60,
      RECENT_LIMIT: 5,
      ORIGIN_URL: "https://app.example/receipts",
      FORWARD_RETRY_SCHEDULE: [1, 2.5, 3],
      FORWARD_TIMEOUT_MS: 2500,
    });
    expect(result.settings.TENCENT_TOKEN).toBeUndefined();
    expect(result.settings.FORWARD_SECRET?.length).toBe(24);
  });

  const secret = "s3cr3t-value-that-must-not-leak";
  it.each([
    [{ EASEMOB_SECRET: `${secret},,other` }, "EASEMOB_SECRET"],
    [{ TENCENT_SDKAPPID: `abc${secret}` }, "TENCENT_SDKAPPID"],
    [{ TENCENT_TOKEN: secret }, "TENCENT_SDKAPPID"],
    [{ OPENIM_TOKEN: "short" }, "OPENIM_TOKEN"],
    [{ OPENIM_TOKEN: `${secret}/with/slashes` }, "OPENIM_TOKEN"],
    [{ MAX_EVENT_AGE_SECONDS: "ten" }, "MAX_EVENT_AGE_SECONDS"],
    [{ RECENT_LIMIT: "0" }, "RECENT_LIMIT"],
    [{ RECENT_LIMIT: "100000" }, "RECENT_LIMIT"],
    [{ ORIGIN_URL: "ftp://origin" }, "ORIGIN_URL"],
    [{ ORIGIN_URL: "http://127.0.0.1:8788/receipts" }, "FORWARD_SECRET"],
    [{ FORWARD_SECRET: secret }, "FORWARD_SECRET"],
    [{ FORWARD_SECRET: `whsec_${secret}` }, "FORWARD_SECRET"],
    [{ FORWARD_SECRET: "whsec_c2hvcnQ=" }, "FORWARD_SECRET"],
    [{ FORWARD_RETRY_SCHEDULE: "5,soon" }, "FORWARD_RETRY_SCHEDULE"],
    [{ FORWARD_RETRY_SCHEDULE: "100000" }, "FORWARD_RETRY_SCHEDULE"],
    [{ FORWARD_TIMEOUT_MS: "5" }, "FORWARD_TIMEOUT_MS"],
    [{ ADMIN_TOKEN: "short" }, "ADMIN_TOKEN"],
  ])("%j is refused, naming %s and never the value", (env, setting) => {
    const result = parseSettings(env);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((problem) => problem.setting)).toContain(setting);
    const message = describeProblems(result.problems);
    expect(message).toContain(`setting ${setting}`);
    expect(message).not.toContain(secret);
  });
});

// Settings, parsed per feature: a malformed one is reported (never its value) and turns off only what it configures.
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { log, setLogLevel } from "../src/log";
import { DEFAULT_RETRY_SCHEDULE, describeProblems, parseGroup, parseSettings, useLogLevel } from "../src/settings";
import { easemob } from "../src/providers/easemob";
import { providers } from "../src/ingestors";
import { openim } from "../src/providers/openim";
import { sendbird } from "../src/providers/sendbird";
import { stream } from "../src/providers/stream";
import { tencent } from "../src/providers/tencent";
import { MAX_EVENT_AGE_MS } from "../src/receipt";
import { testSettings } from "./support/settings";

const FORWARD_KEY_A = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const FORWARD_KEY_B = "whsec_ZGVtby1mb3J3YXJkLXNlY3JldC0zMi1ieXRlcyEhIQ==";

describe("the relay's own settings", () => {
  it("gives every default when nothing is set, and holds deliveries until ORIGIN_URL is set", () => {
    expect(parseSettings({})).toEqual({
      settings: {
        RECENT_LIMIT: 100,
        FORWARD_RETRY_SCHEDULE: DEFAULT_RETRY_SCHEDULE,
        FORWARD_TIMEOUT_MS: 10000,
        FORWARD_BATCH_MAX: 1,
        SNAPSHOT_INTERVAL_SECONDS: 60,
        LOG_LEVEL: "warn",
      },
      problems: [],
      // Nothing says where receipts go: they are held for `origin` until ORIGIN_URL is set.
      destinations: [{ name: "origin", state: "misconfigured", reason: "ORIGIN_URL is not set", setting: "ORIGIN_URL", match: {} }],
    });
  });

  it("reads numbers, several forward secrets, and treats empty as unset", () => {
    const { settings, problems, destinations } = parseSettings({
      RECENT_LIMIT: "5",
      ORIGIN_URL: "https://app.example/receipts",
      FORWARD_SECRET: ` ${FORWARD_KEY_A} , ${FORWARD_KEY_B}`,
      FORWARD_RETRY_SCHEDULE: "1, 2.5,3",
      FORWARD_TIMEOUT_MS: "2500",
      ADMIN_TOKEN: "",
      UNRELATED_BINDING: { not: "a setting" },
    });
    expect(problems).toEqual([]);
    expect(settings).toMatchObject({
      RECENT_LIMIT: 5,
      ORIGIN_URL: "https://app.example/receipts",
      FORWARD_RETRY_SCHEDULE: [1, 2.5, 3],
      FORWARD_TIMEOUT_MS: 2500,
    });
    expect(settings.ADMIN_TOKEN).toBeUndefined();
    expect(settings.FORWARD_SECRET?.map((key) => key.length)).toEqual([24, 31]);
    expect(destinations).toMatchObject([
      { name: "origin", state: "active", destination: { url: "https://app.example/receipts", schedule: [1, 2.5, 3], timeoutMs: 2500, match: {} } },
    ]);
  });

  const secret = "s3cr3t-value-that-must-not-leak";
  it.each([
    [{ RECENT_LIMIT: "0" }, "RECENT_LIMIT", "store"],
    [{ RECENT_LIMIT: "100000" }, "RECENT_LIMIT", "store"],
    [{ ORIGIN_URL: "ftp://origin", FORWARD_SECRET: FORWARD_KEY_A }, "ORIGIN_URL", "forwarding"],
    [{ ORIGIN_URL: "http://127.0.0.1:8788/receipts" }, "FORWARD_SECRET", "forwarding"],
    [{ FORWARD_SECRET: secret }, "FORWARD_SECRET", "forwarding"],
    [{ FORWARD_SECRET: `whsec_${secret}` }, "FORWARD_SECRET", "forwarding"],
    [{ FORWARD_SECRET: "whsec_c2hvcnQ=" }, "FORWARD_SECRET", "forwarding"],
    [{ FORWARD_SECRET: `${FORWARD_KEY_A},,${FORWARD_KEY_B}` }, "FORWARD_SECRET", "forwarding"],
    [{ FORWARD_RETRY_SCHEDULE: "5,soon" }, "FORWARD_RETRY_SCHEDULE", "forwarding"],
    [{ FORWARD_RETRY_SCHEDULE: "100000" }, "FORWARD_RETRY_SCHEDULE", "forwarding"],
    [{ FORWARD_TIMEOUT_MS: "5" }, "FORWARD_TIMEOUT_MS", "forwarding"],
    [{ FORWARD_BATCH_MAX: "0" }, "FORWARD_BATCH_MAX", "forwarding"],
    [{ FORWARD_BATCH_MAX: "1001" }, "FORWARD_BATCH_MAX", "forwarding"],
    [{ SNAPSHOT_INTERVAL_SECONDS: "soon" }, "SNAPSHOT_INTERVAL_SECONDS", "read model"],
    [{ ADMIN_TOKEN: "short" }, "ADMIN_TOKEN", "api"],
    [{ LOG_LEVEL: "verbose" }, "LOG_LEVEL", "logs"],
  ])("%j is reported as a problem of %s (%s), never with its value", (env, setting, feature) => {
    const { problems } = parseSettings(env);
    expect(problems.map((problem) => [problem.setting, problem.feature])).toContainEqual([setting, feature]);
    const message = describeProblems(problems);
    expect(message).toContain(`setting ${setting}`);
    expect(message).not.toContain(secret);
  });

  it("uses the default for a malformed setting and keeps the valid ones", () => {
    const { settings, problems } = parseSettings({ RECENT_LIMIT: "lots", FORWARD_TIMEOUT_MS: "2500", ADMIN_TOKEN: "an-admin-token-0123456789" });
    expect(problems.map((problem) => problem.setting)).toEqual(["RECENT_LIMIT"]);
    expect(settings).toMatchObject({ RECENT_LIMIT: 100, FORWARD_TIMEOUT_MS: 2500, ADMIN_TOKEN: "an-admin-token-0123456789" });
  });

  describe("LOG_LEVEL", () => {
    afterEach(() => {
      setLogLevel("info");
      vi.restoreAllMocks();
    });

    it("drops lines below it, before writing anything; malformed, info is used and reported", () => {
      const lines: string[] = [];
      for (const level of ["log", "warn", "error"] as const) vi.spyOn(console, level).mockImplementation((line: string) => lines.push(line));
      const stringify = vi.spyOn(JSON, "stringify");
      const each = () => {
        log("info", "callback", { receiptId: "r" });
        log("warn", "callback_refused", { code: "c" });
        log("error", "unhandled", { error: "e" });
      };
      const written = (env: Record<string, string>) => {
        lines.length = 0;
        stringify.mockClear();
        useLogLevel(env);
        each();
        return { msgs: lines.map((line) => z.object({ msg: z.string() }).parse(JSON.parse(line)).msg), stringified: stringify.mock.calls.length };
      };
      // The default keeps what an operator acts on: warnings and errors.
      expect(written({})).toEqual({ msgs: ["callback_refused", "unhandled"], stringified: 2 });
      expect(written({ LOG_LEVEL: "info" })).toEqual({ msgs: ["callback", "callback_refused", "unhandled"], stringified: 3 });
      expect(written({ LOG_LEVEL: "debug" })).toEqual({ msgs: ["callback", "callback_refused", "unhandled"], stringified: 3 });
      expect(written({ LOG_LEVEL: "warn" })).toEqual({ msgs: ["callback_refused", "unhandled"], stringified: 2 });
      expect(written({ LOG_LEVEL: "error" })).toEqual({ msgs: ["unhandled"], stringified: 1 });
      expect(written({ LOG_LEVEL: "verbose" }).msgs).toEqual(["callback_refused", "unhandled"]);
      expect(parseSettings({ LOG_LEVEL: "verbose" })).toMatchObject({
        settings: { LOG_LEVEL: "warn" },
        problems: [{ setting: "LOG_LEVEL", feature: "logs", problem: "must be debug, info, warn or error" }],
      });
    });
  });

  it("holds deliveries, naming the setting, when a forwarding setting is malformed", () => {
    const { destinations } = parseSettings({ ORIGIN_URL: "https://app.example/receipts", FORWARD_SECRET: "whsec_typo!" });
    expect(destinations).toMatchObject([
      { name: "origin", state: "misconfigured", setting: "FORWARD_SECRET", reason: expect.stringContaining("setting FORWARD_SECRET") },
    ]);
  });
});

describe("each provider's own settings", () => {
  it.each([...providers.keys()])("%s is off with nothing set, naming what enables it, and on with the test settings", (name) => {
    const ingestor = providers.get(name);
    expect(ingestor?.status({})).toEqual({ state: "disabled", missing: expect.stringMatching(/^[A-Z][A-Z_]+$/) });
    expect(ingestor?.status(testSettings)).toEqual({ state: "enabled" });
  });

  it("turn the provider on, off, or report what is malformed", () => {
    const enabled = parseGroup(easemob.settings, { EASEMOB_SECRET: " one , two " });
    expect(enabled).toEqual({ values: { EASEMOB_SECRET: ["one", "two"], MAX_EVENT_AGE_SECONDS: 300 }, problems: [] });
    expect(easemob.configure(enabled.values!)).toEqual({ state: "enabled", config: { secrets: ["one", "two"], maxEventAgeSeconds: 300 } });
    expect(easemob.configure(parseGroup(easemob.settings, {}).values!)).toEqual({ state: "disabled", missing: "EASEMOB_SECRET" });
  });

  const secret = "s3cr3t-value-that-must-not-leak";
  it.each([
    [easemob.settings, { EASEMOB_SECRET: `${secret},,other` }, "EASEMOB_SECRET"],
    [easemob.settings, { EASEMOB_SECRET: secret, MAX_EVENT_AGE_SECONDS: "ten" }, "MAX_EVENT_AGE_SECONDS"],
    [tencent.settings, { TENCENT_SDKAPPID: `abc${secret}` }, "TENCENT_SDKAPPID"],
    [openim.settings, { OPENIM_TOKEN: "short" }, "OPENIM_TOKEN"],
    [openim.settings, { OPENIM_TOKEN: `${secret}/with/slashes` }, "OPENIM_TOKEN"],
    [stream.settings, { STREAM_API_SECRET: `${secret},,other` }, "STREAM_API_SECRET"],
    [stream.settings, { STREAM_API_SECRET: secret, STREAM_API_KEY: `key with spaces ${secret}` }, "STREAM_API_KEY"],
    [sendbird.settings, { SENDBIRD_API_TOKEN: `${secret},,other` }, "SENDBIRD_API_TOKEN"],
    [sendbird.settings, { SENDBIRD_API_TOKEN: secret, SENDBIRD_APP_ID: `${"x".repeat(129)}${secret}` }, "SENDBIRD_APP_ID"],
  ])("%#: a malformed %j names %s and never the value", (schema, env, setting) => {
    const { problems } = parseGroup(schema, env);
    expect(problems.map((problem) => problem.setting)).toEqual([setting]);
    expect(describeProblems(problems)).not.toContain(secret);
  });

  it("MAX_EVENT_AGE_SECONDS may not exceed the dedup window (less the 5-minute skew): a larger value turns Easemob off, naming it (issue 18)", () => {
    const limit = MAX_EVENT_AGE_MS / 1000;
    expect(limit).toBe(172_500);
    expect(parseGroup(easemob.settings, { EASEMOB_SECRET: "one", MAX_EVENT_AGE_SECONDS: String(limit) }).problems).toEqual([]);
    for (const value of [String(limit + 1), "604800"]) {
      expect(parseGroup(easemob.settings, { EASEMOB_SECRET: "one", MAX_EVENT_AGE_SECONDS: value }).problems).toEqual([
        { setting: "MAX_EVENT_AGE_SECONDS", problem: `must be at most ${limit}` },
      ]);
    }
  });

  it.each([
    ["tencent", tencent, { TENCENT_TOKEN: "a-token" }, "TENCENT_SDKAPPID", "TENCENT_TOKEN"],
    ["stream", stream, { STREAM_API_KEY: "k" }, "STREAM_API_SECRET", "STREAM_API_KEY"],
    ["sendbird", sendbird, { SENDBIRD_APP_ID: "app" }, "SENDBIRD_API_TOKEN", "SENDBIRD_APP_ID"],
  ] as const)(
    "%s: a setting that only makes sense beside the one that enables it is a misconfiguration, not merely off",
    (_, provider, env, required, dependent) => {
      const { values } = parseGroup(provider.settings, env);
      expect(values && provider.configure(values)).toEqual({
        state: "misconfigured",
        problems: [{ setting: required, problem: `must be set when ${dependent} is set` }],
      });
    },
  );
});

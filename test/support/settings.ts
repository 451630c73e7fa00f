/** The settings every test runs with (vitest.config.ts binds them; tests import the same values). */
export const TEST_FORWARD_SECRET = "whsec_dGVzdC1mb3J3YXJkLXNlY3JldC0zMi1ieXRlcy1sb25nIQ==";

export const testSettings = {
  EASEMOB_SECRET: "test-easemob-secret-1,test-easemob-secret-2",
  TENCENT_SDKAPPID: "1400000001,1400000002",
  TENCENT_TOKEN: "test-tencent-token",
  OPENIM_TOKEN: "test-openim-token-0123456789",
  MAX_EVENT_AGE_SECONDS: "3600",
  RECENT_LIMIT: "20",
  FORWARD_SECRET: TEST_FORWARD_SECRET,
  // Short steps so that retries and dead letters happen within a test.
  FORWARD_RETRY_SCHEDULE: "0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
  FORWARD_TIMEOUT_MS: "500",
  // Characters outside RFC 6750's token68 on purpose: any token an operator pastes in must work.
  ADMIN_TOKEN: "test-admin!token#0123456789",
} as const;

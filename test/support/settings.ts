/** The settings every test runs with (vitest.config.ts binds them; tests import the same values). */
export const TEST_FORWARD_SECRET = "whsec_dGVzdC1mb3J3YXJkLXNlY3JldC0zMi1ieXRlcy1sb25nIQ==";

export const testSettings = {
  EASEMOB_SECRET: "test-easemob-secret-1,test-easemob-secret-2",
  TENCENT_SDKAPPID: "1400000001,1400000002",
  TENCENT_TOKEN: "test-tencent-token",
  OPENIM_TOKEN: "test-openim-token-0123456789",
  STREAM_API_SECRET: "test-stream-secret-1,test-stream-secret-2",
  STREAM_API_KEY: "teststreamkey1",
  SENDBIRD_API_TOKEN: "test-sendbird-token-1,test-sendbird-token-2",
  SENDBIRD_APP_ID: "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx,test-sendbird-app-2",
  // Meta (WhatsApp, Messenger, Instagram): the ids are those of the samples in test/fixtures/.
  META_APP_SECRET: "test-meta-app-secret-1,test-meta-app-secret-2",
  META_VERIFY_TOKEN: "test-meta-verify-token,test-meta-verify-token-2",
  WHATSAPP_PHONE_NUMBER_IDS: "106540352242922,106540352242999",
  MESSENGER_PAGE_IDS: "1234567890123456",
  INSTAGRAM_ACCOUNT_IDS: "17841400000000001",
  TALKJS_SECRET_KEY: "sk_test_talkjs_secret_1,sk_test_talkjs_secret_2",
  TALKJS_APP_ID: "tTestTalkjsApp,tTestTalkjsApp2",
  MAX_EVENT_AGE_SECONDS: "3600",
  RECENT_LIMIT: "20",
  FORWARD_SECRET: TEST_FORWARD_SECRET,
  // Steps of a minute (48 to 72 s with jitter): no retry fires on its own during a test; tests make
  // the head due and run the alarm themselves (test/support/conversation-object.ts).
  FORWARD_RETRY_SCHEDULE: "60,60,60,60,60,60,60,60,60,60",
  // Generous, so that a slow machine never turns an answer into a timeout; timeout tests lower it.
  FORWARD_TIMEOUT_MS: "5000",
  // A snapshot a second at most (the default is a minute), so that read-model tests need not wait.
  SNAPSHOT_INTERVAL_SECONDS: "1",
  // The tests read the info lines of callbacks and deliveries (production default: warn).
  LOG_LEVEL: "info",
  // Characters outside RFC 6750's token68 on purpose: any token an operator pastes in must work.
  ADMIN_TOKEN: "test-admin!token#0123456789",
} as const;

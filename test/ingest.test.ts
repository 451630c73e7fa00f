// The pipeline with plain values: settings states, claims, the failure limit and store outcomes, no bindings.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import type { ClaimResult } from "../src/claims/claim-result";
import { ignoredEvents, ingestor, type IngestDeps } from "../src/ingest";
import { providers } from "../src/ingestors";
import type { BodyClaim, EventTime, Provider } from "../src/providers/provider";
import { MAX_EVENT_AGE_MS, MAX_MESSAGES_PER_RECEIPT, MAX_READERS_PER_RECEIPT, type Receipt } from "../src/receipt";
import { copy, samples, signedEasemob } from "./support/callbacks";
import { rawCallback } from "./support/pipeline";

const SECRET = "test-easemob-secret-1";
const easemobIngestor = providers.get("easemob")!;
const configured = { EASEMOB_SECRET: SECRET };

async function signedRaw(overrides: Record<string, unknown> = {}, secret = SECRET) {
  const body = await signedEasemob(copy(samples.easemob.single, overrides), { secret });
  return rawCallback(body, { url: "https://relay.test/v1/hooks/easemob" });
}

/** Deps with an in-memory claims table and store, and a failure limit of `limit` per run. */
function deps(env: object, overrides: Partial<IngestDeps> = {}, limit = 1000) {
  const claims = new Map<string, { conversation: string; digest: string }>();
  const stored: Receipt[] = [];
  let failures = 0;
  const base: IngestDeps = {
    env,
    now: Date.now(),
    store: async (receipt) => {
      if (stored.some((known) => known.id === receipt.id)) return "duplicate";
      stored.push(receipt);
      return "accepted";
    },
    // As the claims object judges (src/claims/object.ts): the same body and conversation, or a replay.
    claim: async (claim: BodyClaim, conversation: string): Promise<ClaimResult> => {
      const held = claims.get(claim.key);
      if (held === undefined) {
        claims.set(claim.key, { conversation, digest: claim.digest });
        return "claimed";
      }
      return held.conversation === conversation && held.digest === claim.digest ? "same" : "conflict";
    },
    countAuthFailure: async () => (++failures > limit ? { limited: true, retryAfterSeconds: 60 } : { limited: false }),
  };
  return { deps: { ...base, ...overrides }, stored, claims };
}

describe("ingest pipeline", () => {
  it("stores the normalized receipt and answers with what the store did", async () => {
    const { deps: run, stored } = deps(configured);
    const raw = await signedRaw();
    expect(await easemobIngestor.handle(raw, run)).toEqual({ status: 200, body: { status: "ok", result: "accepted" } });
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ provider: "easemob", event: "read_ack", readers: ["1111"] });
    // Easemob's own retry: the same callId for the same conversation is a duplicate, not a replay.
    expect((await easemobIngestor.handle(raw, run)).body).toEqual({ status: "ok", result: "duplicate" });
  });

  it("refuses a captured Easemob signature carrying another body into another conversation", async () => {
    const { deps: run, stored } = deps(configured);
    const original = await signedRaw();
    expect((await easemobIngestor.handle(original, run)).status).toBe(200);
    // The forger keeps callId, timestamp and security, and changes who read what.
    const forged = JSON.parse(original.body);
    const answer = await easemobIngestor.handle(rawCallback({ ...forged, from: "mallory", to: "victim" }), run);
    expect(answer).toMatchObject({ status: 401, body: { status: "error", code: "signature_reused" } });
    expect(stored).toHaveLength(1);
  });

  it("claims with the SHA-256 of the body's bytes, and refuses another body under the callId in the same conversation (issue 18, finding 3)", async () => {
    const made: BodyClaim[] = [];
    const { deps: base, stored } = deps(configured);
    const run = { ...base, claim: (claim: BodyClaim, conversation: string) => (made.push(claim), base.claim(claim, conversation)) };
    const group = await signedEasemob(copy(samples.easemob.group), { secret: SECRET });
    const original = rawCallback(group);
    expect((await easemobIngestor.handle(original, run)).body).toEqual({ status: "ok", result: "accepted" });
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", original.bytes))].map((byte) => byte.toString(16).padStart(2, "0")).join("");
    expect(made[0]).toMatchObject({ key: `easemob:${String(group.callId)}`, digest });
    const altered = rawCallback({ ...group, from: "mallory", payload: { ...(group.payload as object), ack_message_id: "1406088702140099999" } });
    expect(await easemobIngestor.handle(altered, run)).toMatchObject({ status: 401, body: { code: "signature_reused" } });
    expect(stored).toHaveLength(1);
    expect((await easemobIngestor.handle(original, run)).body).toEqual({ status: "ok", result: "duplicate" });
  });

  it("refuses a read receipt forged from a captured callback that was not a receipt", async () => {
    const { deps: run, stored } = deps(configured);
    const chat = await signedRaw({ chat_type: "chat" });
    expect((await easemobIngestor.handle(chat, run)).body).toEqual({ status: "ok", result: "ignored" });
    const forged = { ...JSON.parse(chat.body), chat_type: "read_ack" };
    expect(await easemobIngestor.handle(rawCallback(forged), run)).toMatchObject({ status: 401, body: { code: "signature_reused" } });
    expect(stored).toHaveLength(0);
    // The chat callback itself, sent again, is still just ignored.
    expect((await easemobIngestor.handle(chat, run)).body).toEqual({ status: "ok", result: "ignored" });
  });

  it("answers 503 when the claim cannot be made, and stores nothing", async () => {
    const { deps: run, stored } = deps(configured, { claim: () => Promise.reject(new Error("claims object unreachable")) });
    const answer = await easemobIngestor.handle(await signedRaw(), run);
    expect(answer).toMatchObject({ status: 503, body: { code: "store_unavailable" }, headers: { "retry-after": "1" } });
    expect(stored).toHaveLength(0);
  });

  it("answers 503 when the store cannot commit, so the provider may retry", async () => {
    const { deps: run } = deps(configured, { store: () => Promise.reject(new Error("object unreachable")) });
    expect(await easemobIngestor.handle(await signedRaw(), run)).toMatchObject({ status: 503, body: { code: "store_unavailable" } });
  });

  it("answers 429 with Retry-After once a client has failed too often; a valid callback is never counted", async () => {
    let counted = 0;
    const { deps: run } = deps(configured, {}, 2);
    const counting = { ...run, countAuthFailure: () => (counted++, run.countAuthFailure()) };
    const forged = await signedRaw({}, "not-the-secret");
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await easemobIngestor.handle(forged, counting)).status);
    expect(statuses).toEqual([401, 401, 429, 429]);
    const limited = await easemobIngestor.handle(forged, counting);
    expect(limited).toMatchObject({ status: 429, body: { code: "too_many_failures" }, headers: { "retry-after": "60" } });
    const countedBefore = counted;
    expect((await easemobIngestor.handle(await signedRaw(), counting)).status).toBe(200);
    expect(counted).toBe(countedBefore);
  });

  it("says clearly that a provider without settings is disabled", async () => {
    const answer = await easemobIngestor.handle(await signedRaw(), deps({}).deps);
    expect(answer).toEqual({ status: 503, body: { status: "error", code: "provider_disabled", message: "easemob is not configured: set EASEMOB_SECRET" } });
    expect(providers.get("tencent")!.status(configured)).toEqual({ state: "disabled", missing: "TENCENT_SDKAPPID" });
    expect(easemobIngestor.status(configured)).toEqual({ state: "enabled" });
  });

  it("a malformed setting turns off only the provider it belongs to, naming it and not its value", async () => {
    const env = { EASEMOB_SECRET: SECRET, TENCENT_SDKAPPID: "1400000001", TENCENT_TOKEN: "sekrit-token", OPENIM_TOKEN: "sekrit", RECENT_LIMIT: "lots" };
    const openimAnswer = await providers.get("openim")!.handle(rawCallback("{}", { path: ["sekrit", "callbackAfterSingleMsgReadCommand"] }), deps(env).deps);
    expect(openimAnswer.status).toBe(503);
    expect(openimAnswer.body).toMatchObject({ errMsg: "provider_misconfigured" });
    expect(JSON.stringify(openimAnswer.body)).toContain("setting OPENIM_TOKEN must be at least 16 characters");
    expect(JSON.stringify(openimAnswer.body)).not.toContain("sekrit");
    // Easemob's settings are fine: a malformed OPENIM_TOKEN or RECENT_LIMIT costs it nothing.
    expect((await easemobIngestor.handle(await signedRaw(), deps(env).deps)).status).toBe(200);
  });

  it("counts ignored events under bounded names", async () => {
    const tencentIngestor = providers.get("tencent")!;
    const { deps: run } = deps({ TENCENT_SDKAPPID: "1400000001" });
    const call = (command: string) =>
      tencentIngestor.handle(
        rawCallback("{}", { url: `https://relay.test/v1/hooks/tencent?SdkAppid=1400000001&CallbackCommand=${encodeURIComponent(command)}` }),
        run,
      );
    for (let i = 0; i < 80; i++) expect((await call(`Fake.Command${i}`)).status).toBe(200);
    await call("<script>".repeat(20));
    expect(ignoredEvents.size).toBeLessThanOrEqual(52);
    expect(ignoredEvents.get("tencent:other")).toBeGreaterThan(0);
    expect([...ignoredEvents.keys()].every((key) => key.length < 80 && !key.includes("<"))).toBe(true);
  });

  it("never crashes: a store that throws synchronously still gets an answer", async () => {
    const { deps: run } = deps(configured, {
      store: () => {
        throw new TypeError("boom");
      },
    });
    expect((await easemobIngestor.handle(await signedRaw(), run)).status).toBe(503);
  });

  it("answers 500 in the provider's shape when a step throws (the pipeline's outer catch)", async () => {
    const { deps: run } = deps(configured);
    const throwingEnv = {
      get EASEMOB_SECRET(): string {
        throw new Error("settings exploded");
      },
    };
    const answer = await easemobIngestor.handle(await signedRaw(), { ...run, env: throwingEnv });
    expect(answer).toEqual({ status: 500, body: { status: "error", code: "internal_error", message: "the relay failed to handle this callback" } });
  });
});

/** A provider made for these tests: any receipt and event time it is told to make (a future provider, say). */
function fakeProvider(receipt: Receipt, eventTime: EventTime): Provider<null, null> {
  return {
    name: receipt.provider,
    settings: z.object({}),
    configure: () => ({ state: "enabled", config: null }),
    parse: () => ({ ok: true, value: null }),
    verify: async () => undefined,
    normalize: async () => ({ ok: true, value: { kind: "receipt", receipt, eventTime } }),
    answer: (outcome) =>
      outcome.ok ? { status: 200, body: { result: outcome.result } } : { status: outcome.status, body: { code: outcome.code, message: outcome.message } },
  };
}

function receiptWith(readers: number, messages: number): Receipt {
  const names = Array.from({ length: readers }, (_, i) => `r${i}`);
  return {
    id: "stream:bounds",
    provider: "stream",
    event: "message.read",
    app: "app",
    chat: "group",
    conversation: "stream:app:g:c",
    readers: names,
    group: "c",
    messages: Array.from({ length: messages }, (_, i) => ({ seq: i, readers: names })),
    readAt: new Date().toISOString(),
    receivedAt: new Date().toISOString(),
    raw: {},
  };
}

describe("bounds every provider gets from ingest (issue 18)", () => {
  it("keeps the first readers and the last messages of a receipt over its bounds, and says how many it left out", async () => {
    const { deps: run, stored } = deps({});
    const answer = await ingestor(fakeProvider(receiptWith(MAX_READERS_PER_RECEIPT + 5, MAX_MESSAGES_PER_RECEIPT + 7), null)).handle(rawCallback({}), run);
    expect(answer).toEqual({ status: 200, body: { result: "accepted" } });
    const [receipt] = stored;
    expect(receipt?.readers).toHaveLength(MAX_READERS_PER_RECEIPT);
    expect(receipt?.messages).toHaveLength(MAX_MESSAGES_PER_RECEIPT);
    expect(receipt?.messages[0]?.seq).toBe(7);
    expect(receipt?.messages.every((message) => message.readers?.length === MAX_READERS_PER_RECEIPT)).toBe(true);
    expect(receipt?.truncated).toEqual({ readers: 5, messages: 7 });
  });

  it("leaves a receipt within its bounds as it is", async () => {
    const { deps: run, stored } = deps({});
    const within = receiptWith(MAX_READERS_PER_RECEIPT, MAX_MESSAGES_PER_RECEIPT);
    await ingestor(fakeProvider(within, null)).handle(rawCallback({}), run);
    expect(stored[0]).toEqual(within);
  });

  it("refuses an event time older than MAX_EVENT_AGE_MS or over 5 minutes ahead with 401, counted as a failed authentication", async () => {
    let counted = 0;
    const { deps: base, stored } = deps({});
    const run = { ...base, countAuthFailure: () => (counted++, base.countAuthFailure()) };
    const handle = (ms: number) => ingestor(fakeProvider(receiptWith(1, 1), { ms, field: "created_at" })).handle(rawCallback({}), run);
    expect(await handle(run.now - MAX_EVENT_AGE_MS - 1)).toEqual({
      status: 401,
      body: { code: "expired", message: "created_at is more than 47 h 55 min old: past the relay's deduplication window, so it could be a replay" },
    });
    expect(await handle(run.now + 5 * 60_000 + 1)).toMatchObject({ status: 401, body: { code: "from_the_future" } });
    expect(counted).toBe(2);
    expect(stored).toHaveLength(0);
    expect((await handle(run.now - MAX_EVENT_AGE_MS)).status).toBe(200);
    expect((await handle(run.now + 5 * 60_000)).body).toEqual({ result: "duplicate" });
  });
});

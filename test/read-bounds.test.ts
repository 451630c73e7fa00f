// Read state without a bound on readers (issue 18, finding 1): the snapshot is trimmed, never over
// what KV takes; the API and the dashboard page read state; the index row stays current.
import { describe, expect, it } from "vitest";
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { app } from "../src/app";
import { MESSAGES_SHOWN, messagesText, readersText } from "../src/dashboard/format";
import { boundedReads, MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_READERS, MAX_SNAPSHOT_READS_BYTES } from "../src/conversation/publisher";
import { MAX_READS_PAGE, ReadState } from "../src/conversation/read-state";
import { Snapshot, snapshotKey } from "../src/conversation/snapshot";
import { groupConversationKey } from "../src/receipt";
import { ADMIN_TOKEN, copy, samples, send, TENCENT_APP, tencentPath, unique } from "./support/callbacks";
import { runAlarm, setState, useSettings } from "./support/conversation-object";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";

/** KV's limit on a value (https://developers.cloudflare.com/kv/platform/limits/). */
const KV_MAX_VALUE_BYTES = 25 * 1024 * 1024;
/** The callback routes' body limit (docs/design.md, "Fixed limits"). */
const MAX_BODY_BYTES = 64 * 1024;

describe("the snapshot's read state", () => {
  it("keeps the newest MAX_SNAPSHOT_READERS within MAX_SNAPSHOT_READS_BYTES, in reader order", () => {
    // 5,000 readers with maximal ids (128 characters) and every field set, newest first.
    const states = Array.from({ length: 5000 }, (_, i) =>
      JSON.stringify({
        reader: `${String(i).padStart(4, "0")}${"r".repeat(124)}`,
        lastReadAt: new Date(Date.UTC(2026, 0, 1) - i * 1000).toISOString(),
        receiptId: `tencent:${"f".repeat(32)}`,
        messageId: "m".repeat(256),
        seq: 1_000_000 + i,
        time: new Date(Date.UTC(2026, 0, 1)).toISOString(),
        unreadTotal: i,
      } satisfies ReadState),
    );
    const kept = boundedReads(states);
    const bytes = kept.reduce((sum, state) => sum + state.length + 1, 0);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThanOrEqual(MAX_SNAPSHOT_READERS);
    expect(bytes).toBeLessThanOrEqual(MAX_SNAPSHOT_READS_BYTES);
    const readers = kept.map((state) => ReadState.parse(JSON.parse(state)).reader);
    // The newest ones (the first of `states`), sorted by reader.
    expect(readers).toEqual(states.slice(0, kept.length).map((state) => ReadState.parse(JSON.parse(state)).reader));
    expect([...readers].sort()).toEqual(readers);
    // Short ids: the count is the bound.
    expect(
      boundedReads(Array.from({ length: 3000 }, (_, i) => JSON.stringify({ reader: `u${i}`, lastReadAt: "2026-01-01T00:00:00.000Z", receiptId: "r" }))),
    ).toHaveLength(MAX_SNAPSHOT_READERS);
  });

  it("the object pages read state by reader, and refuses no limit: it clamps it to MAX_READS_PAGE", async () => {
    const conversation = newConversation();
    const stub = stubFor(conversation);
    await stub.accept(makeReceipt(conversation, 1, { readers: ["carol", "alice", "bob"] }));
    const first = await stub.readStates(2);
    expect(first).toMatchObject({ readers: 3, reads: [{ reader: "alice" }, { reader: "bob" }], next: "bob" });
    expect(await stub.readStates(2, first?.next)).toMatchObject({ readers: 3, reads: [{ reader: "carol" }] });
    expect((await stub.readStates(MAX_READS_PAGE * 10))?.reads).toHaveLength(3);
  });
});

const MEMBERS_PER_CALLBACK = 4096;
const memberId = (callback: number, n: number) => (callback * MEMBERS_PER_CALLBACK + n).toString(36);
const callbackOf = (reader: string) => Math.floor(parseInt(reader, 36) / MEMBERS_PER_CALLBACK);

/** A Tencent group read receipt as large as the callback routes take: one message, as many distinct readers as fit. */
function maximalGroupCallback(group: string, callback: number): Record<string, unknown> {
  const body = copy(samples.tencent.group, { GroupId: group, EventTime: String(Date.now() + callback), GroupMsgReceiptList: [] });
  const empty = JSON.stringify({ ...body, GroupMsgReceiptList: [{ MsgSeq: callback + 1, ReadNum: 0, UnreadNum: 0, ReadReceiptMembers: [] }] }).length;
  const members: { Member_Account: string }[] = [];
  // Each member is `{"Member_Account":"<id>"},` with short, distinct ids (base 36): stop a little under the limit.
  for (let n = 0, bytes = empty; ; n++) {
    const member = { Member_Account: memberId(callback, n) };
    bytes += JSON.stringify(member).length + 1;
    if (bytes > MAX_BODY_BYTES - 256) break;
    members.push(member);
  }
  return { ...body, GroupMsgReceiptList: [{ MsgSeq: callback + 1, ReadNum: members.length, UnreadNum: 0, ReadReceiptMembers: members }] };
}

async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const context = createExecutionContext();
  const headers = new Headers(init.headers);
  if (path.startsWith("/v1/")) headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
  headers.set("cf-connecting-ip", `2001:db8::${crypto.randomUUID().slice(0, 4)}`);
  const response = await app.fetch(new Request(`http://relay.test${path}`, { ...init, headers, redirect: "manual" }), env, context);
  await waitOnExecutionContext(context);
  return response;
}

const ReadsBody = z.object({
  readers: z.number(),
  readsTruncated: z.boolean().optional(),
  reads: z.array(ReadState),
  cursor: z.string().optional(),
});

const CALLBACKS = 122;

describe("a group with 122 maximal Tencent read-receipt callbacks (issue 18)", () => {
  it("keeps its snapshot, index row, stats and dashboard page current, the page under 1 MB", { timeout: 240_000 }, async () => {
    const group = unique("@TGS#bounds-");
    const conversation = groupConversationKey("tencent", TENCENT_APP, group);
    const stub = stubFor(conversation);
    // Held (no delivery to wait for) and a minute's interval: the test publishes when it chooses.
    await useSettings(stub, { ORIGIN_URL: "", SNAPSHOT_INTERVAL_SECONDS: "60" });
    let readersSent = 0;
    for (let callback = 0; callback < CALLBACKS; callback++) {
      const body = maximalGroupCallback(group, callback);
      expect(JSON.stringify(body).length).toBeLessThanOrEqual(MAX_BODY_BYTES);
      const members = z.array(z.object({ ReadReceiptMembers: z.array(z.unknown()) })).parse(body.GroupMsgReceiptList)[0]?.ReadReceiptMembers.length ?? 0;
      readersSent += members;
      const response = await send(await tencentPath("Group.CallbackAfterReadReceipt"), { json: body });
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ ActionStatus: "OK" });
    }
    expect(readersSent).toBeGreaterThan(CALLBACKS * 2400);

    // One publication, as the alarm makes it once the interval has passed.
    await runInDurableObject(stub, async (instance, { storage }) => {
      await instance.alarm();
      setState(storage, "published_at", 0);
      await instance.alarm();
    });

    const stored = await env.RECEIPTS_KV.get(await snapshotKey(conversation));
    expect(stored).not.toBeNull();
    const snapshotBytes = new TextEncoder().encode(stored ?? "").length;
    expect(snapshotBytes).toBeLessThan(MAX_SNAPSHOT_BYTES + MAX_SNAPSHOT_READS_BYTES + 64 * 1024);
    expect(snapshotBytes).toBeLessThan(KV_MAX_VALUE_BYTES / 10);
    const snapshot = Snapshot.parse(JSON.parse(stored ?? "null"));
    const readers = snapshot.readers ?? 0;
    // Every reader is kept by the object (up to the readers bound per receipt, where one applies).
    expect(readers).toBeGreaterThanOrEqual(CALLBACKS * 1000);
    expect(snapshot.readsTruncated).toBe(true);
    expect(snapshot.reads.length).toBeLessThanOrEqual(MAX_SNAPSHOT_READERS);
    // The newest readers: those of the last callback (the latest EventTime).
    expect(new Set(snapshot.reads.map((read) => callbackOf(read.reader)))).toEqual(new Set([CALLBACKS - 1]));

    // The index row is current, and counted in the stats.
    const row = z
      .object({ accepted: z.number(), pending: z.number(), activity: z.string() })
      .parse(await env.DB.prepare("SELECT accepted, pending, activity FROM conversations WHERE key = ?").bind(conversation).first());
    expect(row).toMatchObject({ accepted: CALLBACKS, pending: CALLBACKS });
    const buckets = z.object({ buckets: z.record(z.string(), z.array(z.number())) }).parse(JSON.parse(row.activity)).buckets;
    expect(Object.values(buckets).reduce((sum, counts) => sum + (counts[0] ?? 0), 0)).toBe(CALLBACKS);
    const stats = await call("/v1/stats?window=1h");
    expect(stats.status).toBe(200);
    const figures = z.object({ callbacks: z.object({ byProvider: z.record(z.string(), z.object({ accepted: z.number() })) }) }).parse(await stats.json());
    expect(figures.callbacks.byProvider.tencent?.accepted).toBeGreaterThanOrEqual(CALLBACKS);

    // The API pages read state: from the snapshot (its newest readers, flagged) and from the object (every one).
    const encoded = encodeURIComponent(conversation);
    const fromKv = ReadsBody.parse(await (await call(`/v1/conversations/${encoded}/reads`)).json());
    expect(fromKv).toMatchObject({ readers, readsTruncated: true });
    expect(fromKv.reads).toHaveLength(100);
    expect(fromKv.cursor).toBeDefined();
    const first = ReadsBody.parse(await (await call(`/v1/conversations/${encoded}/reads?consistent=true&limit=${MAX_READS_PAGE}`)).json());
    expect(first.reads).toHaveLength(MAX_READS_PAGE);
    expect(first.readers).toBe(readers);
    const second = ReadsBody.parse(
      await (await call(`/v1/conversations/${encoded}/reads?consistent=true&limit=${MAX_READS_PAGE}&cursor=${first.cursor}`)).json(),
    );
    expect(second.reads[0]!.reader > first.reads[MAX_READS_PAGE - 1]!.reader).toBe(true);
    const tooMany = await call(`/v1/conversations/${encoded}/reads?limit=${MAX_READS_PAGE + 1}`);
    expect(tooMany.status).toBe(400);

    // The dashboard's page: one page of readers, a link to the next, and under 1 MB.
    const login = await call("/dashboard/login", {
      method: "POST",
      headers: { origin: "http://relay.test", "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
    });
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const page = await call(`/dashboard/conversations/${encoded}`, { headers: { cookie } });
    const html = await page.text();
    expect(page.status).toBe(200);
    const pageBytes = new TextEncoder().encode(html).length;
    expect(pageBytes).toBeLessThan(1_000_000);
    expect(html.match(/data-testid="read-row"/g)).toHaveLength(100);
    expect(html).toContain(`${readers} reader(s)`);
    const next = /href="([^"]*\?readers=[^"]+)" data-testid="reads-next"/.exec(html)?.[1];
    expect(next).toBeDefined();
    const nextPage = await call(next!.replaceAll("&amp;", "&"), { headers: { cookie } });
    expect(nextPage.status).toBe(200);
    expect(await nextPage.text()).toContain('data-testid="reads-first"');
    console.info(JSON.stringify({ readers, snapshotBytes, pageBytes }));
  });
});

describe("a receipt's row on the dashboard", () => {
  it(`names the first ${MESSAGES_SHOWN} messages and readers, and counts the rest (a receipt may carry 1,000 of each)`, () => {
    const messages = Array.from({ length: 1000 }, (_, i) => ({ seq: i + 1 }));
    const text = messagesText({ messages, upTo: undefined });
    expect(text).toBe(
      `${messages
        .slice(0, MESSAGES_SHOWN)
        .map((m) => `#${m.seq}`)
        .join(", ")}, and ${1000 - MESSAGES_SHOWN} more`,
    );
    expect(readersText(Array.from({ length: 1000 }, (_, i) => `u${i}`))).toMatch(/ and 990 more$/);
  });
});

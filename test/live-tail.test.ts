// The live tail (src/conversation/live-tail.ts): a viewer's WebSocket to the conversation's object,
// accepted for hibernation; events for accepted receipts, delivery attempts and replays.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { LiveEvent } from "../src/conversation/live-event";
import { MAX_VIEWERS, openLiveTail } from "../src/conversation/live-tail";
import { retryNow, runAlarm } from "./support/conversation-object";
import { script } from "./support/origin-control";
import { makeReceipt, newConversation, stubFor } from "./support/receipts";

/**
 * A viewer: every frame it received, and a way to wait for the next event that matches. Events are
 * parsed with the schema the dashboard's script checks them with: a frame it would drop fails here.
 */
async function connect(conversation: string) {
  const response = await openLiveTail(env, conversation, new Request("https://relay.test/live", { headers: { upgrade: "websocket" } }));
  expect(response.status).toBe(101);
  const socket = response.webSocket;
  if (!socket) throw new Error("no WebSocket in the 101 answer");
  socket.accept();
  const frames: string[] = [];
  const waiters: Array<() => void> = [];
  socket.addEventListener("message", (message) => {
    frames.push(typeof message.data === "string" ? message.data : "(binary)");
    waiters.splice(0).forEach((wake) => wake());
  });
  const events = () => frames.filter((frame) => frame !== "pong").map((frame) => LiveEvent.parse(JSON.parse(frame)));
  /** Resolves with the first event matching, waiting for frames as they come (the test's timeout bounds it). */
  async function next(matches: (event: LiveEvent) => boolean): Promise<LiveEvent> {
    for (;;) {
      const found = events().find(matches);
      if (found) return found;
      await new Promise<void>((wake) => waiters.push(wake));
    }
  }
  async function nextFrame(text: string): Promise<void> {
    while (!frames.includes(text)) await new Promise<void>((wake) => waiters.push(wake));
  }
  return { socket, events, next, nextFrame };
}

describe("live tail", () => {
  it("greets a viewer of a conversation with no receipt yet, and stores nothing for it", async () => {
    const conversation = newConversation();
    const viewer = await connect(conversation);
    expect(await viewer.next((event) => event.type === "hello")).toMatchObject({ type: "hello", conversation });
    const tables = await runInDurableObject(stubFor(conversation), (_, state) => state.storage.sql.exec("SELECT name FROM sqlite_master").toArray());
    expect(tables).toEqual([]);
    viewer.socket.close(1000, "done");
  });

  it("sends each accepted receipt once, then its delivery outcome; a duplicate sends nothing", async () => {
    const conversation = newConversation();
    const viewer = await connect(conversation);
    await viewer.next((event) => event.type === "hello");
    const stub = stubFor(conversation);
    const receipt = makeReceipt(conversation, 1);
    expect(await stub.accept(receipt)).toBe("accepted");
    expect(await stub.accept(receipt)).toBe("duplicate");
    const accepted = await viewer.next((event) => event.type === "receipt");
    expect(accepted).toMatchObject({ type: "receipt", seq: 1, receipt: { id: receipt.id, readers: ["alice"] } });
    await runAlarm(stub);
    const delivery = await viewer.next((event) => event.type === "delivery");
    expect(delivery).toMatchObject({ receiptIds: [receipt.id], outcome: "delivered", status: 200, attempt: 1 });
    expect(viewer.events().filter((event) => event.type === "receipt")).toHaveLength(1);
    viewer.socket.close(1000, "done");
  });

  it("shows a refused delivery, the replay and the delivery that follows", async () => {
    const conversation = newConversation();
    await script(conversation, [{ status: 400 }]);
    const viewer = await connect(conversation);
    const stub = stubFor(conversation);
    const receipt = makeReceipt(conversation, 1);
    await stub.accept(receipt);
    await runAlarm(stub);
    expect(await viewer.next((event) => event.type === "delivery")).toMatchObject({ outcome: "give_up", status: 400, error: expect.stringContaining("400") });
    expect(await stub.retryDeadLetters()).toEqual({ requeued: 1 });
    expect(await viewer.next((event) => event.type === "requeued")).toMatchObject({ count: 1 });
    await retryNow(stub);
    expect(await viewer.next((event) => event.type === "delivery" && event.outcome === "delivered")).toMatchObject({
      receiptIds: [receipt.id],
      status: 200,
    });
    viewer.socket.close(1000, "done");
  });

  it("answers ping with pong, from the platform, and serves every viewer", async () => {
    const conversation = newConversation();
    const first = await connect(conversation);
    const second = await connect(conversation);
    first.socket.send("ping");
    await first.nextFrame("pong");
    await stubFor(conversation).accept(makeReceipt(conversation, 1));
    for (const viewer of [first, second]) expect(await viewer.next((event) => event.type === "receipt")).toMatchObject({ seq: 1 });
    first.socket.close(1000, "done");
    second.socket.close(1000, "done");
  });

  it("refuses a request that is not an upgrade, and viewers past the limit", async () => {
    const conversation = newConversation();
    const plain = await openLiveTail(env, conversation, new Request("https://relay.test/live"));
    expect(plain.status).toBe(426);
    const viewers = await Promise.all(Array.from({ length: MAX_VIEWERS }, () => connect(conversation)));
    const refused = await openLiveTail(env, conversation, new Request("https://relay.test/live", { headers: { upgrade: "websocket" } }));
    expect(refused.status).toBe(429);
    for (const viewer of viewers) viewer.socket.close(1000, "done");
  });
});

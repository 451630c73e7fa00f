// What is Messenger's own; the cases it shares with Instagram are in meta-messaging.test.ts.
import { describe, expect, it } from "vitest";
import { providers } from "../../src/ingestors";
import { signMeta } from "../../src/providers/meta";
import { META_SECRETS, messagingBody, unique, MESSENGER_PAGE_ID } from "../support/callbacks";
import { rawOf, recordingDeps } from "../support/provider-contract";
import { testSettings } from "../support/settings";

const ingestor = providers.get("messenger")!;
const signedRaw = async (body: unknown, secret = META_SECRETS[0]!) => {
  const text = JSON.stringify(body);
  return rawOf({ path: "/v1/hooks/messenger", headers: { "x-hub-signature-256": await signMeta(secret, text) }, body: text });
};

describe("messenger watermark", () => {
  it("is a read-up-to receipt: upTo.time is the watermark, and the id is stable per sender and watermark", async () => {
    const user = unique("65432");
    const event = { sender: { id: user }, recipient: { id: MESSENGER_PAGE_ID }, timestamp: Date.now(), read: { watermark: 1458668856253 } };
    const deps = recordingDeps(testSettings);
    await ingestor.handle(await signedRaw(messagingBody("messenger", [event])), deps);
    await ingestor.handle(await signedRaw(messagingBody("messenger", [{ ...event, timestamp: event.timestamp + 1 }])), deps);
    expect(deps.stored[0]).toMatchObject({ upTo: { time: "2016-03-22T17:47:36.253Z" }, messages: [] });
    expect(deps.stored[0]!.id).toBe(deps.stored[1]!.id);
  });
});

// What is Instagram's own; the cases it shares with Messenger are in meta-messaging.test.ts.
import { describe, expect, it } from "vitest";
import { providers } from "../../src/ingestors";
import { signMeta } from "../../src/providers/meta";
import { META_SECRETS, messagingBody, unique, INSTAGRAM_ACCOUNT_ID } from "../support/callbacks";
import { rawOf, recordingDeps } from "../support/provider-contract";
import { testSettings } from "../support/settings";

const ingestor = providers.get("instagram")!;
const signedRaw = async (body: unknown, secret = META_SECRETS[0]!) => {
  const text = JSON.stringify(body);
  return rawOf({ path: "/v1/hooks/instagram", headers: { "x-hub-signature-256": await signMeta(secret, text) }, body: text });
};

describe("instagram seen", () => {
  it("names the message seen, and the id is stable per sender and mid", async () => {
    const user = unique("65432");
    const event = { sender: { id: user }, recipient: { id: INSTAGRAM_ACCOUNT_ID }, timestamp: Date.now(), read: { mid: "mid-1" } };
    const deps = recordingDeps(testSettings);
    await ingestor.handle(await signedRaw(messagingBody("instagram", [event])), deps);
    await ingestor.handle(await signedRaw(messagingBody("instagram", [{ ...event, timestamp: event.timestamp + 1 }])), deps);
    expect(deps.stored[0]).toMatchObject({ messages: [{ id: "mid-1" }] });
    expect(deps.stored[0]!.upTo).toBeUndefined();
    expect(deps.stored[0]!.id).toBe(deps.stored[1]!.id);
  });
});

// The dashboard's destinations page (src/dashboard/pages/destinations.tsx): every destination with
// its figures, Pause/Resume, a replay of one destination's dead letters; and destinations on the
// dead-letters and conversation pages.
import { describe, expect, it } from "vitest";
import { unique } from "../support/callbacks";
import { after, conversationUrl, dashboard, page, signIn, textOf } from "../support/dashboard";
import { deadLettersAtBoth, destinationRow, latencies } from "../support/destination-rows";
import { newConversation } from "../support/receipts";
import { TEST_FORWARD_SECRET } from "../support/settings";

const nameOf = (stem: string) => `${stem}-${crypto.randomUUID().slice(0, 8)}`;
const settings = (crm: string): Record<string, unknown> => ({
  DESTINATIONS: JSON.stringify([{ name: crm, url: "https://crm.example/hooks?token=s3cret", secret: "FORWARD_SECRET_CRM" }]),
  FORWARD_SECRET_CRM: TEST_FORWARD_SECRET,
});

/** The destinations page, as with these settings. */
async function destinationsPage(cookie: string, env: Record<string, unknown>, query = ""): Promise<string> {
  const response = await dashboard(`/destinations${query}`, { cookie, env });
  const html = await response.text();
  expect(response.status, html.slice(0, 500)).toBe(200);
  expect(response.headers.get("cache-control")).toBe("no-store");
  return html;
}
const rowOf = (html: string, name: string) => {
  const at = html.indexOf(`data-destination="${name}"`);
  if (at < 0) throw new Error(`no row for ${name}`);
  return html.slice(at, html.indexOf("</tr>", at));
};

describe("the destinations page", () => {
  it("lists every destination with its figures, in the nav; Pause then Resume through the forms", async () => {
    const crm = nameOf("crm");
    const env = settings(crm);
    await destinationRow(
      unique("tencent:1400000001:g:dash-dest-"),
      { [crm]: { pending: 2, failed: 1, lastError: "crm refused", latency: latencies([200, 4]) } },
      Date.now(),
    );
    const cookie = await signIn();
    const html = await destinationsPage(cookie, env);
    expect(html).toContain('<a href="/dashboard/destinations" aria-current="page">Destinations</a>');
    expect(rowOf(html, "origin")).toContain('data-state="active"');
    const row = rowOf(html, crm);
    expect(row).toContain('data-state="active"');
    expect(row).toContain("crm.example");
    expect(row).not.toContain("s3cret");
    expect(textOf(row, "destination-backlog")).toBe("2");
    expect(row).toContain(`href="/dashboard/dead-letters?destination=${crm}"`);
    expect(row).toContain("200 ms / 200 ms");
    expect(row).toContain(`<input type="hidden" name="destination" value="${crm}"/>`);
    expect(row).toContain(`action="/dashboard/destinations/${crm}/pause"`);

    const paused = await dashboard(`/destinations/${crm}/pause`, { method: "POST", cookie, form: {}, env });
    expect(paused.status).toBe(303);
    expect(paused.headers.get("location")).toBe(`/dashboard/destinations?paused=${crm}`);
    const afterPause = await destinationsPage(cookie, env, `?paused=${crm}`);
    expect(textOf(afterPause, "flash")).toContain(`${crm} paused`);
    expect(rowOf(afterPause, crm)).toContain('data-state="paused"');
    expect(rowOf(afterPause, crm)).toContain(`action="/dashboard/destinations/${crm}/resume"`);

    const resumed = await dashboard(`/destinations/${crm}/resume`, { method: "POST", cookie, form: {}, env });
    expect(resumed.status).toBe(303);
    expect(rowOf(await destinationsPage(cookie, env), crm)).toContain('data-state="active"');
  });

  it("refuses a pause posted from another site, one of an unknown destination (404) and one without the binding (503)", async () => {
    const cookie = await signIn();
    const crossSite = await dashboard("/destinations/origin/pause", { method: "POST", cookie, form: {}, origin: "https://evil.example" });
    expect(crossSite.status).toBe(403);
    expect((await dashboard(`/destinations/${nameOf("nowhere")}/pause`, { method: "POST", cookie, form: {} })).status).toBe(404);
    const unbound = { DESTINATION_CONTROL: undefined };
    const refused = await dashboard("/destinations/origin/pause", { method: "POST", cookie, form: {}, env: unbound });
    expect(refused.status).toBe(503);
    expect(await refused.text()).toContain("DESTINATION_CONTROL");
    const html = await destinationsPage(cookie, unbound);
    expect(html).toContain("Pause is off.");
    expect(html).not.toContain('data-testid="pause-form"');
  });

  it("shows the figures' absence when the index is off, and still lists the destinations", async () => {
    const cookie = await signIn();
    const html = await destinationsPage(cookie, { DB: undefined });
    expect(html).toContain("No figures: the index cannot be read.");
    expect(rowOf(html, "origin")).toContain('data-state="active"');
  });

  it("starts a replay of one destination's dead letters", async () => {
    const cookie = await signIn();
    const started = await dashboard("/replays", { method: "POST", cookie, form: { destination: "crm", prefix: unique("tencent:none-") } });
    expect(started.status).toBe(303);
    const progress = await page((started.headers.get("location") ?? "").replace("/dashboard", ""), cookie);
    expect(progress).toContain("dead letters of destination crm");
    expect((await dashboard("/replays", { method: "POST", cookie, form: { destination: "Not_A_Name" } })).status).toBe(400);
  });
});

describe("destinations on the other pages", () => {
  it("the dead letters of one destination, each row with its part and a replay of that destination", async () => {
    const crm = nameOf("crm");
    const prefix = unique("tencent:1400000001:g:dash-dl-") + "-";
    await destinationRow(`${prefix}1`, { [crm]: { failed: 2, lastError: "crm refused" }, origin: { failed: 5, lastError: "origin refused" } }, Date.now());
    await destinationRow(`${prefix}2`, { origin: { failed: 1, lastError: "origin refused" } }, Date.now());
    const cookie = await signIn();
    const html = await page(`/dead-letters?destination=${crm}&prefix=${encodeURIComponent(prefix)}`, cookie);
    expect(html).toContain(`Dead letters of ${crm}`);
    const rows = [...html.matchAll(/data-testid="dead-letter-row" data-conversation="([^"]*)"/g)].map((match) => match[1]);
    expect(rows).toEqual([`${prefix}1`]);
    expect(textOf(after(html, "dead-letter-row"), "failed-count")).toBe("2");
    expect(after(html, "replay-all")).toContain(`name="destination" value="${crm}"`);
    expect(after(html, "replay-row")).toContain(`name="destination" value="${crm}"`);
    expect((await dashboard("/dead-letters?destination=Not_A_Name", { cookie })).status).toBe(400);
  });

  it("a conversation's page names the destination of each delivery", async () => {
    const conversation = newConversation();
    await deadLettersAtBoth(conversation, 1);
    const cookie = await signIn();
    const html = await page(conversationUrl(conversation), cookie);
    const receipts = after(html, "receipts", 20_000);
    expect(receipts).toContain('data-testid="destination-delivery" data-destination="origin" data-status="failed"');
    expect(receipts).toContain('data-testid="destination-delivery" data-destination="crm" data-status="failed"');
    const outbox = after(html, "outbox", 20_000);
    const destinations = [...outbox.matchAll(/data-testid="outbox-row" data-receipt-id="[^"]*" data-destination="([^"]*)"/g)].map((match) => match[1]);
    expect(destinations.sort()).toEqual(["crm", "origin"]);
    expect(outbox).toContain('data-testid="replay-conversation-destination"');

    const replay = await dashboard(`${conversationUrl(conversation)}/replay`, { method: "POST", cookie, form: { back: "conversation", destination: "crm" } });
    expect(replay.status).toBe(303);
    expect(replay.headers.get("location")).toBe(`/dashboard${conversationUrl(conversation)}?requeued=1`);
  });
});

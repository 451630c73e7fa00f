// Dashboard sessions end on the server at sign-out (issue 18, finding 6; src/dashboard/session.ts,
// revocations.ts), and every page links an icon (issue 15: no /favicon.ico 404 in the console).
import { describe, expect, it } from "vitest";
import { createExecutionContext, runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { app } from "../../src/app";
import { ICON } from "../../src/dashboard/assets";
import { revocationsStub } from "../../src/dashboard/revocations";
import { SESSION_TTL_SECONDS } from "../../src/dashboard/session";
import { dashboard, ORIGIN, signIn } from "../support/dashboard";

const signOut = (cookie: string) => dashboard("/logout", { method: "POST", cookie, form: {} });

/** What a copied cookie gets: the overview, a form post and the live tail's WebSocket route. */
async function answersTo(cookie: string) {
  const page = await dashboard("", { cookie });
  const post = await dashboard("/replays", { method: "POST", cookie, form: {} });
  const live = await exports.default.fetch(
    new Request(`${ORIGIN}/dashboard/conversations/x/live`, { headers: { cookie, origin: ORIGIN, upgrade: "websocket" } }),
  );
  return { page: page.status, location: page.headers.get("location"), post: post.status, live: live.status };
}

const REFUSED = { page: 303, location: "/dashboard/login?next=%2Fdashboard", post: 401, live: 403 };

describe("sign-out ends the session on the server", () => {
  it("a copied cookie is refused after sign-out, on every kind of route", async () => {
    const cookie = await signIn();
    const copied = cookie;
    expect((await dashboard("", { cookie: copied })).status).toBe(200);
    const out = await signOut(cookie);
    expect(out.status).toBe(303);
    expect(out.headers.get("location")).toBe("/dashboard/login");
    expect(out.headers.get("set-cookie")).toMatch(/^relay_session=;/);
    expect(await answersTo(copied)).toEqual(REFUSED);
    // The sign-in form is shown to it, not a redirect back into the dashboard.
    expect((await dashboard("/login", { cookie: copied })).status).toBe(200);
  });

  it("ends that session only: another sign-in stays valid", async () => {
    const [first, second] = [await signIn(), await signIn()];
    expect(first).not.toBe(second);
    await signOut(first);
    expect((await dashboard("", { cookie: first })).status).toBe(303);
    expect((await dashboard("", { cookie: second })).status).toBe(200);
  });

  it("the revocation survives the object's restart", async () => {
    const cookie = await signIn();
    await signOut(cookie);
    const stub = revocationsStub(env);
    const before = new WeakSet<object>();
    // abort() resets the object: its next request runs in a new instance over the same storage.
    await runInDurableObject(stub, (instance, state) => {
      before.add(instance);
      try {
        state.abort("test restart");
      } catch {
        // abort() throws in the caller by design.
      }
    }).catch(() => undefined);
    expect(await answersTo(cookie)).toEqual(REFUSED);
    // A new stub (the old one is broken by the reset) reaches the new instance.
    expect(await runInDurableObject(revocationsStub(env), (instance) => before.has(instance))).toBe(false);
  });

  it("keeps a revoked id until the cookie's expiry, then forgets it", async () => {
    const stub = revocationsStub(env);
    const now = Date.now();
    const [early, late] = [crypto.randomUUID(), crypto.randomUUID()];
    await stub.revoke(early, now + 1000, now);
    await stub.revoke(late, now + SESSION_TTL_SECONDS * 1000, now);
    expect(await stub.isRevoked(early)).toBe(true);
    // Any later sign-out prunes what has expired.
    await stub.revoke(crypto.randomUUID(), now + SESSION_TTL_SECONDS * 1000, now + 2000);
    expect(await stub.isRevoked(early)).toBe(false);
    expect(await stub.isRevoked(late)).toBe(true);
  });

  it("signing out without a valid session only clears the cookie, storing nothing", async () => {
    const rows = () => runInDurableObject(revocationsStub(env), (_, state) => Number(state.storage.sql.exec("SELECT COUNT(*) AS n FROM revoked").one().n));
    const before = await rows();
    const response = await signOut("relay_session=v1.9999999999999.00000000000000000000000000000000.forged");
    expect(response.status).toBe(303);
    expect(response.headers.get("set-cookie")).toMatch(/^relay_session=;/);
    expect(await rows()).toBe(before);
  });
});

describe("when the revocations object cannot answer", () => {
  // A namespace whose object always fails, in place of SESSION_REVOCATIONS.
  const failing = {
    idFromName: () => ({}),
    get: () => ({
      isRevoked: () => Promise.reject(new Error("object unreachable")),
      revoke: () => Promise.reject(new Error("object unreachable")),
    }),
  };
  const withFailing = (path: string, init: RequestInit & { cookie: string }) =>
    app.fetch(
      new Request(`${ORIGIN}/dashboard${path}`, {
        ...init,
        redirect: "manual",
        headers: { cookie: init.cookie, origin: ORIGIN, "content-type": "application/x-www-form-urlencoded" },
      }),
      { ...env, SESSION_REVOCATIONS: failing },
      createExecutionContext(),
    );

  it("a page is refused 503 rather than shown unchecked, and sign-out says it failed and keeps the cookie", async () => {
    const cookie = await signIn();
    const page = await withFailing("", { cookie });
    expect(page.status).toBe(503);
    expect(await page.text()).toContain("Could not check your session.");
    const out = await withFailing("/logout", { method: "POST", cookie, body: "" });
    expect(out.status).toBe(503);
    expect(out.headers.get("set-cookie")).toBeNull();
    expect((await dashboard("", { cookie })).status).toBe(200);
  });
});

describe("the icon", () => {
  it("every page links it; it is served as an immutable SVG asset under the CSP", async () => {
    const login = await (await dashboard("/login")).text();
    expect(login).toContain(`<link rel="icon" type="image/svg+xml" href="/dashboard/assets/${ICON.name}"/>`);
    const cookie = await signIn();
    expect(await (await dashboard("", { cookie })).text()).toContain(`href="/dashboard/assets/${ICON.name}"`);
    const icon = await dashboard(`/assets/${ICON.name}`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get("content-type")).toBe("image/svg+xml");
    expect(icon.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(icon.headers.get("content-security-policy")).toContain("default-src 'none'");
    const svg = await icon.text();
    expect(svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    // Nothing the CSP would block: no style element, script or event handler.
    expect(svg).not.toMatch(/<style|<script|\son[a-z]+=/i);
  });

  it("/favicon.ico, asked for by browsers on pages without an icon, leads to it rather than a 404", async () => {
    const favicon = await exports.default.fetch(new Request(`${ORIGIN}/favicon.ico`, { redirect: "manual" }));
    expect(favicon.status).toBe(302);
    expect(favicon.headers.get("location")).toBe(`/dashboard/assets/${ICON.name}`);
  });
});

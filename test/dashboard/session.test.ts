// The operators' dashboard (src/dashboard, docs/dashboard.md): sign-in and sessions (src/dashboard/session.ts),
// CSRF and CSP, the assets and the unknown path (src/dashboard/routes.tsx).
import { describe, expect, it } from "vitest";
import { SCRIPT, STYLESHEET } from "../../src/dashboard/assets";
import { sessionSetCookie, SESSION_TTL_SECONDS } from "../../src/dashboard/session";
import { ADMIN_TOKEN, unique } from "../support/callbacks";
import { conversationUrl, cookiePair, CSP, dashboard, page, signIn, withDeadLetters } from "../support/dashboard";
import { stubFor } from "../support/receipts";

describe("sign-in", () => {
  it("shows the form: a password field and a button, no token in any URL", async () => {
    const response = await dashboard("/login");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-security-policy")).toBe(CSP);
    const html = await response.text();
    expect(html).toMatch(/<form method="post" action="\/dashboard\/login"/);
    expect(html).toMatch(/<input name="token" type="password"[^>]*data-testid="token"/);
    expect(html).toContain('data-testid="sign-in"');
    expect(html).toContain('<meta name="viewport"');
  });

  it("refuses a wrong token with the form again, 401, and sets no cookie", async () => {
    const response = await dashboard("/login", { method: "POST", form: { token: "not-the-admin-token" } });
    expect(response.status).toBe(401);
    expect(response.headers.get("set-cookie")).toBeNull();
    const html = await response.text();
    expect(html).toContain('data-testid="login-error"');
    expect(html).toContain('data-testid="token"');
    expect(html).not.toContain(ADMIN_TOKEN);
  });

  it("answers 429 with Retry-After after 20 failed sign-ins from one address, like the API", async () => {
    const headers = { "cf-connecting-ip": `203.0.113.${Math.floor(Math.random() * 250)}` };
    const statuses: number[] = [];
    for (let i = 0; i < 21; i++) statuses.push((await dashboard("/login", { method: "POST", form: { token: "wrong-token-0123456789" }, headers })).status);
    expect(statuses.slice(0, 20).every((status) => status === 401)).toBe(true);
    expect(statuses[20]).toBe(429);
    const limited = await dashboard("/login", { method: "POST", form: { token: "wrong-token-0123456789" }, headers });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(await limited.text()).toContain('data-testid="login-error"');
    // The right token still signs in.
    expect((await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN }, headers })).status).toBe(303);
  });

  it("sets an HttpOnly, Secure, SameSite=Strict session cookie for /dashboard, 12 hours, and goes to the overview", async () => {
    const response = await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN } });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard");
    const setCookie = response.headers.get("set-cookie") ?? "";
    const attributes = setCookie.split(";").map((part) => part.trim());
    expect(attributes[0]).toMatch(/^relay_session=v1\.\d+\.[0-9a-f]{32}\..+$/);
    expect(attributes).toEqual(expect.arrayContaining(["HttpOnly", "Secure", "SameSite=Strict", "Path=/dashboard", `Max-Age=${SESSION_TTL_SECONDS}`]));
    expect(setCookie).not.toContain(ADMIN_TOKEN);
    expect((await dashboard("", { cookie: cookiePair(setCookie) })).status).toBe(200);
  });

  it("goes back to a dashboard path given as next, and never to another site", async () => {
    const to = async (next: string) => (await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN, next } })).headers.get("location");
    expect(await to("/dashboard/dead-letters?provider=tencent")).toBe("/dashboard/dead-letters?provider=tencent");
    for (const foreign of ["https://evil.test/dashboard", "//evil.test/dashboard", "/\\evil.test", "/v1/dead-letters", "/dashboardx", "javascript:alert(1)"]) {
      expect(await to(foreign)).toBe("/dashboard");
    }
  });

  it("signs out: the cookie is cleared and the browser goes to the sign-in form", async () => {
    const cookie = await signIn();
    const response = await dashboard("/logout", { method: "POST", cookie, form: {} });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard/login");
    const cleared = response.headers.get("set-cookie") ?? "";
    expect(cleared).toMatch(/^relay_session=;/);
    expect(cleared).toContain("Max-Age=0");
    expect(cleared).toContain("Path=/dashboard");
  });

  it("answers 503 with how to turn it on while ADMIN_TOKEN is unset or malformed", async () => {
    for (const token of ["", "short"]) {
      const response = await dashboard("/login", { env: { ADMIN_TOKEN: token } });
      expect(response.status).toBe(503);
      const html = await response.text();
      expect(html).toContain('data-testid="dashboard-off"');
      expect(html).toContain("ADMIN_TOKEN");
      expect((await dashboard("", { env: { ADMIN_TOKEN: token } })).status).toBe(503);
    }
  });
});

describe("sessions", () => {
  it("sends a browser without a session to the sign-in form, coming back after", async () => {
    const overview = await dashboard("");
    expect(overview.status).toBe(303);
    expect(overview.headers.get("location")).toBe("/dashboard/login?next=%2Fdashboard");
    const filtered = await dashboard("/conversations?provider=tencent&status=failing");
    expect(filtered.headers.get("location")).toBe(`/dashboard/login?next=${encodeURIComponent("/dashboard/conversations?provider=tencent&status=failing")}`);
    const login = await dashboard("/login?next=%2Fdashboard%2Fdead-letters");
    expect(await login.text()).toContain('<input type="hidden" name="next" value="/dashboard/dead-letters"/>');
  });

  it("refuses POSTs and the replay JSON without a session (401), rather than redirecting", async () => {
    const replay = await dashboard("/replays", { method: "POST", form: {} });
    expect(replay.status).toBe(401);
    expect(await replay.text()).toContain('data-testid="signed-out"');
    const progress = await dashboard(`/replays/${crypto.randomUUID()}.json`);
    expect(progress.status).toBe(401);
    expect(await progress.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it("refuses a tampered cookie", async () => {
    const cookie = await signIn();
    const [name, value] = cookie.split("=") as [string, string];
    const decoded = decodeURIComponent(value);
    const dot = decoded.lastIndexOf(".");
    const [expiry, id] = decoded.slice(3, dot).split(".") as [string, string];
    const tampered = [
      // A later expiry with the old signature.
      `v1.${Number(expiry) + 1000}.${id}${decoded.slice(dot)}`,
      // Another signature.
      `${decoded.slice(0, dot)}.${"A".repeat(43)}=`,
      // No signature at all.
      decoded.slice(0, dot),
    ];
    for (const forged of tampered) {
      const response = await dashboard("", { cookie: `${name}=${encodeURIComponent(forged)}` });
      expect(response.status, forged).toBe(303);
      expect(response.headers.get("location")).toContain("/dashboard/login");
    }
  });

  it("refuses an expired session, and one longer than a sign-in lasts", async () => {
    for (const expiresAt of [Date.now() - 1000, Date.now() + (SESSION_TTL_SECONDS + 3600) * 1000]) {
      const cookie = cookiePair(await sessionSetCookie(ADMIN_TOKEN, expiresAt));
      expect((await dashboard("", { cookie })).status).toBe(303);
    }
    const fresh = cookiePair(await sessionSetCookie(ADMIN_TOKEN, Date.now() + 60_000));
    expect((await dashboard("", { cookie: fresh })).status).toBe(200);
  });

  it("changing ADMIN_TOKEN revokes every session", async () => {
    const cookie = await signIn();
    expect((await dashboard("", { cookie })).status).toBe(200);
    const rotated = await dashboard("", { cookie, env: { ADMIN_TOKEN: "a-new-admin-token-0123456789" } });
    expect(rotated.status).toBe(303);
    // And a session made under another token is refused under this one.
    const other = cookiePair(await sessionSetCookie("another-admin-token-0123", Date.now() + 60_000));
    expect((await dashboard("", { cookie: other })).status).toBe(303);
  });
});

describe("CSRF and headers", () => {
  it("refuses a POST from another site, or with neither Origin nor Sec-Fetch-Site", async () => {
    const cookie = await signIn();
    const foreignLogin = await dashboard("/login", { method: "POST", form: { token: ADMIN_TOKEN }, origin: "https://evil.test" });
    expect(foreignLogin.status).toBe(403);
    expect(foreignLogin.headers.get("set-cookie")).toBeNull();
    expect(await foreignLogin.text()).toContain('data-testid="csrf-refused"');
    const conversation = unique("tencent:1400000001:g:csrf-");
    await withDeadLetters(conversation);
    const foreignReplay = await dashboard(`${conversationUrl(conversation)}/replay`, { method: "POST", cookie, form: {}, origin: "https://evil.test" });
    expect(foreignReplay.status).toBe(403);
    const noOrigin = await dashboard(`${conversationUrl(conversation)}/replay`, { method: "POST", cookie, form: {}, origin: null });
    expect(noOrigin.status).toBe(403);
    // Still a dead letter: nothing was replayed.
    expect(await stubFor(conversation).deliveries("failed")).toHaveLength(1);
    // A browser's same-origin form without Origin is let through on Sec-Fetch-Site.
    const sameOrigin = await dashboard(`${conversationUrl(conversation)}/replay`, {
      method: "POST",
      cookie,
      form: {},
      origin: null,
      headers: { "sec-fetch-site": "same-origin" },
    });
    expect(sameOrigin.status).toBe(303);
  });

  it("serves the stylesheet and the script under content-hashed names, cached for a year; pages have no inline script or style", async () => {
    for (const asset of [STYLESHEET, SCRIPT]) {
      expect(asset.name).toMatch(/^dashboard-[0-9a-f]{8}\.(css|js)$/);
      const response = await dashboard(`/assets/${asset.name}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe(asset.contentType);
      expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(await response.text()).toBe(asset.body);
    }
    expect((await dashboard("/assets/dashboard-00000000.js")).status).toBe(404);
    expect(STYLESHEET.body).toContain("prefers-color-scheme: dark");
    const cookie = await signIn();
    const html = await page("", cookie);
    expect(html).toContain(`<link rel="stylesheet" href="/dashboard/assets/${STYLESHEET.name}"/>`);
    expect(html).toContain(`<script src="/dashboard/assets/${SCRIPT.name}" defer=""></script>`);
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle=|<style|\son[a-z]+=/);
  });

  it("answers an unknown dashboard path with a 404 page", async () => {
    const cookie = await signIn();
    const html = await page("/nothing-here", cookie, 404);
    expect(html).toContain('data-testid="not-found"');
  });
});

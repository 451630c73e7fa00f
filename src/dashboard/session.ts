/**
 * The dashboard's session (docs/dashboard.md, "Sign-in and sessions"): a cookie holding its expiry
 * and a random id, signed with HMAC-SHA256 under a key derived from ADMIN_TOKEN. Signing in stores
 * nothing; signing out records the id as revoked until the cookie's expiry (revocations.ts), so a
 * copied cookie ends with it. Changing ADMIN_TOKEN changes the key, which ends every session at
 * once. The signature is checked with `crypto.subtle.verify` (Hono's signed cookies), which
 * compares in constant time.
 */
import type { Context } from "hono";
import { deleteCookie, generateSignedCookie, getSignedCookie, setSignedCookie } from "hono/cookie";
import { z } from "zod";
import { toHex, utf8 } from "../crypto/encoding";
import { revocationsStub } from "./revocations";

export const SESSION_COOKIE = "relay_session";
/** How long a sign-in lasts. */
export const SESSION_TTL_SECONDS = 12 * 3600;
/** The cookie is sent to the dashboard only, never to the API or the callback routes. */
export const SESSION_PATH = "/dashboard";

/** `v1.<expiry, epoch ms>.<random id>`: the id makes every sign-in's cookie distinct. */
const SessionValue = z
  .string()
  .regex(/^v1\.\d{1,16}\.[0-9a-f]{32}$/)
  .transform((value) => {
    const [, expiresAt, id] = value.split(".");
    return { expiresAt: Number(expiresAt), id: id ?? "" };
  });
export type Session = z.infer<typeof SessionValue>;

/** Domain separation: this key signs sessions and nothing else, and is not the token itself. */
const KEY_LABEL = "receipt-relay dashboard session v1";

export async function sessionKey(adminToken: string): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", utf8(adminToken), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(KEY_LABEL)));
}

const cookieOptions = {
  path: SESSION_PATH,
  httpOnly: true,
  // Chromium and Firefox keep Secure cookies over http://localhost and http://127.0.0.1 (both count
  // as potentially trustworthy origins), so `wrangler dev` works; see docs/dashboard.md.
  secure: true,
  sameSite: "Strict",
} as const;

function newSessionValue(now: number): string {
  const id = toHex(crypto.getRandomValues(new Uint8Array(16)));
  return `v1.${now + SESSION_TTL_SECONDS * 1000}.${id}`;
}

/** Signs the visitor in: sets the session cookie. */
export async function startSession(c: Context, adminToken: string, now: number): Promise<void> {
  await setSignedCookie(c, SESSION_COOKIE, newSessionValue(now), await sessionKey(adminToken), { ...cookieOptions, maxAge: SESSION_TTL_SECONDS });
}

/** The session the request's cookie holds when it is signed under this token and has not expired; not checked for revocation. */
async function signedSession(c: Context, adminToken: string, now: number): Promise<Session | undefined> {
  const signed = await getSignedCookie(c, await sessionKey(adminToken), SESSION_COOKIE);
  if (typeof signed !== "string") return undefined;
  const value = SessionValue.safeParse(signed);
  if (!value.success) return undefined;
  // Never longer than a sign-in lasts, whatever the value says.
  return value.data.expiresAt > now && value.data.expiresAt <= now + SESSION_TTL_SECONDS * 1000 ? value.data : undefined;
}

/**
 * Signs out: a valid session's id is revoked until its expiry, on the server, before the cookie is
 * cleared; a cookie that is not a valid session is only cleared. Throws when the revocation could
 * not be stored (the session would otherwise live on in a copied cookie).
 */
export async function endSession(c: Context, env: Env, adminToken: string, now: number): Promise<void> {
  const session = await signedSession(c, adminToken, now);
  if (session) await revocationsStub(env).revoke(session.id, session.expiresAt, now);
  deleteCookie(c, SESSION_COOKIE, cookieOptions);
}

/**
 * True when the request carries a session signed under this token, not expired and not signed
 * out: one call to the revocations object per request, nothing cached, so a sign-out holds at once
 * everywhere. Throws when that object cannot answer (the caller refuses rather than guess).
 */
export async function hasSession(c: Context, env: Env, adminToken: string, now: number): Promise<boolean> {
  const session = await signedSession(c, adminToken, now);
  if (!session) return false;
  return !(await revocationsStub(env).isRevoked(session.id));
}

/**
 * A `Set-Cookie` header for a session signed under `adminToken` that expires at `expiresAt`:
 * what tests use to present a session made under another token, or an expired one.
 */
export async function sessionSetCookie(adminToken: string, expiresAt: number): Promise<string> {
  const id = toHex(crypto.getRandomValues(new Uint8Array(16)));
  return generateSignedCookie(SESSION_COOKIE, `v1.${expiresAt}.${id}`, await sessionKey(adminToken), { ...cookieOptions, maxAge: SESSION_TTL_SECONDS });
}

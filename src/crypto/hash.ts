/** SHA-256 and HMAC-SHA256 through Web Crypto (present in workerd and Node alike). */
import { toBase64, toHex, utf8 } from "./encoding";

export async function sha256Hex(text: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", utf8(text)));
}

/** Lower-case hex SHA-256 of bytes as they are (a body as received). */
export async function sha256BytesHex(bytes: Uint8Array): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", bytes));
}

export async function hmacSha256Base64(key: Uint8Array, message: string): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return toBase64(await crypto.subtle.sign("HMAC", cryptoKey, utf8(message)));
}

/** Lower-case hex HMAC-SHA256 of `message` (text as UTF-8, or bytes as they are) under `key` (text as UTF-8, or bytes). */
export async function hmacSha256Hex(key: string | Uint8Array, message: Uint8Array | string): Promise<string> {
  const keyBytes = typeof key === "string" ? utf8(key) : key;
  const cryptoKey = await crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return toHex(await crypto.subtle.sign("HMAC", cryptoKey, typeof message === "string" ? utf8(message) : message));
}

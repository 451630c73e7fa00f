/** SHA-256 and HMAC-SHA256 through Web Crypto (present in workerd and Node alike). */
import { toBase64, toHex, utf8 } from "./encoding";

export async function sha256Hex(text: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", utf8(text)));
}

export async function hmacSha256Base64(key: Uint8Array, message: string): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return toBase64(await crypto.subtle.sign("HMAC", cryptoKey, utf8(message)));
}

/**
 * MD5, for Easemob's `security` signature only (the provider chose it; nothing else here uses it).
 * Web Crypto first: workerd implements `crypto.subtle.digest("MD5")`. Runtimes without it (Node's
 * Web Crypto refuses MD5) use the pure RFC 1321 implementation below, behind the same async call.
 */
import { toHex, utf8 } from "./encoding";

export type DigestSubtle = Pick<SubtleCrypto, "digest">;

/** MD5 of the UTF-8 bytes of `text`, as 16 bytes. */
export async function md5(text: string, subtle: DigestSubtle | undefined = typeof crypto === "undefined" ? undefined : crypto.subtle): Promise<Uint8Array> {
  const bytes = utf8(text);
  if (subtle) {
    try {
      return new Uint8Array(await subtle.digest("MD5", bytes));
    } catch {
      // NotSupportedError and the like: fall through to the portable implementation.
    }
  }
  return md5Portable(bytes);
}

/** Lower-case hex MD5 of the UTF-8 bytes of `text`. */
export async function md5Hex(text: string, subtle: DigestSubtle | undefined = typeof crypto === "undefined" ? undefined : crypto.subtle): Promise<string> {
  return toHex(await md5(text, subtle));
}

// Per-round shift amounts and the sine-derived constants of RFC 1321, section 3.4.
const SHIFTS = [
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16,
  23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];
const SINES = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);

/** MD5 of raw bytes, in plain TypeScript (RFC 1321). */
export function md5Portable(message: Uint8Array): Uint8Array {
  const bitLength = message.length * 8;
  // Pad: 0x80, zeros to 56 mod 64, then the bit length as 64-bit little-endian.
  const paddedLength = (((message.length + 8) >> 6) + 1) * 64;
  const padded = new Uint8Array(paddedLength);
  padded.set(message);
  padded[message.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(paddedLength - 8, bitLength >>> 0, true);
  view.setUint32(paddedLength - 4, Math.floor(bitLength / 2 ** 32), true);

  let a0 = 0x67452301;
  let b0 = 0xefcdab89;
  let c0 = 0x98badcfe;
  let d0 = 0x10325476;
  const words = new Uint32Array(16);
  for (let offset = 0; offset < paddedLength; offset += 64) {
    for (let i = 0; i < 16; i++) words[i] = view.getUint32(offset + i * 4, true);
    let a = a0;
    let b = b0;
    let c = c0;
    let d = d0;
    for (let i = 0; i < 64; i++) {
      let f: number;
      let g: number;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) % 16;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) % 16;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) % 16;
      }
      const rotated = (a + f + SINES[i]! + words[g]!) >>> 0;
      const shift = SHIFTS[i]!;
      a = d;
      d = c;
      c = b;
      b = (b + ((rotated << shift) | (rotated >>> (32 - shift)))) >>> 0;
    }
    a0 = (a0 + a) >>> 0;
    b0 = (b0 + b) >>> 0;
    c0 = (c0 + c) >>> 0;
    d0 = (d0 + d) >>> 0;
  }
  const digest = new Uint8Array(16);
  const out = new DataView(digest.buffer);
  [a0, b0, c0, d0].forEach((word, i) => out.setUint32(i * 4, word, true));
  return digest;
}

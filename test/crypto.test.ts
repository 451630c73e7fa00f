import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { md5Hex, md5Portable } from "../src/crypto/md5";
import { fromBase64, toBase64, toHex, utf8 } from "../src/crypto/encoding";
import { timingSafeEqual, timingSafeEqualAny, xorEqual, type TimingSafeSubtle } from "../src/crypto/timing-safe";

// RFC 1321, appendix A.5 ("test suite").
const RFC1321 = [
  ["", "d41d8cd98f00b204e9800998ecf8427e"],
  ["a", "0cc175b9c0f1b6a831c399e269772661"],
  ["abc", "900150983cd24fb0d6963f7d28e17f72"],
  ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
  ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
  ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"],
  ["12345678901234567890123456789012345678901234567890123456789012345678901234567890", "57edf4a22be3c955ac49da2e2107b67a"],
] as const;

/** A SubtleCrypto without MD5, as in Node: forces the portable path. */
const noMd5 = { digest: () => Promise.reject(new DOMException("Unrecognized name.", "NotSupportedError")) };

describe("md5Hex", () => {
  it.each(RFC1321)("Web Crypto: md5(%j)", async (input, expected) => {
    expect(await md5Hex(input)).toBe(expected);
  });

  it.each(RFC1321)("portable fallback: md5(%j)", async (input, expected) => {
    expect(await md5Hex(input, noMd5)).toBe(expected);
    expect(toHex(md5Portable(utf8(input)))).toBe(expected);
  });

  it("agrees with Web Crypto on any input, including multi-byte text and block edges", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: "grapheme", maxLength: 200 }), async (text) => {
        const web = toHex(await crypto.subtle.digest("MD5", utf8(text)));
        expect(toHex(md5Portable(utf8(text)))).toBe(web);
      }),
      { numRuns: 300 },
    );
    for (const length of [55, 56, 57, 63, 64, 65, 119, 120, 128]) {
      const text = "x".repeat(length);
      expect(await md5Hex(text, noMd5)).toBe(await md5Hex(text));
    }
  });
});

describe("timingSafeEqual", () => {
  const withoutNative: TimingSafeSubtle = { digest: crypto.subtle.digest.bind(crypto.subtle) };

  it.each([
    ["same", "same", true],
    ["same", "Same", false],
    ["short", "much longer value", false],
    ["", "", true],
    ["", "x", false],
  ] as const)("%j vs %j is %s, natively and with the fallback", async (a, b, equal) => {
    expect(await timingSafeEqual(a, b)).toBe(equal);
    expect(await timingSafeEqual(a, b, withoutNative)).toBe(equal);
  });

  it("finds a match anywhere in a list", async () => {
    expect(await timingSafeEqualAny("b", ["a", "b", "c"])).toBe(true);
    expect(await timingSafeEqualAny("d", ["a", "b", "c"])).toBe(false);
    expect(await timingSafeEqualAny("a", [])).toBe(false);
  });

  it("xorEqual refuses different lengths", () => {
    expect(xorEqual(new Uint8Array([1]), new Uint8Array([1, 2]))).toBe(false);
  });
});

describe("base64", () => {
  it("round-trips and refuses what is not base64", () => {
    const bytes = utf8("receipt-relay");
    expect(fromBase64(toBase64(bytes))).toEqual(bytes);
    expect(fromBase64("not base64!")).toBeUndefined();
    expect(fromBase64("abc")).toBeUndefined();
  });
});

/**
 * Constant-time string comparison for secrets, signatures and tokens.
 * workerd has `crypto.subtle.timingSafeEqual`; elsewhere (Node) a plain XOR loop does the same.
 * Both sides are SHA-256 hashed first so that the comparison takes the same time whatever the
 * lengths are, and a length mismatch leaks nothing about the secret.
 */
import { utf8 } from "./encoding";

/** workerd's SubtleCrypto has `timingSafeEqual`; Node's has not. */
export type TimingSafeSubtle = Pick<SubtleCrypto, "digest"> & {
  timingSafeEqual?: (a: ArrayBuffer | ArrayBufferView, b: ArrayBuffer | ArrayBufferView) => boolean;
};

export async function timingSafeEqual(given: string, expected: string, subtle: TimingSafeSubtle = crypto.subtle): Promise<boolean> {
  const [givenHash, expectedHash] = await Promise.all([subtle.digest("SHA-256", utf8(given)), subtle.digest("SHA-256", utf8(expected))]);
  const left = new Uint8Array(givenHash);
  const right = new Uint8Array(expectedHash);
  return typeof subtle.timingSafeEqual === "function" ? subtle.timingSafeEqual(left, right) : xorEqual(left, right);
}

/**
 * Constant-time equality of two byte strings of a public length (digests): compared as they are,
 * with no hashing first. Different lengths are unequal at once (the length is not secret).
 */
export function timingSafeEqualBytes(given: Uint8Array, expected: Uint8Array, subtle: TimingSafeSubtle = crypto.subtle): boolean {
  if (given.length !== expected.length) return false;
  return typeof subtle.timingSafeEqual === "function" ? subtle.timingSafeEqual(given, expected) : xorEqual(given, expected);
}

/** True when `given` equals any of `candidates`; always compares against every candidate. */
export async function timingSafeEqualAny(given: string, candidates: readonly string[]): Promise<boolean> {
  const results = await Promise.all(candidates.map((candidate) => timingSafeEqual(given, candidate)));
  return results.includes(true);
}

export function xorEqual(left: Uint8Array, right: Uint8Array): boolean {
  if (left.length !== right.length) return false;
  let difference = 0;
  for (let i = 0; i < left.length; i++) difference |= left[i]! ^ right[i]!;
  return difference === 0;
}

/** Which claims object holds a key: a pure function of the key, so every isolate agrees. */

/**
 * The number of shards. Each holds the claims of a few minutes (the age window), and an object
 * takes about a thousand requests a second, so 64 shards carry ~64,000 signed callbacks a second.
 * Changing it moves keys between shards: do it only with no claims younger than the age window.
 */
export const CLAIM_SHARDS = 64;

/** FNV-1a (32-bit) over UTF-16 code units: cheap, stable, and spreads similar keys apart. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

export const claimShardName = (key: string): string => `claims-${fnv1a(key) % CLAIM_SHARDS}`;

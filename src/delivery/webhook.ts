/**
 * Standard Webhooks (standard-webhooks spec): the envelope and signature of what the relay POSTs
 * to the origin. `v1,` + base64 HMAC-SHA256 over `${id}.${timestamp}.${body}`.
 */
import { hmacSha256Base64 } from "../crypto/hash";
import type { Receipt } from "../receipt";

/**
 * The body sent for a receipt; built once, at acceptance, so every attempt sends the same bytes.
 * Takes the receipt's JSON when the caller already has it, so it is not serialized twice.
 */
export function webhookBody(receipt: Receipt, receiptJson: string = JSON.stringify(receipt)): string {
  return `{"type":"receipt.read","timestamp":${JSON.stringify(receipt.readAt)},"data":${receiptJson}}`;
}

export async function signWebhook(key: Uint8Array, id: string, timestampSeconds: number, body: string): Promise<string> {
  return `v1,${await hmacSha256Base64(key, `${id}.${timestampSeconds}.${body}`)}`;
}

/**
 * The Standard Webhooks headers. With several keys (FORWARD_SECRET rotation) the signature header
 * lists one signature per key, space-separated, as the spec allows: an origin that knows any of
 * them verifies the delivery, so it can move to a new secret without a gap.
 */
export async function webhookHeaders(keys: readonly Uint8Array[], id: string, nowMs: number, body: string): Promise<Record<string, string>> {
  const timestamp = Math.floor(nowMs / 1000);
  const signatures = await Promise.all(keys.map((key) => signWebhook(key, id, timestamp, body)));
  return {
    "content-type": "application/json",
    "user-agent": "receipt-relay",
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signatures.join(" "),
  };
}

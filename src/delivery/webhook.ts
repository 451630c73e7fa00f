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

export async function webhookHeaders(key: Uint8Array, id: string, nowMs: number, body: string): Promise<Record<string, string>> {
  const timestamp = Math.floor(nowMs / 1000);
  return {
    "content-type": "application/json",
    "user-agent": "receipt-relay",
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": await signWebhook(key, id, timestamp, body),
  };
}

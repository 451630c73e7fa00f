/**
 * Standard Webhooks (standard-webhooks spec): the envelope and signature of what the relay POSTs
 * to the origin. `v1,` + base64 HMAC-SHA256 over `${id}.${timestamp}.${body}`.
 */
import { hmacSha256Base64 } from "../crypto/hash";
import type { Receipt } from "../receipt";

/**
 * The body sent for a receipt; the same bytes on every attempt. Takes the receipt's stored JSON,
 * so it is not serialized again.
 */
export function webhookBody(receipt: Pick<Receipt, "readAt">, receiptJson: string = JSON.stringify(receipt)): string {
  return `{"type":"receipt.read","timestamp":${JSON.stringify(receipt.readAt)},"data":${receiptJson}}`;
}

/**
 * The body of a batch (FORWARD_BATCH_MAX above 1): the receipts in order, timestamped with the
 * last one's readAt. A retry sends the same receipts, so the same bytes.
 */
export function batchWebhookBody(receipts: readonly { readAt: string; json: string }[]): string {
  const timestamp = receipts[receipts.length - 1]?.readAt ?? "";
  return `{"type":"receipt.read.batch","timestamp":${JSON.stringify(timestamp)},"data":[${receipts.map((receipt) => receipt.json).join(",")}]}`;
}

/** A batch's webhook-id: stable across its retries, distinct from every single receipt's id. */
export const batchWebhookId = (firstReceiptId: string, size: number) => `batch:${size}:${firstReceiptId}`;

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

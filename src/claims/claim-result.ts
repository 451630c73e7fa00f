/**
 * What a claim of a signed nonce answers (docs/design.md, "Reused signatures and callback claims"):
 * "claimed" for a first use (or one whose earlier claim expired), "same" for the same body and
 * conversation again (a provider's retry), "conflict" for another body or conversation.
 */
export type ClaimResult = "claimed" | "same" | "conflict";

/** Milliseconds since the epoch to ISO-8601 UTC: the one spelling of every time the relay writes or returns. */
export function isoFromMillis(millis: number): string {
  return new Date(millis).toISOString();
}

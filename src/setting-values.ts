/**
 * The schemas that setting values share (src/settings.ts, src/destinations/config.ts, providers'
 * settings): kept apart so that those modules import them without importing each other.
 */
import { z } from "zod";
import { fromBase64 } from "./crypto/encoding";

/** Unset and empty mean the same: the setting is absent. */
export const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (typeof value === "string" && value.trim() === "" ? undefined : value), schema.optional());

/** Comma-separated values, each trimmed; an empty item is an error (a stray comma hides a typo). */
export const list = (itemSchema: z.ZodType<string, string>, what: string) =>
  z
    .string()
    .transform((value) => value.split(",").map((item) => item.trim()))
    .refine((items) => items.every((item) => item.length > 0), `has an empty ${what} between commas`)
    .pipe(z.array(itemSchema).min(1));

export const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\s*\d+\s*$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

/** A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 key bytes. */
export const forwardKey = z
  .string()
  .refine((value) => value.startsWith("whsec_"), "must list secrets that start with whsec_")
  .transform((value) => fromBase64(value.slice("whsec_".length)))
  .refine((key) => key !== undefined, "must list secrets of the form whsec_ followed by base64")
  .refine((key) => key !== undefined && key.length >= 24 && key.length <= 64, "must list secrets of 24 to 64 key bytes")
  .transform((key) => key ?? new Uint8Array());

export const DEFAULT_RETRY_SCHEDULE = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200];

export const retrySchedule = z
  .string()
  .transform((value) => value.split(",").map((item) => item.trim()))
  .refine((items) => items.every((item) => /^\d+(\.\d+)?$/.test(item)), "must be comma-separated seconds, like 5,30,120")
  .transform((items) => items.map(Number))
  .pipe(z.array(z.number().max(86400, "has a step over 86400 seconds")).min(1).max(30, "has more than 30 steps"));

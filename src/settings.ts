/**
 * Env → typed settings. Every value is validated here, once per isolate; an error names the
 * setting and what is wrong with it, never its value (several of them are secrets).
 */
import { z } from "zod";
import { fromBase64 } from "./crypto/encoding";

/** Unset and empty mean the same: the setting is absent. */
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (typeof value === "string" && value.trim() === "" ? undefined : value), schema.optional());

const list = (itemSchema: z.ZodString, what: string) =>
  z
    .string()
    .transform((value) => value.split(",").map((item) => item.trim()))
    .pipe(z.array(itemSchema).min(1))
    .refine((items) => items.every((item) => item.length > 0), `has an empty ${what} between commas`);

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\s*\d+\s*$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const forwardSecret = z
  .string()
  .trim()
  .refine((value) => value.startsWith("whsec_"), "must start with whsec_")
  .transform((value) => fromBase64(value.slice("whsec_".length)))
  .refine((key) => key !== undefined, "must be whsec_ followed by base64")
  .refine((key) => key !== undefined && key.length >= 24 && key.length <= 64, "must hold 24 to 64 key bytes")
  .transform((key) => key ?? new Uint8Array());

export const DEFAULT_RETRY_SCHEDULE = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200];

const retrySchedule = z
  .string()
  .transform((value) => value.split(",").map((item) => item.trim()))
  .refine((items) => items.every((item) => /^\d+(\.\d+)?$/.test(item)), "must be comma-separated seconds, like 5,30,120")
  .transform((items) => items.map(Number))
  .pipe(z.array(z.number().max(86400, "has a step over 86400 seconds")).min(1).max(30, "has more than 30 steps"));

const SettingsSchema = z
  .object({
    EASEMOB_SECRET: optional(list(z.string(), "secret")),
    TENCENT_SDKAPPID: optional(list(z.string().regex(/^\d+$/, "must list numeric SdkAppid values"), "SdkAppid")),
    TENCENT_TOKEN: optional(z.string().trim()),
    OPENIM_TOKEN: optional(
      z
        .string()
        .trim()
        .min(16, "must be at least 16 characters")
        .regex(/^[A-Za-z0-9._~-]+$/, "may hold only letters, digits and . _ ~ - (it is a URL path segment)"),
    ),
    MAX_EVENT_AGE_SECONDS: optional(integer(1, 7 * 86400)).default(3600),
    RECENT_LIMIT: optional(integer(1, 1000)).default(100),
    ORIGIN_URL: optional(
      z
        .string()
        .trim()
        .pipe(z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })),
    ),
    FORWARD_SECRET: optional(forwardSecret),
    FORWARD_RETRY_SCHEDULE: optional(retrySchedule).default(DEFAULT_RETRY_SCHEDULE),
    FORWARD_TIMEOUT_MS: optional(integer(100, 120_000)).default(10_000),
    ADMIN_TOKEN: optional(z.string().trim().min(16, "must be at least 16 characters")),
  })
  .superRefine((settings, context) => {
    if (settings.TENCENT_TOKEN && !settings.TENCENT_SDKAPPID) {
      context.addIssue({ code: "custom", path: ["TENCENT_SDKAPPID"], message: "must be set when TENCENT_TOKEN is set" });
    }
    if (settings.ORIGIN_URL && !settings.FORWARD_SECRET) {
      context.addIssue({ code: "custom", path: ["FORWARD_SECRET"], message: "must be set when ORIGIN_URL is set" });
    }
  });

export type Settings = z.infer<typeof SettingsSchema>;

export interface SettingProblem {
  setting: string;
  problem: string;
}

export type SettingsResult = { ok: true; settings: Settings } | { ok: false; problems: SettingProblem[] };

/** Validates the raw environment. Messages come from the schema above, never from a value. */
export function parseSettings(env: Record<string, unknown>): SettingsResult {
  const result = SettingsSchema.safeParse(env);
  if (result.success) return { ok: true, settings: result.data };
  const problems = result.error.issues.map((issue) => ({
    setting: String(issue.path[0] ?? "settings"),
    problem: issue.code === "invalid_type" ? "must be a string" : issue.message,
  }));
  return { ok: false, problems };
}

export function describeProblems(problems: SettingProblem[]): string {
  return problems.map(({ setting, problem }) => `setting ${setting} ${problem}`).join("; ");
}

const cache = new WeakMap<object, SettingsResult>();

/** `parseSettings`, once per env object (the runtime hands the same object to every request). */
export function settingsOf(env: object): SettingsResult {
  let result = cache.get(env);
  if (!result) {
    result = parseSettings({ ...env });
    cache.set(env, result);
  }
  return result;
}

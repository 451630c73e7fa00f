/**
 * Every query and form the dashboard reads, as zod schemas. An HTML form sends an empty field as
 * "", which here means "not given".
 */
import { z } from "zod";
import { Cursor, ListQuery } from "../queries/conversations";
import { describeIssue } from "../providers/provider";
import { DestinationName, ReplayFilter } from "../ops/replay-job";

const blank = (value: unknown) => (typeof value === "string" && value.trim() === "" ? undefined : value);
const optionalField = <T extends z.ZodType>(schema: T) => z.preprocess(blank, schema);

/** Where a sign-in may send the browser back to: a path of the dashboard, never another site. */
export const NextPath = z
  .string()
  .max(2048)
  .refine((path) => /^\/dashboard(?:[/?]|$)/.test(path) && !/[\\\s\u0000-\u001f\u007f]/.test(path), "must be a path of the dashboard")
  .refine((path) => new URL(path, "https://relay.invalid").origin === "https://relay.invalid", "must stay on this site");

export const LoginQuery = z.object({ next: optionalField(NextPath.optional()).catch(undefined) });

export const LoginForm = z.object({
  token: z.string().max(4096, "the token is too long"),
  next: optionalField(NextPath.optional()).catch(undefined),
});
export type LoginForm = z.infer<typeof LoginForm>;

/** The conversations page's filters (GET form) and cursor; the same rules as GET /v1/conversations. */
export const ConversationsQuery = z.object({
  provider: optionalField(ListQuery.provider),
  status: optionalField(ListQuery.status),
  prefix: optionalField(ListQuery.prefix),
  cursor: optionalField(ListQuery.cursor),
});
export type ConversationsQuery = z.infer<typeof ConversationsQuery>;

/** The dead-letters page: the index's failing rows, optionally of one provider, key prefix or destination. */
export const DeadLettersQuery = ConversationsQuery.omit({ status: true }).extend({ destination: optionalField(DestinationName.optional()) });

/** The same bounds as the API's conversation keys (src/api/routes.ts). */
export const ConversationKey = z.string().min(1).max(4096);

/**
 * Conversations one live page watches at most: one WebSocket each (docs/dashboard.md, "Live
 * tail"), so a page stays light for the browser and for each conversation's 64 viewers.
 */
export const MAX_LIVE_CONVERSATIONS = 20;

/** GET /dashboard/live: `conversation` repeated, 1 to 20 keys; a key given twice is watched once. */
export const LiveQuery = z.object({
  conversation: z
    .array(z.string().min(1, "a conversation key cannot be empty").max(4096, "a conversation key is at most 4096 characters"))
    .min(1, "name at least one conversation: ?conversation=<key>")
    .max(MAX_LIVE_CONVERSATIONS, `at most ${MAX_LIVE_CONVERSATIONS} conversations at once`)
    .transform((keys) => [...new Set(keys)]),
});

export const ConversationQuery = z.object({
  // `?watch=1`: a conversation with no receipt yet still gets its page, to wait on the live tail.
  watch: optionalField(z.literal("1").optional()).catch(undefined),
  // Set by the replay redirect, to say how many dead letters went back in the queue.
  requeued: optionalField(z.coerce.number().int().min(0).optional()).catch(undefined),
  // The page of read state after this reader (a cursor the page itself wrote); a bad one shows the first page.
  readers: Cursor.catch(undefined),
});

export const ReplayConversationForm = z.object({
  back: optionalField(z.enum(["conversation", "dead-letters"]).optional()).catch(undefined),
  // The dead letters of this destination only; blank: of every destination.
  destination: optionalField(DestinationName.optional()),
});

/** The replay-all form: the API's filter, blank fields left out. */
export const ReplayAllForm = z.object({
  provider: optionalField(ReplayFilter.shape.provider),
  prefix: optionalField(ReplayFilter.shape.prefix),
  destination: optionalField(ReplayFilter.shape.destination),
});

/** A destination named in a dashboard path (pause, resume). */
export const DestinationPathName = DestinationName;

/** Set by the pause and resume redirects, to say what changed. */
export const DestinationsFlash = z.object({
  paused: optionalField(DestinationName.optional()).catch(undefined),
  resumed: optionalField(DestinationName.optional()).catch(undefined),
});

export const DeadLettersFlash = z.object({
  requeued: optionalField(z.coerce.number().int().min(0).optional()).catch(undefined),
});

/** One line naming what is wrong, as the API says it. */
export const describeInvalid = (error: z.ZodError) => describeIssue(error.issues).replace(/^field /, "");

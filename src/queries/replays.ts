/**
 * Replays as durable jobs (src/ops/replay-job.ts): starting one, and its progress
 * (docs/operations.md, "Dead letters and replay"). Data only: the API and the dashboard answer.
 */
import { z } from "zod";
import { indexDb, probeIndex, type IndexProblem } from "../ops/conversation-index";
import type { ReplayJobFilter, ReplayStatus } from "../ops/replay-job";

/** Thrown where a caller must not go on without the index (a replay job would only fail later). */
export class IndexUnavailableError extends Error {
  constructor(readonly problem: IndexProblem) {
    super(problem.message);
  }
}

const replayStub = (env: Env, id: string) => env.REPLAYS.get(env.REPLAYS.idFromName(id));
const ReplayId = z.uuid();

/**
 * Creates a replay job under a fresh id; the caller has checked that the index (DB) is bound.
 * Throws IndexUnavailableError when the index cannot be read (the job would fail in its alarm).
 */
export async function startReplayJob(env: Env, filter: ReplayJobFilter): Promise<ReplayStatus> {
  const db = indexDb(env);
  const problem = db ? await probeIndex(db, Date.now()) : undefined;
  if (problem) throw new IndexUnavailableError(problem);
  const id = crypto.randomUUID();
  return replayStub(env, id).start(id, filter);
}

/** A replay job's progress; null for an id that is not a job's. */
export async function replayStatus(env: Env, id: string): Promise<ReplayStatus | null> {
  if (!ReplayId.safeParse(id).success) return null;
  return replayStub(env, id).progress();
}

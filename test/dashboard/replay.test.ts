// The dashboard's replay of all matching dead letters (src/dashboard/pages/replay.tsx): the job, its
// progress page and JSON, and what is refused.
import { describe, expect, it } from "vitest";
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { z } from "zod";
import { unique } from "../support/callbacks";
import { dashboard, page, signIn, textOf, withDeadLetters } from "../support/dashboard";
import { waitFor } from "../support/origin-control";

describe("dead letters and replays", () => {
  const Progress = z.object({
    id: z.string(),
    status: z.enum(["running", "done"]),
    conversations: z.object({ done: z.number(), total: z.number() }),
    requeued: z.number(),
  });

  it("replays all matching dead letters as a job, with a progress page and its JSON", async () => {
    const prefix = unique("tencent:1400000001:g:all-") + "-";
    for (const name of ["a", "b", "c"]) await withDeadLetters(`${prefix}${name}`);
    const cookie = await signIn();
    const started = await dashboard("/replays", { method: "POST", cookie, form: { provider: "", prefix } });
    expect(started.status).toBe(303);
    const location = started.headers.get("location") ?? "";
    const id = /^\/dashboard\/replays\/([0-9a-f-]{36})$/.exec(location)?.[1] ?? "";
    expect(id).not.toBe("");
    const progressPage = await page(`/replays/${id}`, cookie);
    expect(progressPage).toMatch(/<progress data-testid="replay-progress" value="\d" max="3">/);
    expect(progressPage).toContain(`data-poll-url="/dashboard/replays/${id}.json"`);
    expect(["running", "done"]).toContain(textOf(progressPage, "replay-state"));

    const job = env.REPLAYS.get(env.REPLAYS.idFromName(id));
    const done = await waitFor("the replay to finish", async () => {
      // Hurries the job's alarm along (the platform runs it on its own too).
      await runDurableObjectAlarm(job);
      const response = await dashboard(`/replays/${id}.json`, { cookie });
      expect(response.status).toBe(200);
      const progress = Progress.parse(await response.json());
      return progress.status === "done" ? progress : undefined;
    });
    expect(done).toMatchObject({ id, conversations: { done: 3, total: 3 }, requeued: 3 });
    const finished = await page(`/replays/${id}`, cookie);
    expect(textOf(finished, "replay-state")).toBe("done");
    expect(finished).toContain('<progress data-testid="replay-progress" value="3" max="3">');
    expect(textOf(finished, "replay-requeued")).toBe("3");
  });

  it("refuses an invalid filter (400), answers an unknown job 404, and needs the index (503)", async () => {
    const cookie = await signIn();
    expect((await dashboard("/replays", { method: "POST", cookie, form: { provider: "x".repeat(65) } })).status).toBe(400);
    expect((await dashboard(`/replays/${crypto.randomUUID()}`, { cookie })).status).toBe(404);
    expect((await dashboard(`/replays/${crypto.randomUUID()}.json`, { cookie })).status).toBe(404);
    expect((await dashboard("/replays/not-a-uuid.json", { cookie })).status).toBe(404);
    const withoutDb = await dashboard("/replays", { method: "POST", cookie, form: {}, env: { DB: undefined } });
    expect(withoutDb.status).toBe(503);
    expect(await withoutDb.text()).toContain("index off: bind D1 as DB");
  });
});

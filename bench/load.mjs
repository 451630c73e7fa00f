// Load: autocannon runs against one worker, with the workerd process's CPU time across a run.
import autocannon from "autocannon";
import { cpuMicros } from "./build.mjs";
import { setSending, topUpPools } from "./callbacks.mjs";
import { options } from "./options.mjs";

/**
 * One autocannon run of `makeRequest`'s callbacks. They are signed ahead (bench/callbacks.mjs):
 * one is drawn first so that its pool exists, every pool in use is topped up, and nothing is
 * signed while the load runs.
 */
export async function load(instance, makeRequest, seconds, { connections = options.connections, amount } = {}) {
  makeRequest();
  await topUpPools();
  setSending(true, instance.relay ? "relay" : "noop");
  try {
    return await send(instance, makeRequest, seconds, { connections, amount });
  } finally {
    setSending(false);
  }
}

function send(instance, makeRequest, seconds, { connections, amount }) {
  return new Promise((resolve, reject) => {
    const run = autocannon(
      {
        url: instance.url,
        method: "POST",
        connections,
        // With `amount`, autocannon stops after that many requests (the duration is then ignored):
        // bounded by the caller's timer instead.
        ...(amount ? { amount } : { duration: seconds }),
        timeout: 20,
        // Fresh headers each time: autocannon writes content-length into the object it is given.
        requests: [
          {
            setupRequest: (request) => {
              const made = makeRequest();
              return { ...request, method: "POST", path: made.path, headers: { ...made.headers }, body: made.body };
            },
          },
        ],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    run.on("error", () => undefined);
  });
}

/** One load run, with the workerd process's CPU time across it. */
export async function measuredRun(instance, makeRequest, seconds, connections = options.connections) {
  const cpuBefore = instance.pid ? cpuMicros(instance.pid) : NaN;
  const result = await load(instance, makeRequest, seconds, { connections });
  const cpuAfter = instance.pid ? cpuMicros(instance.pid) : NaN;
  const requests = result.requests.total;
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests,
    cpuUs: requests > 0 ? (cpuAfter - cpuBefore) / requests : NaN,
    status: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => [code, count])),
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

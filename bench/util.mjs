// Small helpers shared by the bench modules: waiting, bounding and summarising.

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A promise bounded in time: past the deadline the phase fails rather than hanging. */
export function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export const median = (values) => {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
export const round = (value, digits = 2) => (Number.isFinite(value) ? Number(value.toFixed(digits)) : null);
export const sumStatus = (runs) => {
  const total = {};
  for (const run of runs) for (const [code, count] of Object.entries(run.status)) total[code] = (total[code] ?? 0) + count;
  return total;
};

// Percentiles and summaries of latency samples.

/**
 * The q-th percentile (q in [0, 100]) of the values, linear interpolation
 * between closest ranks (numpy's default, "type 7"): rank (n - 1) * q / 100.
 * NaN for no values.
 */
export function percentile(values: readonly number[], q: number): number {
  if (!(q >= 0 && q <= 100)) throw new Error(`percentile must be in [0, 100] (got ${q})`);
  if (values.length === 0) return NaN;
  const v = [...values].sort((a, b) => a - b);
  return percentileSorted(v, q);
}

/** percentile() on values already sorted ascending. */
export function percentileSorted(v: readonly number[], q: number): number {
  if (v.length === 0) return NaN;
  const rank = ((v.length - 1) * q) / 100;
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return v[lo] + (v[hi] - v[lo]) * (rank - lo);
}

export interface Summary {
  n: number;
  mean: number | null;
  min: number | null;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

const fin = (x: number) => (Number.isFinite(x) ? x : null);

/** Count, mean, min, p50, p90, p99, max (null when there are no values). */
export function summarize(values: readonly number[]): Summary {
  const v = [...values].sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return { n, mean: null, min: null, p50: null, p90: null, p99: null, max: null };
  let sum = 0;
  for (const x of v) sum += x;
  return {
    n,
    mean: fin(sum / n),
    min: v[0],
    p50: fin(percentileSorted(v, 50)),
    p90: fin(percentileSorted(v, 90)),
    p99: fin(percentileSorted(v, 99)),
    max: v[n - 1],
  };
}

/** Least-squares slope of y over x (NaN with fewer than two distinct x). */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return NaN;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += xs[i];
    my += ys[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
  }
  return sxx === 0 ? NaN : sxy / sxx;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

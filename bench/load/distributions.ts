// Length distributions (`fixed:N`, `uniform:A-B`, `normal:MEAN,SD`) and the
// open-loop arrival process (Poisson: exponential gaps at a rate).
import { intBetween, normal, rng } from './random';

export type Distribution =
  | { kind: 'fixed'; value: number }
  | { kind: 'uniform'; min: number; max: number }
  | { kind: 'normal'; mean: number; sd: number; min: number; max: number };

const INT = /^\d+$/;
const NUM = /^\d+(\.\d+)?$/;

/**
 * Parses a length distribution. Accepted forms (all lengths integers >= 1):
 *   N or fixed:N          always N
 *   uniform:A-B           an integer uniformly in [A, B]
 *   normal:MEAN,SD        round(MEAN + SD * z), clamped to [1, 2 * MEAN]
 *   normal:MEAN,SD,MIN-MAX  the same, clamped to [MIN, MAX]
 */
export function parseDistribution(text: string, what = 'distribution'): Distribution {
  const bad = (why: string) => new Error(`${what}: ${JSON.stringify(text)} ${why} (use fixed:N, uniform:A-B or normal:MEAN,SD[,MIN-MAX])`);
  const s = text.trim();
  const colon = s.indexOf(':');
  const kind = colon < 0 ? 'fixed' : s.slice(0, colon);
  const arg = colon < 0 ? s : s.slice(colon + 1);
  const positive = (x: string) => {
    if (!INT.test(x)) throw bad(`has ${JSON.stringify(x)} where a positive integer belongs`);
    const v = Number(x);
    if (v < 1) throw bad('has a length below 1');
    return v;
  };
  if (kind === 'fixed') return { kind, value: positive(arg) };
  if (kind === 'uniform') {
    const m = /^(\d+)-(\d+)$/.exec(arg);
    if (!m) throw bad('is not uniform:A-B');
    const min = positive(m[1]);
    const max = positive(m[2]);
    if (min > max) throw bad('has A > B');
    return { kind, min, max };
  }
  if (kind === 'normal') {
    const parts = arg.split(',');
    if (parts.length < 2 || parts.length > 3 || !NUM.test(parts[0]) || !NUM.test(parts[1])) throw bad('is not normal:MEAN,SD[,MIN-MAX]');
    const mean = Number(parts[0]);
    const sd = Number(parts[1]);
    if (mean < 1) throw bad('has a mean below 1');
    let min = 1;
    let max = Math.max(1, Math.round(2 * mean));
    if (parts.length === 3) {
      const m = /^(\d+)-(\d+)$/.exec(parts[2]);
      if (!m) throw bad('has a range that is not MIN-MAX');
      min = positive(m[1]);
      max = positive(m[2]);
      if (min > max) throw bad('has MIN > MAX');
    }
    return { kind, mean, sd, min, max };
  }
  throw bad(`has an unknown kind ${JSON.stringify(kind)}`);
}

/** One draw: an integer length. */
export function sample(d: Distribution, u: () => number): number {
  switch (d.kind) {
    case 'fixed':
      return d.value;
    case 'uniform':
      return intBetween(u, d.min, d.max);
    case 'normal':
      return Math.min(d.max, Math.max(d.min, Math.round(d.mean + d.sd * normal(u))));
  }
}

/** The distribution back in its flag form. */
export function formatDistribution(d: Distribution): string {
  switch (d.kind) {
    case 'fixed':
      return `fixed:${d.value}`;
    case 'uniform':
      return `uniform:${d.min}-${d.max}`;
    case 'normal':
      return `normal:${d.mean},${d.sd},${d.min}-${d.max}`;
  }
}

/** Largest value a distribution can produce (context-length checks). */
export function maxOf(d: Distribution): number {
  return d.kind === 'fixed' ? d.value : d.max;
}

/** Expected value (for planning and reports). */
export function meanOf(d: Distribution): number {
  return d.kind === 'fixed' ? d.value : d.kind === 'uniform' ? (d.min + d.max) / 2 : d.mean;
}

/**
 * Poisson arrivals at `rate` per second: the arrival times (seconds from the
 * start, increasing) of a process whose gaps are exponential with mean 1/rate.
 * An endless generator; the caller stops at a count or a duration.
 */
export function* poissonArrivals(rate: number, seed: number): Generator<number, never> {
  if (!(rate > 0) || !Number.isFinite(rate)) throw new Error(`arrival rate must be a positive number (got ${rate})`);
  const u = rng(seed);
  let t = 0;
  for (;;) {
    t += -Math.log(1 - u()) / rate; // 1 - u in (0, 1]
    yield t;
  }
}

// Seeded randomness for the load generator: prompts, lengths, request seeds and
// Poisson arrivals all come from one seed, so a run is reproducible.

/** mulberry32: a small, fast 32-bit generator; uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal draw (Box-Muller) from a uniform source. */
export function normal(u: () => number): number {
  const a = 1 - u(); // (0, 1]: log is finite
  const b = u();
  return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * b);
}

/** An integer in [lo, hi], both inclusive. */
export function intBetween(u: () => number, lo: number, hi: number): number {
  return lo + Math.floor(u() * (hi - lo + 1));
}

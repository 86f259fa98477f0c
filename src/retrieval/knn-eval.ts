// `roost eval --memory`: bits per byte with kNN memory, exactly as the engine
// interpolates (cpp/knn_memory.h), for several settings from one search.
// Each scoring window (src/engine/scoring.ts windowPlan) runs once through the
// engine for its log-probs and hidden states; the external neighbours of every
// scored position come from one exact batched search (KnnStore::search: the
// GEMM kernels over the F16 keys, faster here than an ANN index and exact),
// the local ones from the window's earlier positions (as a fresh sequence's
// local memory holds them). Only the target token's probability is needed:
//   p(y) = (1 - lambda) p_LM(y) + lambda * sum_{n: value_n = y} softmax_n(-d_n / T).
import { windowPlan } from '../engine/scoring';
import type { NativeEngine } from '../native';
import { windowStates } from './knn';

export interface MemorySetting {
  /** Use the loaded store (external memory). */
  external: boolean;
  local: boolean;
  k: number;
  lambda: number;
  temperature: number;
}

export interface MemoryScores {
  /** log p of every token without memory (null for the first). */
  plain: Array<number | null>;
  /** Per setting, log p of every token with it. */
  withMemory: Array<Array<number | null>>;
  window: number;
  stride: number;
  windows: number;
}

interface Nb {
  d: number;
  v: number;
}

/** The k nearest of rows 0 .. r-1 of hidden to row r (value of row s: tokens[s + 1]), nearest first, ties by index. */
function localNearest(hidden: Float32Array, C: number, r: number, tokens: number[], k: number): Nb[] {
  const best: Array<Nb & { i: number }> = [];
  for (let s = 0; s < r; s++) {
    let d = 0;
    for (let c = 0; c < C; c++) {
      const e = Math.fround(hidden[r * C + c]! - hidden[s * C + c]!);
      d = Math.fround(d + Math.fround(e * e));
    }
    if (best.length === k && !(d < best[k - 1]!.d)) continue;
    let at = best.length;
    while (at > 0 && best[at - 1]!.d > d) at--;
    best.splice(at, 0, { d, v: tokens[s + 1]!, i: s });
    if (best.length > k) best.pop();
  }
  return best;
}

/** log p(y) under the interpolation (no neighbour: lpLM). */
export function interpolatedLogprob(lpLM: number, y: number, nb: Nb[], lambda: number, temperature: number): number {
  if (nb.length === 0) return lpLM;
  let dmin = Infinity;
  for (const n of nb) dmin = Math.min(dmin, n.d);
  let z = 0;
  let hit = 0;
  for (const n of nb) {
    const w = Math.exp(-(n.d - dmin) / temperature);
    z += w;
    if (n.v === y) hit += w;
  }
  return Math.log((1 - lambda) * Math.exp(lpLM) + (lambda * hit) / z);
}

export async function scoreWithMemory(
  engine: NativeEngine,
  tokens: number[],
  window: number,
  memoryName: string | null,
  settings: MemorySetting[],
): Promise<MemoryScores> {
  const C = engine.info().nEmbd;
  const T = tokens.length;
  const plan = windowPlan(T, window, window - 1);
  const plain: Array<number | null> = new Array(T).fill(null);
  const withMemory = settings.map(() => new Array<number | null>(T).fill(null));
  const kExternal = Math.max(0, ...settings.filter((s) => s.external).map((s) => s.k));
  const kLocal = Math.max(0, ...settings.filter((s) => s.local).map((s) => s.k));
  for (const w of plan) {
    const ids = tokens.slice(w.a, w.b);
    const { logprobs, hidden } = await windowStates(engine, ids);
    // Token t is predicted by row t - 1 - a of the window.
    const r0 = w.from - 1 - w.a;
    const n = w.b - w.from;
    let ext: { dist: Float32Array; value: Int32Array } | null = null;
    if (kExternal > 0 && memoryName !== null) ext = engine.searchMemory(memoryName, hidden.slice(r0 * C, (r0 + n) * C), kExternal);
    for (let i = 0; i < n; i++) {
      const t = w.from + i;
      const r = r0 + i;
      const lp = logprobs[t - w.a]!;
      plain[t] = lp;
      const local = kLocal > 0 ? localNearest(hidden, C, r, ids, kLocal) : [];
      settings.forEach((s, si) => {
        const nb: Nb[] = [];
        if (s.external && ext) {
          for (let j = 0; j < s.k; j++) {
            const v = ext.value[i * kExternal + j]!;
            if (v >= 0) nb.push({ d: ext.dist[i * kExternal + j]!, v });
          }
        }
        if (s.local) nb.push(...local.slice(0, s.k));
        withMemory[si]![t] = interpolatedLogprob(lp, tokens[t]!, nb, s.lambda, s.temperature);
      });
    }
  }
  return { plain, withMemory, window, stride: Math.max(1, Math.min(window - 1, Math.floor(window / 2))), windows: plan.length };
}

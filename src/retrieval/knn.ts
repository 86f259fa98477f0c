// kNN memory (TRIME / kNN-LM; docs/retrieval.md "kNN memory"): the (key,
// value) pairs of every position of a corpus, key = the served model's final
// layer norm output there (the head's input), value = the token that follows.
// The engine searches and interpolates them at decode time (cpp/knn_memory.h);
// this file writes them and reads them for `roost eval --memory`.
//
// On disk, the folder knn/ of a datastore (or any folder):
//   keys.f16     entries x n_embd IEEE half floats, little-endian (1.6 GiB for 4.28M x 192)
//   values.i32   entries int32 token ids
//   knn.json     {format, version, entries, dim, model, vocab_size, window, stride, seconds}
// Keys are computed in windows of the model's context W (src/engine/scoring.ts
// windowPlan) that overlap by W/8: after the first window every key has at
// least W/8 positions of context, and the corpus runs through the model about
// 1.14 times (eval's W/2 overlap would be 2 times: 4.28M positions of the
// default model cost about 20 minutes of one core here).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { windowPlan } from '../engine/scoring';
import type { NativeEngine } from '../native';

export const KNN_DIR = 'knn';
const META = 'knn.json';

export interface KnnMeta {
  format: 'roost-knn';
  version: 1;
  entries: number;
  dim: number;
  model: string;
  vocab_size: number;
  window: number;
  stride: number;
  seconds: number;
}

/** The kNN memory folder of a datastore folder, or `dir` itself when it holds the files; null when neither does. */
export function knnFolder(dir: string): string | null {
  for (const d of [path.join(dir, KNN_DIR), dir]) if (fs.existsSync(path.join(d, 'keys.f16'))) return d;
  return null;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float -> IEEE half bits, round to nearest even (cpp/dtype.h f32_to_f16). */
export function toF16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return half;
}

/** One window through the engine: the hidden rows [n, C] and, when asked, log p of every token (NaN first). */
export async function windowStates(engine: NativeEngine, tokens: number[], logprobs = true): Promise<{ logprobs: Float64Array; hidden: Float32Array }> {
  const seq = engine.createSequence({ temperature: 0 });
  try {
    const [r] = await engine.step([{ seq, tokens, sample: false, promptLogprobs: logprobs, hidden: true }]);
    return { logprobs: r!.promptLogprobs ?? new Float64Array(0), hidden: r!.hidden! };
  } finally {
    engine.freeSequence(seq);
  }
}

export interface BuildKnnOptions {
  /** Tokens per window (the model's context). */
  window: number;
  model: string;
  /** Called after each window with the positions done so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** Writes keys.f16, values.i32 and knn.json of `tokens` into `dir` (created). */
export async function buildKnnMemory(engine: NativeEngine, tokens: number[], dir: string, o: BuildKnnOptions): Promise<KnnMeta> {
  const started = Date.now();
  const info = engine.info();
  const C = info.nEmbd;
  const T = tokens.length;
  if (T < 2) throw new Error(`a kNN memory needs a corpus of at least 2 tokens (got ${T})`);
  fs.mkdirSync(dir, { recursive: true });
  const keys = fs.openSync(path.join(dir, 'keys.f16'), 'w');
  const values = fs.openSync(path.join(dir, 'values.i32'), 'w');
  const overlap = Math.max(1, Math.floor(o.window / 8));
  const plan = windowPlan(T, o.window, o.window - 1, o.window - overlap);
  let done = 0;
  try {
    for (const w of plan) {
      const { hidden } = await windowStates(engine, tokens.slice(w.a, w.b), false);
      // Positions from-1 .. b-2 of the text: their keys, and the tokens after them.
      const n = w.b - w.from;
      const half = new Uint16Array(n * C);
      const base = (w.from - 1 - w.a) * C;
      for (let i = 0; i < n * C; i++) half[i] = toF16(hidden[base + i]!);
      fs.writeSync(keys, half);
      fs.writeSync(values, Int32Array.from(tokens.slice(w.from, w.b)));
      done += n;
      o.onProgress?.(done, T - 1);
    }
  } finally {
    fs.closeSync(keys);
    fs.closeSync(values);
  }
  const meta: KnnMeta = {
    format: 'roost-knn',
    version: 1,
    entries: done,
    dim: C,
    model: o.model,
    vocab_size: info.vocabSize,
    window: o.window,
    stride: o.window - overlap,
    seconds: (Date.now() - started) / 1000,
  };
  fs.writeFileSync(path.join(dir, META), JSON.stringify(meta, null, 1) + '\n');
  return meta;
}

/** knn.json of a memory folder, or null when it has none. */
export function readKnnMeta(dir: string): KnnMeta | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, META), 'utf8')) as KnnMeta;
  } catch {
    return null;
  }
}

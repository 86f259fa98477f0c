// Compares approximate-nearest-neighbour libraries installable from npm on
// recall@10 against exact (brute-force) search and on query time, on random
// Gaussian vectors (the hardest case for graph indexes: no cluster structure).
// The libraries are not dependencies of Roost except the chosen one: run with
// NODE_PATH pointing at a scratch install, e.g.
//   (cd /tmp/ann-try && npm install usearch hnswlib-node)
//   NODE_PATH=/tmp/ann-try/node_modules node dist/bench/ann-compare.js --n 100000 --dim 256 --out bench/results/ann-compare.json
import * as fs from 'node:fs';
import { gaussian } from './lib/gaussian';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const D = arg('dim', 256), K = 10;
let N = arg('n', 100_000), Q = arg('queries', 500);
const libs = (process.argv.includes('--libs') ? process.argv[process.argv.indexOf('--libs') + 1] : 'usearch,hnswlib-node').split(',');
const outIdx = process.argv.indexOf('--out');

// --vectors FILE --query-vectors FILE: real embeddings (little-endian float32 rows of --dim) instead of random ones.
const strArg = (name: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : undefined);
const fromFile = (file: string, rows: number) => new Float32Array(new Uint8Array(fs.readFileSync(file)).buffer).slice(0, rows * D);
const g = gaussian(1234);
const vectorsFile = strArg('vectors');
const queryFile = strArg('query-vectors');
if (vectorsFile) N = Math.min(N, fs.statSync(vectorsFile).size / 4 / D);
if (queryFile) Q = Math.min(Q, fs.statSync(queryFile).size / 4 / D);
const data = vectorsFile ? fromFile(vectorsFile, N) : new Float32Array(N * D).map(() => g());
const queries = queryFile ? fromFile(queryFile, Q) : new Float32Array(Q * D).map(() => g());

function exactTop(q: Float32Array): number[] {
  const best: Array<[number, number]> = [];
  for (let i = 0; i < N; i++) {
    let d = 0;
    for (let j = 0, o = i * D; j < D; j++) {
      const t = data[o + j] - q[j];
      d += t * t;
    }
    if (best.length < K || d < best[best.length - 1][1]) {
      best.push([i, d]);
      best.sort((x, y) => x[1] - y[1]);
      if (best.length > K) best.pop();
    }
  }
  return best.map((b) => b[0]);
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const t0 = Date.now();
const truth = Array.from({ length: Q }, (_, i) => exactTop(queries.subarray(i * D, (i + 1) * D)));
const exactMs = (Date.now() - t0) / Q;

interface Row { library: string; ef: number; recall_at_10: number; query_p50_ms: number; query_p99_ms: number }
const rows: Row[] = [];
const builds: Record<string, number> = {};

function measure(library: string, ef: number, search: (q: Float32Array) => number[]) {
  let hit = 0;
  const times: number[] = [];
  for (let i = 0; i < Q; i++) {
    const q = queries.subarray(i * D, (i + 1) * D);
    const s = process.hrtime.bigint();
    const got = search(q);
    times.push(Number(process.hrtime.bigint() - s) / 1e6);
    const want = new Set(truth[i]);
    hit += got.filter((x) => want.has(x)).length;
  }
  const row = { library, ef, recall_at_10: hit / (Q * K), query_p50_ms: pct(times, 0.5), query_p99_ms: pct(times, 0.99) };
  rows.push(row);
  console.log(JSON.stringify(row));
}

const EFS = (strArg('efs') ?? '64,128,256,512').split(',').map(Number);
for (const lib of libs) {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const mod = require(lib);
  const s = Date.now();
  if (lib === 'usearch') {
    const index = new mod.Index({ dimensions: D, metric: 'l2sq', connectivity: 16, expansion_add: 128, expansion_search: 64 });
    const keys = new BigUint64Array(N).map((_, i) => BigInt(i));
    index.add(keys, data);
    builds[lib] = Date.now() - s;
    // expansion_search is fixed at construction: reopen the saved graph with each ef.
    const file = `/tmp/ann-compare-${process.pid}.usearch`;
    index.save(file);
    for (const ef of EFS) {
      const view = new mod.Index({ dimensions: D, metric: 'l2sq', connectivity: 16, expansion_add: 128, expansion_search: ef });
      view.load(file);
      measure(lib, ef, (q) => Array.from(view.search(q, K, 1).keys as BigUint64Array, Number));
    }
    fs.rmSync(file);
  } else if (lib === 'hnswlib-node') {
    const index = new mod.HierarchicalNSW('l2', D);
    index.initIndex(N, 16, 128, 100);
    for (let i = 0; i < N; i++) index.addPoint(Array.from(data.subarray(i * D, (i + 1) * D)), i);
    builds[lib] = Date.now() - s;
    for (const ef of EFS) {
      index.setEf(ef);
      measure(lib, ef, (q) => index.searchKnn(Array.from(q), K).neighbors);
    }
  }
  console.log(`${lib}: built ${N} x ${D} in ${builds[lib]} ms`);
}

const result = { data: vectorsFile ? { vectors: vectorsFile, queries: queryFile } : 'random Gaussian (seed 1234)', n: N, dim: D, queries: Q, k: K, metric: 'l2sq', connectivity_M: 16, ef_construction: 128, exact_query_ms_js: exactMs, build_ms: builds, rows, cores: 2, note: 'shared 2-core machine, other work running' };
if (outIdx >= 0) fs.writeFileSync(process.argv[outIdx + 1], JSON.stringify(result, null, 2) + '\n');

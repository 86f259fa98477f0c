// bench/ann-scale: the datastore's ANN index (src/retrieval/ann.ts: usearch
// HNSW, cosine, connectivity 16, expansion_add 128, expansion_search 256) at
// 1M synthetic entries: recall@10 against exact search (usearch exactSearch,
// brute force) and single-query latency p50 / p99 (one thread, as a request
// searches). The entries are a Gaussian mixture (--clusters centres, spread
// --spread around them) of the datastore embedder's width (64), the shape of
// real embeddings; queries come from the same mixture, not from the entries.
//   node dist/bench/ann-scale.js [--n 1000000] [--dim 64] [--queries 500] [--out FILE]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { ANN_CONNECTIVITY, ANN_EF_ADD, ANN_EF_SEARCH, DenseIndex } from '../src/retrieval/ann';
import { gaussian } from './lib/gaussian';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '1000000' },
    dim: { type: 'string', default: '64' },
    queries: { type: 'string', default: '500' },
    clusters: { type: 'string', default: '1000' },
    spread: { type: 'string', default: '0.5' },
    out: { type: 'string' },
  },
});
const N = Number(values.n), D = Number(values.dim), Q = Number(values.queries), K = 10;

function mixture(rows: number, g: () => number, centres: Float32Array, C: number, spread: number, offset = 0): Float32Array {
  const out = new Float32Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const c = ((r + offset) * 7919) % C; // every centre in turn, scattered
    for (let j = 0; j < D; j++) out[r * D + j] = centres[c * D + j]! + spread * g();
  }
  return out;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

function main(): void {
  const g = gaussian(20);
  const C = Number(values.clusters);
  const centres = new Float32Array(C * D).map(() => g());
  const data = mixture(N, g, centres, C, Number(values.spread));
  const queries = mixture(Q, gaussian(21), centres, C, Number(values.spread), 12345);

  const index = new DenseIndex(D);
  let t = Date.now();
  const batch = 100_000;
  for (let s = 0; s < N; s += batch) {
    const n = Math.min(batch, N - s);
    index.add(Array.from({ length: n }, (_, i) => s + i), data.subarray(s * D, (s + n) * D));
    process.stderr.write(`\radded ${s + n}/${N}, ${((Date.now() - t) / 1000).toFixed(0)} s`);
  }
  const buildSeconds = (Date.now() - t) / 1000;
  process.stderr.write('\n');

  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const usearch = require('usearch') as { exactSearch: (d: Float32Array, q: Float32Array, dim: number, k: number, metric: string, threads: number) => { keys: BigUint64Array } };
  t = Date.now();
  const exact = usearch.exactSearch(data, queries, D, K, 'cos', 0);
  const exactSeconds = (Date.now() - t) / 1000;

  const latencies: number[] = [];
  let hits = 0;
  for (let q = 0; q < Q; q++) {
    const v = queries.subarray(q * D, (q + 1) * D);
    const s = process.hrtime.bigint();
    const got = index.search(v, K);
    latencies.push(Number(process.hrtime.bigint() - s) / 1e6);
    const truth = new Set(Array.from(exact.keys.subarray(q * K, (q + 1) * K), Number));
    hits += got.filter((x) => truth.has(x.key)).length;
  }
  const result = {
    bench: 'ann-scale',
    library: 'usearch (src/retrieval/ann.ts)',
    config: { metric: 'cos', connectivity: ANN_CONNECTIVITY, expansion_add: ANN_EF_ADD, expansion_search: ANN_EF_SEARCH },
    entries: N,
    dim: D,
    data: `Gaussian mixture: ${C} centres N(0, 1), spread ${values.spread}; ${Q} queries from the same mixture`,
    recall_at_10: hits / (Q * K),
    query_ms: { p50: pct(latencies, 0.5), p99: pct(latencies, 0.99), mean: latencies.reduce((a, b) => a + b, 0) / Q },
    build_seconds: buildSeconds,
    exact_search_seconds_all_queries: exactSeconds,
    cpu: os.cpus()[0]?.model,
    note: 'measured on the shared 2-core development machine while other jobs ran',
  };
  const file = values.out ?? path.join(root, 'bench', 'results', 'ann-scale.json');
  fs.writeFileSync(file, JSON.stringify(result, null, 1) + '\n');
  process.stdout.write(JSON.stringify(result) + '\n');
}

main();

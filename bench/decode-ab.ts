// bench/decode-ab: decode speed of two builds of Roost in one process, step
// for step. Each build is a checkout with its addon and TypeScript built
// (build/Release/roost.node, dist/); both load the same random
// GPT-2-124M-shaped checkpoints as bench/decode.ts (bench/tmp of this
// checkout), and each timed decode step of build A is paired with one of build
// B right after (the order alternates), so a noisy machine slows both alike.
// Reports per batch and dtype the median and fastest ms/step of each, the
// median of the per-pair ratios B/A, the same for the process CPU time of a
// step (with --threads 1 the one compute thread's time: what time-slicing by
// other processes does not inflate), and whether both sampled the same greedy
// tokens.
//   node dist/bench/decode-ab.js --a /path/to/old-checkout [--b /path/to/new-checkout]
//        [--dtypes F32,F16,Q8_0] [--batches 1,32] [--decode-tokens 64] [--threads 0] [--out FILE]
// Results: bench/results/decode-ab.json (and a table on stdout).
process.env.UV_THREADPOOL_SIZE ??= '2';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { NativeEngine, NativeEngineClass } from '../src/native';
import { q8GgufOf } from './lib/gguf';
import { median } from './load/stats';
import { randomTokens as tokensIn, writeRandomGpt2 } from './lib/random-gpt2';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string', default: root },
    threads: { type: 'string', default: '0' },
    'decode-tokens': { type: 'string', default: '64' },
    dtypes: { type: 'string', default: 'F32,F16' },
    batches: { type: 'string', default: '1,32' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'decode-ab.json') },
  },
});
if (!values.a) throw new Error('--a CHECKOUT is required: a checkout of the build to compare, with build/ and dist/ built');
const threads = Number(values.threads);
const decodeTokens = Number(values['decode-tokens']);
const batches = values.batches!.split(',').map(Number);
const shape = { nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257, nPositions: 1024 };
const randomTokens = (n: number, seed: number) => tokensIn(n, seed, shape.vocabSize);

function engineClass(checkout: string): NativeEngineClass {
  const entry = path.join(path.resolve(checkout), 'dist', 'src', 'native', 'index.js');
  if (!fs.existsSync(entry)) throw new Error(`${entry} is missing: build that checkout (npm run build) first`);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return (require(entry) as { native(): { Engine: NativeEngineClass } }).native().Engine;
}

async function timed(engine: NativeEngine, reqs: Parameters<NativeEngine['step']>[0]) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const out = await engine.step(reqs);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  return { out, ms, cpuMs: (c.user + c.system) / 1e3 };
}

type Dtype = 'F32' | 'F16' | 'Q8_0';

// The checkpoint of a dtype: bench/decode.ts's folders, and for Q8_0 the GGUF file it
// quantizes from the F32 folder (written here the same way when missing).
function checkpoint(dtype: Dtype): string {
  const stored = dtype === 'Q8_0' ? 'F32' : dtype;
  const dir = path.join(root, 'bench', 'tmp', `gpt2-124m-${stored.toLowerCase()}`);
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    process.stderr.write(`writing random ${stored} checkpoint to ${dir} ...\n`);
    writeRandomGpt2(dir, { ...shape, dtype: stored });
  }
  if (dtype !== 'Q8_0') return dir;
  return q8GgufOf(dir);
}

async function benchDtype(dtype: Dtype, A: NativeEngineClass, B: NativeEngineClass) {
  const dir = checkpoint(dtype);
  const engines = [await A.load(dir, { threads }), await B.load(dir, { threads })];
  const rows = [];
  for (const batch of batches) {
    const seqs = engines.map((e) => Array.from({ length: batch }, () => e.createSequence({ temperature: 0 })));
    const outs = [];
    for (let k = 0; k < 2; k++) {  // a short prompt per sequence, then one warm-up step
      let out = await engines[k].step(seqs[k].map((seq, i) => ({ seq, tokens: randomTokens(16, 100 + i), sample: true })));
      out = await engines[k].step(out.map((r) => ({ seq: r.seq, tokens: [r.token!], sample: true })));
      outs.push(out);
    }
    const ms: number[][] = [[], []];
    const cpu: number[][] = [[], []];
    const tokens: number[][] = [[], []];
    for (let t = 0; t < decodeTokens; t++) {
      for (const k of t % 2 === 0 ? [0, 1] : [1, 0]) {
        const r = await timed(engines[k], outs[k].map((o) => ({ seq: o.seq, tokens: [o.token!], sample: true })));
        outs[k] = r.out;
        ms[k].push(r.ms);
        cpu[k].push(r.cpuMs);
        tokens[k].push(...r.out.map((o) => o.token!));
      }
    }
    const ratio = median(ms[1].map((b, t) => b / ms[0][t]));
    rows.push({
      batch,
      a: { msPerStepMedian: median(ms[0]), msPerStepMin: Math.min(...ms[0]) },
      b: { msPerStepMedian: median(ms[1]), msPerStepMin: Math.min(...ms[1]) },
      medianRatioBOverA: ratio,
      cpuMsPerStepMedian: { a: median(cpu[0]), b: median(cpu[1]) },
      medianCpuRatioBOverA: median(cpu[1].map((b, t) => b / cpu[0][t])),
      sameTokens: tokens[0].join() === tokens[1].join(),
    });
    for (let k = 0; k < 2; k++) for (const s of seqs[k]) engines[k].freeSequence(s);
  }
  return { dtype, threads: engines[1].info().threads, isa: engines[1].info().isa, decode: rows };
}

async function main() {
  const A = engineClass(values.a!), B = engineClass(values.b!);
  const results = [];
  for (const dtype of values.dtypes!.split(',') as Dtype[]) {
    if (!['F32', 'F16', 'Q8_0'].includes(dtype)) throw new Error(`--dtypes: unknown ${dtype} (F32, F16, Q8_0)`);
    const r = await benchDtype(dtype, A, B);
    results.push(r);
    for (const d of r.decode)
      console.log(`${dtype} batch ${String(d.batch).padStart(2)}: A ${d.a.msPerStepMedian.toFixed(2)} ms/step (min ${d.a.msPerStepMin.toFixed(2)}), ` +
        `B ${d.b.msPerStepMedian.toFixed(2)} (min ${d.b.msPerStepMin.toFixed(2)}), median B/A ${d.medianRatioBOverA.toFixed(3)}; ` +
        `CPU ms A ${d.cpuMsPerStepMedian.a.toFixed(2)} B ${d.cpuMsPerStepMedian.b.toFixed(2)}, median B/A ${d.medianCpuRatioBOverA.toFixed(3)}; ` +
        `same tokens: ${d.sameTokens ? 'yes' : 'no'}`);
  }
  const report = { date: new Date().toISOString(), a: path.resolve(values.a!), b: path.resolve(values.b!),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg() }, shape, decodeTokens, results };
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(values.out!, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${values.out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

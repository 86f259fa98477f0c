// bench/decode: prefill and decode throughput of a GPT-2-124M-shaped model
// (12 layers, 768 wide, 12 heads, vocab 50257, random weights written here),
// F32 and F16 weights, decode at batch 1, 8 and 32; Q8_0 (in --dtypes) loads the F32 weights
// quantized into a GGUF file (bench/lib/gguf.ts), the file llama.cpp then runs too. --arch llama instead runs a
// TinyLlama-1.1B-shaped Llama (22 layers, 2048 wide, 32 heads over 4 KV heads,
// 5632 inner, vocab 32000; bench/lib/random-llama.ts), F16 and BF16 by default.
//   npm run bench:decode [-- --threads 2 --decode-tokens 64 --dtypes F32,F16]
//   npm run bench:decode -- --arch llama [--dtypes F16,BF16] [--layers 2]  (--layers: fewer layers, a quick check)
// With --peer-llama-cpp DIR (a scratch folder where `npm install node-llama-cpp`
// ran; never a project dependency) llama.cpp runs the same weights (converted to
// GGUF by bench/lib/gguf.ts, gpt2 or llama architecture) through the same measurements, right after Roost,
// and both engines' greedy tokens on one prompt are compared.
// Results: bench/results/decode.json (decode-llama.json with --arch llama) and a table on stdout.
// With --arch llama and the peer, each dtype also gets issue 17's verdict from
// the one run: Roost's batch-1 decode within 10% of llama.cpp's (tok/s ratio
// >= 0.9) and Roost's batch 32 at least 4x its batch 1 (tok/s).
process.env.UV_THREADPOOL_SIZE ??= '2';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Engine, type NativeEngine } from '../src/native';
import { convertGpt2ToGguf, convertLlamaToGguf, q8GgufOf } from './lib/gguf';
import { median } from './load/stats';
import { randomTokens as tokensIn, writeRandomGpt2 } from './lib/random-gpt2';
import { TINYLLAMA, writeRandomLlama } from './lib/random-llama';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'gpt2' },
    threads: { type: 'string', default: '0' },
    'decode-tokens': { type: 'string', default: '64' },
    'prompt-tokens': { type: 'string', default: '512' },
    dtypes: { type: 'string' },
    batches: { type: 'string', default: '1,8,32' },
    'peer-llama-cpp': { type: 'string' },
    layers: { type: 'string' },
    out: { type: 'string' },
  },
});
const threads = Number(values.threads);
const decodeTokens = Number(values['decode-tokens']);
const promptTokens = Number(values['prompt-tokens']);
const batches = values.batches!.split(',').map(Number);
const arch = values.arch!;
if (arch !== 'gpt2' && arch !== 'llama') throw new Error(`--arch must be gpt2 or llama (got ${arch})`);
type Dtype = 'F32' | 'F16' | 'BF16' | 'Q8_0';
const dtypes = (values.dtypes ?? (arch === 'llama' ? 'F16,BF16' : 'F32,F16')).split(',') as Dtype[];
for (const d of dtypes) if (!['F32', 'F16', 'BF16', 'Q8_0'].includes(d)) throw new Error(`--dtypes: unknown ${d} (F32, F16, BF16, Q8_0)`);
if (arch === 'llama' && dtypes.includes('Q8_0')) throw new Error('--dtypes Q8_0 is measured for --arch gpt2 only (bench/lib/gguf.ts quantizes GPT-2)');
const outFile = values.out ?? path.join(root, 'bench', 'results', arch === 'llama' ? 'decode-llama.json' : 'decode.json');
const gpt2Shape = { nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257, nPositions: 1024 };
const layers = values.layers ? Number(values.layers) : undefined;
if (layers !== undefined && !(Number.isInteger(layers) && layers >= 1)) throw new Error(`--layers must be an integer >= 1 (got ${values.layers})`);
const llamaShape = { ...TINYLLAMA, nLayer: layers ?? TINYLLAMA.nLayer };
const shape = arch === 'llama' ? llamaShape : { ...gpt2Shape, nLayer: layers ?? gpt2Shape.nLayer };
// The reference of a batch-1 row: the machine's read bandwidth at the engine's thread
// count, measured by build/bench_bandwidth (bench/native/bandwidth.cpp) in this run,
// before and after the rows (the better of the two), over the bytes read per token. It
// drifts with the host by up to half (docs/peers.md), so a fixed figure misleads. It is
// a plain stream's, not a hard ceiling: the GEMV kernels have read up to 1.28x it.
function measureBandwidth(threads: number): number {
  const exe = path.join(root, 'build', 'bench_bandwidth');
  if (!fs.existsSync(exe)) throw new Error(`${exe} is missing: run npm run build (it builds the native benchmarks)`);
  const r = JSON.parse(execFileSync(exe, [String(threads)], { encoding: 'utf8' })) as { gbPerSecond: number[] };
  return r.gbPerSecond[threads - 1] * 1e9;
}
const randomTokens = (n: number, seed: number) => tokensIn(n, seed, shape.vocabSize);

// The checkpoint a dtype row loads: a safetensors folder, or for Q8_0 the GGUF file
// quantized from the F32 folder (both engines load that same file).
function checkpoint(dtype: Dtype): string {
  const stored = dtype === 'Q8_0' ? 'F32' : dtype;
  const name = `${arch === 'llama' ? 'tinyllama-1.1b' : 'gpt2-124m'}${layers !== undefined ? `-${layers}l` : ''}-${stored.toLowerCase()}`;
  const dir = path.join(root, 'bench', 'tmp', name);
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    process.stderr.write(`writing random ${stored} checkpoint to ${dir} ...\n`);
    if (arch === 'llama') writeRandomLlama(dir, llamaShape, stored);
    else if (stored === 'BF16') throw new Error('--arch gpt2 writes F32 or F16 weights');
    else writeRandomGpt2(dir, { ...gpt2Shape, nLayer: shape.nLayer, dtype: stored });
  }
  if (dtype !== 'Q8_0') return dir;
  return q8GgufOf(dir);
}

async function benchDtype(dtype: Dtype) {
  const dir = checkpoint(dtype);
  const engine = await Engine.load(dir, { threads });
  const weightBytes = engine.stats().weightBytes;

  // Prefill: one sequence, promptTokens tokens, best of 3.
  const prefillRuns: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    const seq = engine.createSequence({ temperature: 0 });
    const t0 = process.hrtime.bigint();
    await engine.step([{ seq, tokens: randomTokens(promptTokens, rep + 1), sample: true }]);
    prefillRuns.push(Number(process.hrtime.bigint() - t0) / 1e9);
    engine.freeSequence(seq);
  }
  const prefillTps = promptTokens / Math.min(...prefillRuns);

  const decode: Array<{ batch: number; tokensPerSecond: number; msPerStep: number; shareOfCeiling?: number }> = [];
  for (const batch of batches) {
    const seqs = Array.from({ length: batch }, () => engine.createSequence({ temperature: 0 }));
    // A short prompt per sequence, then timed decode steps with every sequence.
    let out = await engine.step(seqs.map((seq, i) => ({ seq, tokens: randomTokens(16, 100 + i), sample: true })));
    await engine.step(out.map((r) => ({ seq: r.seq, tokens: [r.token!], sample: true }))); // warm-up
    const stepTimes: number[] = [];
    for (let t = 0; t < decodeTokens; t++) {
      const t0 = process.hrtime.bigint();
      out = await engine.step(out.map((r) => ({ seq: r.seq, tokens: [r.token!], sample: true })));
      stepTimes.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const step = median(stepTimes);
    const row: (typeof decode)[number] = { batch, tokensPerSecond: batch / step, msPerStep: step * 1e3 };
    decode.push(row);
    for (const s of seqs) engine.freeSequence(s);
  }
  const threadsUsed = engine.info().threads;
  const greedy = values['peer-llama-cpp'] ? await greedyTokens(engine) : { tokens: [], top: [] };
  const result = { dtype, weightBytes, prefillTokensPerSecond: prefillTps, promptTokens, decode, isa: engine.info().isa, threads: threadsUsed };
  if (!values['peer-llama-cpp']) return result;
  const llamaCpp = runLlamaCpp(dir, threadsUsed);
  return { ...result, llamaCpp, sameGreedyTokens: greedy.tokens.join() === llamaCpp.greedy.join(),
    greedyFirstDifference: firstDifference(greedy, llamaCpp.greedy), verdict: verdict(decode, llamaCpp.decode) };
}

type DecodeRow = { batch: number; tokensPerSecond: number };
// Issue 17's must-show from one run's rows: batch 1 within 10% of llama.cpp
// (Roost tok/s / llama.cpp tok/s >= 0.9) and batch 32 >= 4x batch 1 (Roost's tok/s).
function verdict(roost: DecodeRow[], peer: DecodeRow[]) {
  const at = (rows: DecodeRow[], b: number) => rows.find((d) => d.batch === b)?.tokensPerSecond;
  const r1 = at(roost, 1), p1 = at(peer, 1), r32 = at(roost, 32);
  const batch1VsLlamaCpp = r1 && p1 ? r1 / p1 : undefined;
  const batch32OverBatch1 = r1 && r32 ? r32 / r1 : undefined;
  return {
    batch1VsLlamaCpp, batch1Met: batch1VsLlamaCpp !== undefined ? batch1VsLlamaCpp >= 0.9 : undefined,
    batch32OverBatch1, batch32Met: batch32OverBatch1 !== undefined ? batch32OverBatch1 >= 4 : undefined,
  };
}

const CHECK_PROMPT = randomTokens(8, 7);

// Roost's greedy tokens on the check prompt, with its two best log-probs at each.
async function greedyTokens(engine: NativeEngine): Promise<{ tokens: number[]; top: Array<Array<[number, number]>> }> {
  const seq = engine.createSequence({ temperature: 0, logprobs: 2 });
  const tokens: number[] = [], top: Array<Array<[number, number]>> = [];
  let r = await engine.step([{ seq, tokens: CHECK_PROMPT, sample: true }]);
  while (tokens.length < 16) {
    tokens.push(r[0].token!);
    top.push(r[0].top!);
    r = await engine.step([{ seq, tokens: [r[0].token!], sample: true }]);
  }
  engine.freeSequence(seq);
  return { tokens, top };
}

// Where two engines' greedy tokens first part, and by how much Roost preferred its
// token there (log p(Roost's) - log p(the peer's), null when the peer's token is not
// in Roost's best two): a margin of hundredths of a nat is a near tie that either
// engine's rounding may break its own way.
function firstDifference(roost: { tokens: number[]; top: Array<Array<[number, number]>> }, peer: number[]) {
  const i = roost.tokens.findIndex((t, k) => t !== peer[k]);
  if (i < 0) return undefined;
  const other = roost.top[i].find(([t]) => t === peer[i]);
  return { index: i, roost: roost.tokens[i], peer: peer[i], roostMarginNats: other ? roost.top[i][0][1] - other[1] : null };
}

// llama.cpp on the same checkpoint, in a child process (bench/llama-cpp-peer.ts).
function runLlamaCpp(dir: string, threads: number) {
  const gguf = dir.endsWith('.gguf') ? dir : dir + '.gguf';
  if (!fs.existsSync(gguf)) {
    process.stderr.write(`converting ${dir} to ${gguf} ...\n`);
    if (arch === 'llama') convertLlamaToGguf(dir, gguf);
    else convertGpt2ToGguf(dir, gguf);
  }
  const peer = path.resolve(values['peer-llama-cpp']!);
  const moduleDir = fs.existsSync(path.join(peer, 'node_modules', 'node-llama-cpp')) ? path.join(peer, 'node_modules', 'node-llama-cpp') : peer;
  const out = execFileSync(process.execPath, [path.join(__dirname, 'llama-cpp-peer.js'), '--module', moduleDir, '--gguf', gguf,
    '--threads', String(threads), '--prompt-tokens', String(promptTokens), '--decode-tokens', String(decodeTokens),
    '--batches', batches.join(','), '--check-tokens', CHECK_PROMPT.join(','), '--vocab', String(shape.vocabSize)],
  { env: { ...process.env, UV_THREADPOOL_SIZE: '1' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').pop()!) as {
    prefillTokensPerSecond: number; decode: Array<{ batch: number; tokensPerSecond: number; msPerStep: number }>; greedy: number[];
  };
}

async function main() {
  // The engine's own default (threads 0) is every core this process may run on, as here.
  const engineThreads = threads || os.availableParallelism();
  const bandwidthBefore = measureBandwidth(engineThreads);
  const raw: Array<Awaited<ReturnType<typeof benchDtype>>> = [];
  for (const dtype of dtypes) raw.push(await benchDtype(dtype));
  const bandwidthAfter = measureBandwidth(engineThreads);
  const ceilingBytes = Math.max(bandwidthBefore, bandwidthAfter);
  console.log(`read bandwidth, ${engineThreads} threads (build/bench_bandwidth): ${(bandwidthBefore / 1e9).toFixed(1)} GB/s before the rows, ` +
    `${(bandwidthAfter / 1e9).toFixed(1)} after`);
  const results = [];
  for (const r of raw) {
    if (r.threads !== engineThreads) throw new Error(`the engine ran ${r.threads} threads; the bandwidth was measured with ${engineThreads}`);
    for (const d of r.decode) if (d.batch === 1) d.shareOfCeiling = (1 / (d.msPerStep / 1e3)) / (ceilingBytes / r.weightBytes);
    results.push(r);
    console.log(`${r.dtype}: weights ${(r.weightBytes / 1e6).toFixed(0)} MB, prefill ${r.prefillTokensPerSecond.toFixed(0)} tok/s (${r.promptTokens}-token prompt)`);
    for (const d of r.decode)
      console.log(`  decode batch ${String(d.batch).padStart(2)}: ${d.tokensPerSecond.toFixed(1)} tok/s, ${d.msPerStep.toFixed(2)} ms/step` +
        (d.shareOfCeiling ? `, ${(d.shareOfCeiling * 100).toFixed(0)}% of the ${(ceilingBytes / r.weightBytes).toFixed(0)} tok/s the measured read bandwidth allows` : ''));
    if ('llamaCpp' in r) {
      const p = r.llamaCpp;
      console.log(`  llama.cpp, same run: prefill ${p.prefillTokensPerSecond.toFixed(0)} tok/s; ` +
        p.decode.map((d) => `batch ${d.batch} ${d.tokensPerSecond.toFixed(1)} tok/s`).join(', ') +
        `; same greedy tokens as Roost: ${r.sameGreedyTokens ? 'yes' : 'no'}` +
        (r.greedyFirstDifference ? ` (first at token ${r.greedyFirstDifference.index}: Roost's ${r.greedyFirstDifference.roost} over ` +
          `llama.cpp's ${r.greedyFirstDifference.peer} by ${r.greedyFirstDifference.roostMarginNats?.toFixed(4) ?? '> its second best'} nats)` : ''));
      const v = r.verdict, f = (x?: number) => (x === undefined ? 'n/a (batches 1 and 32 needed)' : `${x.toFixed(3)}x`);
      console.log(`  must-show: batch 1 Roost/llama.cpp ${f(v.batch1VsLlamaCpp)} (>= 0.9: ${v.batch1Met ? 'met' : 'NOT met'}); ` +
        `batch 32/batch 1 ${f(v.batch32OverBatch1)} (>= 4: ${v.batch32Met ? 'met' : 'NOT met'})`);
    }
  }
  const report = { date: new Date().toISOString(), machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model }, arch, shape, decodeTokens,
    bandwidthGBs: { threads: engineThreads, before: bandwidthBefore / 1e9, after: bandwidthAfter / 1e9 }, results };
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${outFile}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

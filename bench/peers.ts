// bench/peers: Roost, llama.cpp and ONNX Runtime on the same random GPT-2-124M-shaped
// weights, in one run (docs/peers.md): 512-token prefill (last logits), decode at
// batch 1, 8 and 32, F32, F16 and Q8_0 (both engines on one GGUF file quantized from the
// same F32 weights); greedy tokens of one prompt compared across engines.
//   npm run build && node dist/bench/peers.js --peer-llama-cpp DIR --peer-onnxruntime DIR \
//     [--threads 2 --decode-tokens 64 --rounds 1 --python /usr/bin/python3 --out bench/results/peers.json]
// --rounds N measures every engine's rows N times, the engines taking turns (Roost and
// llama.cpp per dtype, then ONNX Runtime, then again), and reports the median of each
// figure: this host's read bandwidth drifts by a third within minutes, and one pass
// measures each engine at a different moment of that drift.
// DIR: a scratch folder where `npm install node-llama-cpp` (and, with
// ONNXRUNTIME_NODE_INSTALL=skip, `npm install onnxruntime-node`) ran; neither peer is a
// dependency of this project. Roost and llama.cpp run through bench/decode (one child
// process, the same measurements); ONNX Runtime through bench/peers-onnxruntime on the
// graph tools/reference/export_onnx_gpt2.py exports (no F16 row: its CPU provider has no
// F16 matrix product) and, as its 8-bit row (INT8), that graph rewritten by
// tools/reference/quantize_onnx_int8.py into its dynamic quantization (MatMulInteger:
// uint8 activations with one scale per call, int8 weights with one per column; not
// Q8_0's blocks of 32, which it has no kernel for; needs python3-onnx, else the row is
// skipped with a note). Ratios at equal precision put that row beside Roost's Q8_0.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { randomTokens, writeRandomGpt2 } from './lib/random-gpt2';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    'decode-tokens': { type: 'string', default: '64' },
    rounds: { type: 'string', default: '1' },
    'prompt-tokens': { type: 'string', default: '512' },
    batches: { type: 'string', default: '1,8,32' },
    'peer-llama-cpp': { type: 'string' },
    'peer-onnxruntime': { type: 'string' },
    python: { type: 'string', default: '/usr/bin/python3' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'peers.json') },
  },
});
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer (got ${values.rounds})`);
const shape = { nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257, nPositions: 1024 };
// bench/decode's check prompt, so every engine's greedy tokens continue the same tokens.
const CHECK_PROMPT = randomTokens(8, 7, shape.vocabSize);
const common = ['--threads', values.threads!, '--prompt-tokens', values['prompt-tokens']!,
  '--decode-tokens', values['decode-tokens']!, '--batches', values.batches!];

interface Throughput {
  prefillTokensPerSecond: number;
  decode: Array<{ batch: number; tokensPerSecond: number; msPerStep: number }>;
  greedy?: number[];
}
interface Row extends Throughput { engine: string; weights: string; note?: string }
// Rows compared at equal precision: ONNX Runtime's INT8 counts as 8-bit beside Q8_0.
const precision = (weights: string) => (weights === 'INT8' ? 'Q8_0' : weights);

function checkpoint(dtype: 'F32' | 'F16'): string {
  const dir = path.join(root, 'bench', 'tmp', `gpt2-124m-${dtype.toLowerCase()}`);
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    process.stderr.write(`writing random ${dtype} checkpoint to ${dir} ...\n`);
    writeRandomGpt2(dir, { ...shape, dtype });
  }
  return dir;
}

function moduleIn(scratch: string, name: string): string {
  const inside = path.join(path.resolve(scratch), 'node_modules', name);
  return fs.existsSync(inside) ? inside : path.resolve(scratch);
}

// Runs a node script of dist/bench with the engines' threads alone on the cores
// (UV_THREADPOOL_SIZE=1, docs/peers.md) and returns its last stdout line as JSON.
function runJson(script: string, args: string[]): any {
  const out = execFileSync(process.execPath, [path.join(__dirname, script), ...args],
    { env: { ...process.env, UV_THREADPOOL_SIZE: '1' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  return JSON.parse(out.trim().split('\n').pop()!);
}

// Roost and llama.cpp at F32, F16 and Q8_0, through bench/decode.
// Returns, per dtype, the batch-1 tokens/s the read bandwidth bench/decode measured in
// that run allows (before and after its rows, the better) and each engine's share of it.
function roostAndLlamaCpp(rows: Row[], greedy: Record<string, number[]>, agree: Record<string, boolean>,
  firstDifference: Record<string, unknown>) {
  const tmp = path.join(root, 'bench', 'tmp', 'peers-decode.json');
  for (const dtype of ['F32', 'F16'] as const) checkpoint(dtype);
  execFileSync(process.execPath, [path.join(__dirname, 'decode.js'), '--dtypes', 'F32,F16,Q8_0', '--out', tmp, ...common,
    ...(values['peer-llama-cpp'] ? ['--peer-llama-cpp', values['peer-llama-cpp']] : [])],
  { env: { ...process.env, UV_THREADPOOL_SIZE: '2' }, stdio: ['ignore', 'inherit', 'inherit'] });
  const report = JSON.parse(fs.readFileSync(tmp, 'utf8'));
  const bw = report.bandwidthGBs as { threads: number; before: number; after: number };
  const ceilings: Record<string, { weightBytes: number; tokensPerSecond: number; share: Record<string, number> }> = {};
  const b1 = (d: Throughput['decode']) => d.find((x) => x.batch === 1)?.tokensPerSecond;
  for (const r of report.results) {
    rows.push({ engine: 'Roost', weights: r.dtype, prefillTokensPerSecond: r.prefillTokensPerSecond, decode: r.decode });
    const ceiling = Math.max(bw.before, bw.after) * 1e9 / r.weightBytes;
    const share: Record<string, number> = {};
    for (const [engine, d] of [['Roost', r.decode], ['llama.cpp', r.llamaCpp?.decode]] as const) {
      const tps = d && b1(d);
      if (tps) share[engine] = tps / ceiling;
    }
    ceilings[r.dtype] = { weightBytes: r.weightBytes, tokensPerSecond: ceiling, share };
    if (r.llamaCpp) {
      rows.push({ ...r.llamaCpp, engine: 'llama.cpp', weights: r.dtype });
      greedy[`llama.cpp ${r.dtype}`] = r.llamaCpp.greedy;
      // bench/decode compares Roost's greedy tokens with llama.cpp's; it does not return Roost's own.
      agree[`Roost ${r.dtype} = llama.cpp ${r.dtype}`] = r.sameGreedyTokens;
      if (r.greedyFirstDifference) firstDifference[`Roost ${r.dtype} vs llama.cpp ${r.dtype}`] = r.greedyFirstDifference;
    }
  }
  return { bandwidthGBs: bw, batch1Ceiling: ceilings };
}

function onnxRuntime(rows: Row[], greedy: Record<string, number[]>) {
  const dir = checkpoint('F32');
  const onnx = dir + '.onnx';
  if (!fs.existsSync(onnx)) {
    process.stderr.write(`exporting ${dir} to ${onnx} ...\n`);
    execFileSync(values.python!, [path.join(root, 'tools', 'reference', 'export_onnx_gpt2.py'), dir, onnx],
      { cwd: path.join(root, 'tools', 'reference'), stdio: ['ignore', 'inherit', 'inherit'] });
  }
  const r = runJson('peers-onnxruntime.js', ['--module', moduleIn(values['peer-onnxruntime']!, 'onnxruntime-node'),
    '--onnx', onnx, '--layers', String(shape.nLayer), '--heads', String(shape.nHead),
    '--head-dim', String(shape.nEmbd / shape.nHead), '--vocab', String(shape.vocabSize),
    '--check-tokens', CHECK_PROMPT.join(','), ...common]);
  rows.push({ ...r, engine: 'ONNX Runtime', weights: 'F32' });
  greedy['ONNX Runtime F32'] = r.greedy;

  const int8 = dir + '-int8.onnx';
  try {
    if (!fs.existsSync(int8)) {
      process.stderr.write(`quantizing ${onnx} to ${int8} ...\n`);
      execFileSync(values.python!, [path.join(root, 'tools', 'reference', 'quantize_onnx_int8.py'), onnx, int8],
        { stdio: ['ignore', 'inherit', 'inherit'] });
    }
  } catch (e) {
    process.stderr.write(`ONNX Runtime INT8 row skipped: ${(e as Error).message.split('\n')[0]}\n`);
    return;
  }
  const q = runJson('peers-onnxruntime.js', ['--module', moduleIn(values['peer-onnxruntime']!, 'onnxruntime-node'),
    '--onnx', int8, '--layers', String(shape.nLayer), '--heads', String(shape.nHead),
    '--head-dim', String(shape.nEmbd / shape.nHead), '--vocab', String(shape.vocabSize),
    '--check-tokens', CHECK_PROMPT.join(','), ...common]);
  rows.push({ ...q, engine: 'ONNX Runtime', weights: 'INT8',
    note: 'dynamic quantization (MatMulInteger): uint8 activations, one scale per call; int8 weights, one scale per column' });
  greedy['ONNX Runtime INT8'] = q.greedy;
}

// Each engine's row, every figure the median over the rounds (rounds list the rows alike).
function medianRows(perRound: Row[][]): Row[] {
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  return perRound[0].map((first, i) => {
    const same = perRound.map((rows) => rows[i]);
    return {
      ...first,
      prefillTokensPerSecond: median(same.map((r) => r.prefillTokensPerSecond)),
      decode: first.decode.map((d, j) => ({
        batch: d.batch,
        tokensPerSecond: median(same.map((r) => r.decode[j].tokensPerSecond)),
        msPerStep: median(same.map((r) => r.decode[j].msPerStep)),
      })),
    };
  });
}

function table(rows: Row[]): string {
  const batches = values.batches!.split(',').map(Number);
  const lines = [`| engine | weights | prefill ${values['prompt-tokens']} tok/s | ${batches.map((b) => `decode b${b}`).join(' | ')} |`,
    `| --- | --- | --- | ${batches.map(() => '---').join(' | ')} |`];
  for (const r of rows)
    lines.push(`| ${r.engine} | ${r.weights} | ${r.prefillTokensPerSecond.toFixed(0)} | ` +
      batches.map((b) => r.decode.find((d) => d.batch === b)?.tokensPerSecond.toFixed(1) ?? '-').join(' | ') + ' |');
  return lines.join('\n');
}

// Roost over the faster peer at equal precision, per column.
function ratios(rows: Row[]) {
  const out: Record<string, Record<string, number>> = {};
  for (const roost of rows.filter((r) => r.engine === 'Roost')) {
    const peers = rows.filter((r) => r.engine !== 'Roost' && precision(r.weights) === roost.weights);
    if (!peers.length) continue;
    const col: Record<string, number> = { prefill: roost.prefillTokensPerSecond / Math.max(...peers.map((p) => p.prefillTokensPerSecond)) };
    for (const d of roost.decode) {
      const best = Math.max(...peers.map((p) => p.decode.find((x) => x.batch === d.batch)?.tokensPerSecond ?? 0));
      if (best > 0) col[`b${d.batch}`] = d.tokensPerSecond / best;
    }
    out[roost.weights] = col;
  }
  return out;
}

// Roost's Q8_0 decode over its own F16, per batch (issue: at least 1.7x at batch 1).
function q8OverF16(rows: Row[]): Record<string, number> {
  const [q8, f16] = ['Q8_0', 'F16'].map((w) => rows.find((r) => r.engine === 'Roost' && r.weights === w));
  const out: Record<string, number> = {};
  for (const d of q8?.decode ?? []) {
    const base = f16?.decode.find((x) => x.batch === d.batch);
    if (base) out[`b${d.batch}`] = d.tokensPerSecond / base.tokensPerSecond;
  }
  return out;
}

async function main() {
  const load0 = os.loadavg()[0];
  const greedy: Record<string, number[]> = {};
  const agree: Record<string, boolean> = {};
  const firstDifference: Record<string, unknown> = {};
  const perRound: Row[][] = [];
  const bandwidthPerRound: Array<ReturnType<typeof roostAndLlamaCpp>> = [];
  for (let round = 0; round < rounds; round++) {
    const rows: Row[] = [];
    bandwidthPerRound.push(roostAndLlamaCpp(rows, greedy, agree, firstDifference));
    if (values['peer-onnxruntime']) onnxRuntime(rows, greedy);
    perRound.push(rows);
  }
  const rows = medianRows(perRound);
  // The top-level bandwidth and batch-1 shares are the last round's (perRound has each).
  const bandwidth = bandwidthPerRound[bandwidthPerRound.length - 1];
  if (greedy['ONNX Runtime F32'] && greedy['llama.cpp F32'])
    agree['ONNX Runtime F32 = llama.cpp F32'] = greedy['ONNX Runtime F32'].join() === greedy['llama.cpp F32'].join();
  // Q8_0 against F32: random weights at std 0.02 leave tiny argmax margins, so the
  // sequences part after a few tokens; how many lead alike is the figure.
  let q8Leading: number | undefined;
  if (greedy['llama.cpp Q8_0'] && greedy['llama.cpp F32']) {
    const [q, f] = [greedy['llama.cpp Q8_0'], greedy['llama.cpp F32']];
    q8Leading = 0;
    while (q8Leading < q.length && q[q8Leading] === f[q8Leading]) q8Leading++;
  }
  // The same for ONNX Runtime's INT8 against its F32.
  let ortInt8Leading: number | undefined;
  if (greedy['ONNX Runtime INT8'] && greedy['ONNX Runtime F32']) {
    const [q, f] = [greedy['ONNX Runtime INT8'], greedy['ONNX Runtime F32']];
    ortInt8Leading = 0;
    while (ortInt8Leading < q.length && q[ortInt8Leading] === f[ortInt8Leading]) ortInt8Leading++;
  }
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadAverageBefore: load0, loadAverageAfter: os.loadavg()[0] },
    shape, threads: Number(values.threads), promptTokens: Number(values['prompt-tokens']), decodeTokens: Number(values['decode-tokens']),
    note: load0 > 1.5 ? `machine under load (load average ${load0.toFixed(1)}): indicative only` : 'idle machine',
    rounds: perRound.length,
    checkPrompt: CHECK_PROMPT, rows: rows.map(({ greedy: _g, ...r }) => r), greedy, greedyAgreement: agree, greedyFirstDifference: firstDifference,
    llamaCppQ8LeadingTokensEqualToF32: q8Leading,
    onnxRuntimeInt8LeadingTokensEqualToF32: ortInt8Leading,
    roostOverFasterPeer: ratios(rows),
    roostQ8_0OverOwnF16: q8OverF16(rows),
    ...bandwidth,
    // Every round as measured (rows, and the read bandwidth before and after its Roost/llama.cpp rows).
    perRound: perRound.map((rs, i) => ({ rows: rs.map(({ greedy: _g, ...r }) => r), ...bandwidthPerRound[i] })),
  };
  console.log(table(rows));
  console.log('Roost / faster peer:', JSON.stringify(report.roostOverFasterPeer));
  console.log(`read bandwidth${rounds > 1 ? ' in the last round' : ''} (${bandwidth.bandwidthGBs.threads} threads): ${bandwidth.bandwidthGBs.before.toFixed(1)} GB/s before, ` +
    `${bandwidth.bandwidthGBs.after.toFixed(1)} after; batch-1 share of what it allows:`, JSON.stringify(bandwidth.batch1Ceiling));
  console.log('greedy tokens agree:', JSON.stringify(agree));
  if (Object.keys(firstDifference).length) console.log('where they part:', JSON.stringify(firstDifference));
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(values.out!, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${values.out} (load average ${load0.toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

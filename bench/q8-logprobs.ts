// Q8_0 log-probs of a random GPT-2 (issue 26, "Q8_0 quality"): the same weights as an F32
// safetensors checkpoint, an F32 GGUF and a Q8_0 GGUF (bench/lib/gguf.ts, llama.cpp's
// quantize_row_q8_0 rule), scored on one token sequence by Roost (`roost score`) and by
// llama.cpp (bench/llama-cpp-logprobs, node-llama-cpp from a scratch install). Reports
// the largest |difference| in log-prob (nats) over the scored tokens between each pair.
//   npm run build && node dist/bench/q8-logprobs.js --peer-llama-cpp /tmp/q8-peers \
//     [--out bench/results/q8-logprobs.json]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { convertGpt2ToGguf } from './lib/gguf';
import { randomTokens, writeRandomGpt2 } from './lib/random-gpt2';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    'peer-llama-cpp': { type: 'string' },
    threads: { type: 'string', default: '2' },
    tokens: { type: 'string', default: '256' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'q8-logprobs.json') },
  },
});
// Small enough to score in seconds, every K a multiple of 32. std 0.1 rather than
// GPT-2's 0.02, so that the next-token distributions are far from uniform and a
// log-prob difference means something.
const shape = { nLayer: 4, nEmbd: 256, nHead: 4, vocabSize: 2048, nPositions: 512, std: 0.1, seed: 2026 };
const tokens = randomTokens(Number(values.tokens), 11, shape.vocabSize);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-q8-logprobs-'));
const ckpt = path.join(dir, 'gpt2');
writeRandomGpt2(ckpt, { ...shape, dtype: 'F32' });
const f32Gguf = path.join(dir, 'gpt2-f32.gguf'), q8Gguf = path.join(dir, 'gpt2-q8_0.gguf');
convertGpt2ToGguf(ckpt, f32Gguf);
convertGpt2ToGguf(ckpt, q8Gguf, { quantize: 'q8_0' });

type Logprobs = Array<number | null>;
function roost(model: string, ...extra: string[]): Logprobs {
  const out = execFileSync(process.execPath, [path.join(root, 'bin', 'roost.js'), 'score', '--model', model, '--tokens', tokens.join(','),
    '--device', 'cpu', '--threads', values.threads!, ...extra], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(out).logprobs;
}
function llamaCppModule(): string {
  const scratch = path.resolve(values['peer-llama-cpp']!);
  return fs.existsSync(path.join(scratch, 'node_modules', 'node-llama-cpp')) ? path.join(scratch, 'node_modules', 'node-llama-cpp') : scratch;
}
function llamaCpp(gguf: string): Logprobs {
  const mod = llamaCppModule();
  const out = execFileSync(process.execPath, [path.join(__dirname, 'llama-cpp-logprobs.js'), '--module', mod, '--gguf', gguf,
    '--tokens', tokens.join(','), '--threads', values.threads!], { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, UV_THREADPOOL_SIZE: '1' } });
  return JSON.parse(out.trim().split('\n').pop()!).logprobs;
}
function maxDiff(a: Logprobs, b: Logprobs): number {
  let m = 0;
  for (let i = 1; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
function meanDiff(a: Logprobs, b: Logprobs): number {
  let s = 0;
  for (let i = 1; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / (a.length - 1);
}
function meanAbs(a: Logprobs): number {
  let s = 0;
  for (let i = 1; i < a.length; i++) s += Math.abs(a[i]!);
  return s / (a.length - 1);
}

const runs: Record<string, Logprobs> = {
  'roost F32 (safetensors)': roost(ckpt),
  'roost F32 (GGUF)': roost(f32Gguf),
  'roost --quantize q8_0 (safetensors)': roost(ckpt, '--quantize', 'q8_0'),
  'roost Q8_0 (GGUF)': roost(q8Gguf),
};
if (values['peer-llama-cpp']) {
  runs['llama.cpp F32 (GGUF)'] = llamaCpp(f32Gguf);
  runs['llama.cpp Q8_0 (GGUF)'] = llamaCpp(q8Gguf);
}
const pairs: Array<[string, string]> = [
  ['roost F32 (GGUF)', 'roost F32 (safetensors)'],
  ['roost Q8_0 (GGUF)', 'roost --quantize q8_0 (safetensors)'],
  ['roost Q8_0 (GGUF)', 'roost F32 (safetensors)'],
  ['llama.cpp F32 (GGUF)', 'roost F32 (GGUF)'],
  ['llama.cpp Q8_0 (GGUF)', 'roost Q8_0 (GGUF)'],
  ['llama.cpp Q8_0 (GGUF)', 'llama.cpp F32 (GGUF)'],
];
// The documented tolerances (docs/models.md, "Q8_0 quality"): the same file through both
// readers and a Q8_0 GGUF against --quantize q8_0 exactly; Roost's Q8_0 against llama.cpp's
// within 0.1 nats (max) and 0.03 (mean), below Q8_0's own error against F32 on these weights.
const TOLERANCE: Record<string, { max: number; mean: number }> = {
  'roost F32 (GGUF)|roost F32 (safetensors)': { max: 0, mean: 0 },
  'roost Q8_0 (GGUF)|roost --quantize q8_0 (safetensors)': { max: 0, mean: 0 },
  'llama.cpp Q8_0 (GGUF)|roost Q8_0 (GGUF)': { max: 0.1, mean: 0.03 },
};
const comparisons = pairs.filter(([a, b]) => runs[a] && runs[b]).map(([a, b]) => {
  const c = { a, b, max_abs_dlogprob: maxDiff(runs[a], runs[b]), mean_abs_dlogprob: meanDiff(runs[a], runs[b]) };
  const tol = TOLERANCE[`${a}|${b}`];
  return tol ? { ...c, tolerance: tol, within_tolerance: c.max_abs_dlogprob <= tol.max && c.mean_abs_dlogprob <= tol.mean } : c;
});
for (const c of comparisons) {
  process.stderr.write(`${c.a} vs ${c.b}: max |dlogprob| ${c.max_abs_dlogprob.toExponential(3)}, mean ${c.mean_abs_dlogprob.toExponential(3)} nats\n`);
}
const out = {
  what: 'largest |log p difference| (nats) over the scored tokens of one random sequence, random GPT-2 weights (bench/lib/random-gpt2)',
  shape,
  scored_tokens: tokens.length - 1,
  mean_abs_logprob_roost_f32: meanAbs(runs['roost F32 (safetensors)']),
  threads: Number(values.threads),
  peer: values['peer-llama-cpp'] ? `node-llama-cpp ${JSON.parse(fs.readFileSync(path.join(llamaCppModule(), 'package.json'), 'utf8')).version}` : null,
  date: new Date().toISOString(),
  comparisons,
};
fs.mkdirSync(path.dirname(values.out!), { recursive: true });
fs.writeFileSync(values.out!, JSON.stringify(out, null, 2) + '\n');
process.stderr.write(`wrote ${values.out}\n`);
fs.rmSync(dir, { recursive: true, force: true });
if (comparisons.some((c) => 'within_tolerance' in c && !c.within_tolerance)) {
  process.stderr.write('a comparison is outside its documented tolerance\n');
  process.exitCode = 1;
}

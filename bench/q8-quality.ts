// Q8_0 quality of the shipped models (issue 26, "Q8_0 quality"): bits per byte of
// every model under models/ on the held-out text with `roost eval`, once with the
// weights as shipped (F16 in the file, widened to float in the kernels) and once with
// --quantize q8_0 (every weight matrix as Q8_0 blocks, activations quantized per block
// of 32 in the dot product: docs/models.md, "8-bit weights"). Same windows both times
// (the default context of each model, as the models/README.md table). The figure
// asked for: |bpb(q8_0) - bpb(as shipped)| / bpb(as shipped) below 1%. The
// encoder-decoder (t5), which `roost eval` refuses, is scored in its causal mode
// (docs/t5.md): the card's 68 windows of 192 bytes from Rev19:1 on, each as input
// "[CLM]" + its first 96 bytes and target its last 96, bits per target byte (the
// closing </s> left out). The embedder (models/embedder) is not a language model
// and has no bits per byte.
//   npm run build && node dist/bench/q8-quality.js [--threads 2] [--out bench/results/q8-quality.json]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    file: { type: 'string', default: path.join(root, 'models', 'data', 'kjv-heldout.txt') },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'q8-quality.json') },
  },
});

interface Eval { bits_per_byte: number; window: number; stride: number; windows: number; tokens: number }

function evaluate(model: string, quantize: boolean): Eval {
  const args = [path.join(root, 'bin', 'roost.js'), 'eval', '--model', model, '--file', values.file!, '--device', 'cpu',
    '--threads', values.threads!, ...(quantize ? ['--quantize', 'q8_0'] : [])];
  return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 }));
}

// t5's causal-mode bits per byte over the held-out windows (above), one `roost score` each.
function evaluateSeq2seq(model: string, quantize: boolean): Eval {
  const text = fs.readFileSync(values.file!, 'utf8');
  const tail = Buffer.from(text.slice(text.indexOf('Rev19:1 ')), 'utf8');
  const W = 192, half = W / 2;
  let nats = 0, bytes = 0, windows = 0;
  for (let at = 0; at + W <= tail.length; at += W, windows++) {
    const input = '[CLM]' + tail.toString('utf8', at, at + half), target = tail.toString('utf8', at + half, at + W);
    const args = [path.join(root, 'bin', 'roost.js'), 'score', '--model', model, '--text', input, '--target', target, '--device', 'cpu',
      '--threads', values.threads!, ...(quantize ? ['--quantize', 'q8_0'] : [])];
    const r = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 })) as { logprobs: number[] };
    if (r.logprobs.length !== half + 1) throw new Error(`${model}: a ${half}-byte target scored as ${r.logprobs.length} tokens`);
    for (const lp of r.logprobs.slice(0, half)) nats -= lp;
    bytes += half;
  }
  return { bits_per_byte: nats / bytes / Math.LN2, window: W, stride: W, windows, tokens: bytes };
}

/** The dtypes of a safetensors file's tensors, e.g. "F16". */
function shippedDtype(file: string): string {
  const st = fs.readFileSync(file);
  const header = JSON.parse(st.toString('utf8', 8, 8 + Number(st.readBigUInt64LE(0)))) as Record<string, { dtype?: string }>;
  return [...new Set(Object.values(header).flatMap((t) => (t.dtype ? [t.dtype] : [])))].sort().join('+');
}

const config = (m: string) => JSON.parse(fs.readFileSync(path.join(root, 'models', m, 'config.json'), 'utf8')) as { model_type?: string };
const models = fs.readdirSync(path.join(root, 'models')).sort()
  .filter((m) => fs.existsSync(path.join(root, 'models', m, 'config.json')) && fs.existsSync(path.join(root, 'models', m, 'model.safetensors')))
  .filter((m) => config(m).model_type !== undefined);  // language models (not the embedder)
const rows = models.map((name) => {
  const dir = path.join(root, 'models', name);
  const dtype = shippedDtype(path.join(dir, 'model.safetensors'));
  const score = config(name).model_type === 't5' ? evaluateSeq2seq : evaluate;
  const asShipped = score(dir, false);
  const q8 = score(dir, true);
  if (q8.window !== asShipped.window || q8.stride !== asShipped.stride || q8.windows !== asShipped.windows || q8.tokens !== asShipped.tokens)
    throw new Error(`${name}: the two runs scored different windows`);
  const relative = (q8.bits_per_byte - asShipped.bits_per_byte) / asShipped.bits_per_byte;
  const row = { model: name, shipped_dtype: dtype, window: q8.window, stride: q8.stride, windows: q8.windows,
    bits_per_byte: asShipped.bits_per_byte, bits_per_byte_q8_0: q8.bits_per_byte, relative_change: relative, within_1_percent: Math.abs(relative) < 0.01 };
  process.stderr.write(`${name}: ${asShipped.bits_per_byte.toFixed(5)} -> ${q8.bits_per_byte.toFixed(5)} bits per byte (${(100 * relative).toFixed(3)}%)\n`);
  return row;
});
const out = {
  what: 'bits per byte on the held-out text, roost eval (t5: roost score in causal mode) with the shipped weights and with --quantize q8_0 (same windows)',
  file: path.relative(root, values.file!),
  command: `node bin/roost.js eval --model models/NAME --file ${path.relative(root, values.file!)} --device cpu --threads ${values.threads} [--quantize q8_0]`,
  date: new Date().toISOString(),
  rows,
  all_within_1_percent: rows.every((r) => r.within_1_percent),
};
fs.mkdirSync(path.dirname(values.out!), { recursive: true });
fs.writeFileSync(values.out!, JSON.stringify(out, null, 2) + '\n');
process.stderr.write(`wrote ${values.out}\n`);

// Q8_0 quality of the shipped models (issue 26, "Q8_0 quality"): bits per byte of
// every model under models/ on the held-out text with `roost eval`, once with the
// weights as shipped (F16 in the file, widened to float in the kernels) and once with
// --quantize q8_0 (every weight matrix as Q8_0 blocks, activations quantized per block
// of 32 in the dot product: docs/models.md, "8-bit weights"). Same windows both times
// (the default context of each model, as the models/README.md table). The figure
// asked for: |bpb(q8_0) - bpb(as shipped)| / bpb(as shipped) below 1%.
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

/** The dtypes of a safetensors file's tensors, e.g. "F16". */
function shippedDtype(file: string): string {
  const st = fs.readFileSync(file);
  const header = JSON.parse(st.toString('utf8', 8, 8 + Number(st.readBigUInt64LE(0)))) as Record<string, { dtype?: string }>;
  return [...new Set(Object.values(header).flatMap((t) => (t.dtype ? [t.dtype] : [])))].sort().join('+');
}

const models = fs.readdirSync(path.join(root, 'models')).sort()
  .filter((m) => fs.existsSync(path.join(root, 'models', m, 'config.json')) && fs.existsSync(path.join(root, 'models', m, 'model.safetensors')));
const rows = models.map((name) => {
  const dir = path.join(root, 'models', name);
  const dtype = shippedDtype(path.join(dir, 'model.safetensors'));
  const asShipped = evaluate(dir, false);
  const q8 = evaluate(dir, true);
  if (q8.window !== asShipped.window || q8.stride !== asShipped.stride || q8.windows !== asShipped.windows || q8.tokens !== asShipped.tokens)
    throw new Error(`${name}: the two runs scored different windows`);
  const relative = (q8.bits_per_byte - asShipped.bits_per_byte) / asShipped.bits_per_byte;
  const row = { model: name, shipped_dtype: dtype, window: q8.window, stride: q8.stride, windows: q8.windows,
    bits_per_byte: asShipped.bits_per_byte, bits_per_byte_q8_0: q8.bits_per_byte, relative_change: relative, within_1_percent: Math.abs(relative) < 0.01 };
  process.stderr.write(`${name}: ${asShipped.bits_per_byte.toFixed(5)} -> ${q8.bits_per_byte.toFixed(5)} bits per byte (${(100 * relative).toFixed(3)}%)\n`);
  return row;
});
const out = {
  what: 'bits per byte on the held-out text, roost eval with the shipped weights and with --quantize q8_0 (same windows)',
  file: path.relative(root, values.file!),
  command: `node bin/roost.js eval --model models/NAME --file ${path.relative(root, values.file!)} --device cpu --threads ${values.threads} [--quantize q8_0]`,
  date: new Date().toISOString(),
  rows,
  all_within_1_percent: rows.every((r) => r.within_1_percent),
};
fs.mkdirSync(path.dirname(values.out!), { recursive: true });
fs.writeFileSync(values.out!, JSON.stringify(out, null, 2) + '\n');
process.stderr.write(`wrote ${values.out}\n`);

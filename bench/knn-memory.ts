// bench/knn-memory: held-out bits per byte of the default model with kNN
// memory (TRIME / kNN-LM, docs/retrieval.md "kNN memory"), all through
// `roost eval` on one thread: without memory; external memory of the training
// text at k = 8, 16, 32 and lambda = 0.1, 0.25 (one search serves the grid);
// local memory alone; with --both, external + local at the best external
// setting (a second search over the store).
//   node dist/bench/knn-memory.js --datastore DIR [--file models/data/revelation-heldout.txt] [--out FILE]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    datastore: { type: 'string' },
    file: { type: 'string', default: path.join('models', 'data', 'revelation-heldout.txt') },
    k: { type: 'string', default: '8,16,32' },
    lambda: { type: 'string', default: '0.1,0.25' },
    out: { type: 'string' },
    both: { type: 'boolean', default: false },
  },
});
if (!values.datastore) throw new Error('--datastore DIR (built with `roost datastore build --knn`) is required');

type Line = Record<string, any>;
function roostEval(...extra: string[]): { command: string; lines: Line[]; seconds: number } {
  const args = ['bin/roost.js', 'eval', '--model', 'default', '--file', values.file!, '--threads', '1', ...extra];
  const t = Date.now();
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`roost ${args.slice(1).join(' ')} failed: ${r.stderr}`);
  process.stderr.write(`${args.slice(1).join(' ')}: ${((Date.now() - t) / 1000).toFixed(0)} s\n`);
  return { command: `node ${args.join(' ')}`, lines: r.stdout.trim().split('\n').map((l) => JSON.parse(l)), seconds: (Date.now() - t) / 1000 };
}

const plain = roostEval();
const grid = roostEval('--memory', values.datastore, '--memory-k', values.k!, '--memory-lambda', values.lambda!);
const local = roostEval('--memory-local', '--memory-k', values.k!, '--memory-lambda', values.lambda!);
const best = grid.lines.reduce((a, b) => (b.bits_per_byte < a.bits_per_byte ? b : a));
const both = values.both ? roostEval('--memory', values.datastore, '--memory-k', String(best.memory.k), '--memory-lambda', String(best.memory.lambda), '--memory-local') : null;
const without = plain.lines[0]!.bits_per_byte as number;
const row = (l: Line) => ({ k: l.memory.k, lambda: l.memory.lambda, temperature: l.memory.temperature, local: l.memory.local, external: l.memory.datastore !== null, bits_per_byte: l.bits_per_byte, gain: without - l.bits_per_byte });
const bestLocal = local.lines.reduce((a, b) => (b.bits_per_byte < a.bits_per_byte ? b : a));
const out = {
  bench: 'knn-memory',
  model: 'default (models/DEFAULT)',
  file: values.file,
  bytes: plain.lines[0]!.bytes,
  window: plain.lines[0]!.window,
  stride: plain.lines[0]!.stride,
  datastore: { folder: values.datastore, entries: grid.lines[0]!.memory.entries, text: 'the training text (KJV Genesis..Hebrews, tools/train/data.py split)' },
  search: grid.lines[0]!.memory.search,
  without_memory: without,
  external: grid.lines.map(row),
  local_alone: local.lines.map(row),
  external_and_local: both ? both.lines.map(row) : 'not run (--both)',
  best_external: row(best),
  best_local_alone: row(bestLocal),
  commands: [plain, grid, local, ...(both ? [both] : [])].map((r) => ({ command: r.command, seconds: r.seconds })),
  cpu: os.cpus()[0]?.model,
  note: 'one thread; the 2-core machine was shared with other jobs (seconds are not speed figures)',
};
const file = values.out ?? path.join(root, 'bench', 'results', 'knn-memory.json');
fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
process.stdout.write(JSON.stringify({ without, best_external: out.best_external, best_local_alone: out.best_local_alone, external_and_local: out.external_and_local }) + '\n');

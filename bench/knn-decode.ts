// bench/knn-decode: decode tokens/s of the default model with kNN memory off
// and on (external memory of the training text, k = 16, lambda = 0.25; and
// external + local), at batch 1 and 16, one process, greedy. The memory search
// is exact (cpp/knn_memory.h: the GEMM kernels over 4.28M F16 keys), so its
// cost per step is one pass over the keys for the whole batch.
//   node dist/bench/knn-decode.js --datastore DIR [--threads 1] [--batches 1,16] [--decode-tokens 16] [--out FILE]
process.env.UV_THREADPOOL_SIZE ??= '2';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Engine, type MemoryParams } from '../src/native';
import { knnFolder } from '../src/retrieval/knn';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    datastore: { type: 'string' },
    threads: { type: 'string', default: '1' },
    batches: { type: 'string', default: '1,16' },
    'decode-tokens': { type: 'string', default: '16' },
    'prompt-tokens': { type: 'string', default: '256' },
    out: { type: 'string' },
  },
});
const model = path.join(root, 'models', fs.readFileSync(path.join(root, 'models', 'DEFAULT'), 'utf8').trim());
const knn = values.datastore ? knnFolder(values.datastore) : null;
if (!knn) throw new Error('--datastore DIR: a datastore built with `roost datastore build --knn` is required');

async function main(): Promise<void> {
  const threads = Number(values.threads);
  const engine = await Engine.load(model, { device: 'cpu', threads });
  const t0 = Date.now();
  const entries = engine.loadMemory('train', knn!);
  const loadSeconds = (Date.now() - t0) / 1000;
  const text = fs.readFileSync(path.join(root, 'models', 'data', 'revelation-heldout.txt'), 'utf8');
  const ids = loadTokenizer(model).encode(text);
  const P = Number(values['prompt-tokens']);
  const N = Number(values['decode-tokens']);
  const modes: Array<[string, MemoryParams | undefined]> = [
    ['off', undefined],
    ['external k=16', { datastore: 'train', k: 16, lambda: 0.25 }],
    ['external + local k=16', { datastore: 'train', k: 16, lambda: 0.25, local: true }],
  ];
  const rows: Array<Record<string, unknown>> = [];
  for (const B of values.batches!.split(',').map(Number)) {
    for (const [mode, memory] of modes) {
      const seqs = Array.from({ length: B }, () => engine.createSequence({ temperature: 0, ...(memory ? { memory } : {}) }));
      // Prefill (untimed): each sequence its own slice of the held-out text.
      let res = await engine.step(seqs.map((seq, b) => ({ seq, tokens: ids.slice((b * 97) % (ids.length - P), ((b * 97) % (ids.length - P)) + P), sample: true })));
      const start = process.hrtime.bigint();
      for (let s = 0; s < N; s++) res = await engine.step(res.map((r) => ({ seq: r.seq, tokens: [r.token!], sample: true })));
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      for (const seq of seqs) engine.freeSequence(seq);
      const row = { batch: B, memory: mode, decode_steps: N, seconds, tokens_per_s: (B * N) / seconds, ms_per_step: (1000 * seconds) / N };
      rows.push(row);
      process.stdout.write(`batch ${String(B).padStart(2)}  ${mode.padEnd(22)} ${row.tokens_per_s.toFixed(1).padStart(8)} tok/s  ${row.ms_per_step.toFixed(1).padStart(8)} ms/step\n`);
    }
  }
  const out = {
    bench: 'knn-decode',
    model: path.basename(model),
    memory: { folder: knn, entries, load_seconds: loadSeconds, search: 'exact, batched GEMM over F16 keys' },
    threads,
    prompt_tokens: P,
    cpu: os.cpus()[0]?.model,
    note: 'measured on the shared 2-core development machine while other jobs ran: ratios on/off within one run are meaningful, absolute figures are not',
    rows,
  };
  const file = values.out ?? path.join(root, 'bench', 'results', 'knn-decode.json');
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  process.stdout.write(`wrote ${file}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});

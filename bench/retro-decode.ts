// bench/retro-decode: decode tokens/s of the shipped RETRO (models/retro: m 64,
// k 2) through the scheduler (the server's generation loop), in one process:
//   off        no retrieval: no neighbours, so no chunk is encoded and no token
//              gets a CCA term (the same model's step without neighbours)
//   fixed      every chunk's neighbours given at once from a list computed
//              before the run (the encoder and CCA cost, no search)
//   live       live retrieval from the datastore (src/retrieval/retro.ts, as a
//              request's `retrieval` field runs it): the search of each chunk
//              a sequence completes, off the critical path (the sequence sits
//              out while the others step), then encoder and CCA
//   inline     the same searches run synchronously between steps (the
//              scheduler blocked while one runs: retrieval on the critical path,
//              as before retrieval went off it), for comparison
// at each batch size, every sequence decoding --decode-tokens tokens after a
// short prompt of its own length (20 + 9 b bytes, so the sequences of a batch
// complete their chunks at different steps). The datastore is the models'
// training text (src/retrieval/training-datastore.ts, 66,903 chunks of 64
// bytes), built into --datastore DIR when that folder is missing.
//   node dist/bench/retro-decode.js [--datastore DIR] [--threads 1] [--batches 1,8] [--decode-tokens 1024] [--reps 5] [--out FILE]
process.env.UV_THREADPOOL_SIZE ??= '2';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import type { ModelRuntime } from '../src/engine/completion';
import { Scheduler, type SequenceSpec } from '../src/engine/scheduler';
import { loadTokenizer } from '../src/engine/tokenizer';
import { Engine } from '../src/native';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { RetroRetrieval } from '../src/retrieval/retro';
import { buildTrainingDatastore } from '../src/retrieval/training-datastore';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    datastore: { type: 'string', default: path.join(os.tmpdir(), 'roost-retro-kjv-64') },
    threads: { type: 'string', default: '1' },
    batches: { type: 'string', default: '1,8' },
    'decode-tokens': { type: 'string', default: '1024' },
    reps: { type: 'string', default: '5' },
    out: { type: 'string' },
  },
});
const model = path.join(root, 'models', 'retro');

type Mode = 'off' | 'fixed' | 'live' | 'inline';

async function main(): Promise<void> {
  const threads = Number(values.threads);
  const N = Number(values['decode-tokens']);
  const dir = values.datastore!;
  const load0 = os.loadavg();
  let build: Record<string, unknown> = { reused: true };
  if (!fs.existsSync(dir)) {
    process.stderr.write(`building the training-text datastore into ${dir} ...\n`);
    build = buildTrainingDatastore(model, dir);
  }
  const tokenizer = loadTokenizer(model);
  const store = Datastore.open(dir, tokenizer, Embedder.load());
  if (store.chunkTokens !== 64) throw new Error(`${dir} has chunks of ${store.chunkTokens} tokens; models/retro needs 64`);
  // Warm-up: the first searches of a process are several times slower (JIT, caches).
  for (let i = 0; i < 8; i++) store.search(`And the LORD spake unto Moses ${i}`, 2, 'hybrid');
  // Every search timed, to say what share of the run it took.
  let searches = 0;
  let searchSeconds = 0;
  const search = store.search.bind(store);
  store.search = (...a: Parameters<Datastore['search']>) => {
    const t0 = process.hrtime.bigint();
    try {
      return search(...a);
    } finally {
      searches++;
      searchSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
    }
  };
  const engine = await Engine.load(model, { device: 'cpu', threads });
  const info = engine.info();
  const rt = { info, tokenizer } as ModelRuntime;
  const heldout = fs.readFileSync(path.join(root, 'models', 'data', 'revelation-heldout.txt'), 'latin1');

  /** What RetroRetrieval's search does (src/retrieval/retro.ts), run at once. */
  const inlineSearch = (tokens: number[]): number[] | null => {
    const passages = store.search(tokenizer.decode(tokens), info.retroNeighbours, 'hybrid');
    return passages.length < info.retroNeighbours ? null : passages.flatMap((x) => store.neighbourTokens(x.id, 128));
  };

  /** One run of B sequences; fixedFrom: the live run's neighbours per sequence and chunk, for `fixed`. */
  async function run(B: number, mode: Mode, fixedFrom?: Map<string, number[] | null>) {
    const sched = new Scheduler(engine, { maxBatch: B, requestTimeoutMs: 0 });
    const live = new RetroRetrieval(rt, store, { datastore: 'kjv', k: null, mode: 'hybrid', returnPassages: false });
    const seen = new Map<string, number[] | null>();
    let generated = 0;
    const specs: SequenceSpec[] = Array.from({ length: B }, (_, b) => {
      const at = (b * 997) % (heldout.length - 200);
      const prompt = [...Buffer.from(heldout.slice(at, at + 20 + 9 * b), 'latin1')];
      const hook = live.forChoice(b);
      const retro: SequenceSpec['retro'] | undefined =
        mode === 'off'
          ? undefined
          : mode === 'fixed'
            ? { chunkSize: 64, neighbours: (u) => fixedFrom!.get(`${b}/${u}`) ?? null }
            : mode === 'inline'
              ? { chunkSize: 64, neighbours: (_u, tokens) => inlineSearch(tokens) }
              : {
                chunkSize: 64,
                neighbours: async (u, tokens) => {
                  const nb = await hook.neighbours(u, tokens);
                  seen.set(`${b}/${u}`, nb);
                  return nb;
                },
              };
      return {
        prompt,
        params: { temperature: 0.8, seed: BigInt(1000 + b) },
        maxTokens: N,
        promptLogprobs: false,
        ...(retro ? { retro } : {}),
        listener: { onToken: () => (generated++, false), onFinish: () => {} },
      };
    });
    searches = 0;
    searchSeconds = 0;
    const t0 = process.hrtime.bigint();
    await sched.submit(specs).done;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (generated !== B * N) throw new Error(`${mode}: ${generated} tokens, expected ${B * N}`);
    const row = {
      batch: B,
      mode,
      tokens: generated,
      seconds,
      tokens_per_s: generated / seconds,
      steps: sched.totals.steps,
      ms_per_step: (1000 * sched.totals.stepSeconds) / sched.totals.steps,
      engine_seconds: sched.totals.stepSeconds,
      ...(mode === 'live' || mode === 'inline' ? { searches, search_seconds: searchSeconds } : {}),
    };
    return { row, seen };
  }

  // The machine is shared: each mode runs --reps times, interleaved (off, live, fixed, inline, off, ...),
  // and the fastest run of each is reported beside the median (load spikes only slow a run down).
  const reps = Number(values.reps);
  const rows: Array<Record<string, unknown>> = [];
  for (const B of values.batches!.split(',').map(Number)) {
    await run(B, 'off'); // warm-up
    const runs: Record<Mode, Array<Awaited<ReturnType<typeof run>>['row']>> = { off: [], fixed: [], live: [], inline: [] };
    let seen: Map<string, number[] | null> | undefined;
    for (let r = 0; r < reps; r++) {
      runs.off.push((await run(B, 'off')).row);
      const live = await run(B, 'live');
      runs.live.push(live.row);
      seen ??= live.seen;
      runs.fixed.push((await run(B, 'fixed', seen)).row);
      runs.inline.push((await run(B, 'inline')).row);
    }
    const best = (m: Mode) => runs[m].reduce((a, x) => (x.tokens_per_s > a.tokens_per_s ? x : a));
    const median = (m: Mode) => [...runs[m]].sort((x, y) => x.tokens_per_s - y.tokens_per_s)[Math.floor(runs[m].length / 2)].tokens_per_s;
    for (const mode of ['off', 'fixed', 'live', 'inline'] as const) {
      const row = best(mode);
      const out = { ...row, median_tokens_per_s: median(mode), vs_off: row.tokens_per_s / best('off').tokens_per_s, runs: runs[mode].map((x) => x.tokens_per_s) };
      rows.push(out);
      process.stdout.write(
        `batch ${String(B).padStart(2)}  ${mode.padEnd(6)} best ${row.tokens_per_s.toFixed(0).padStart(6)} tok/s (median ${out.median_tokens_per_s.toFixed(0).padStart(6)})  ` +
          `${out.vs_off.toFixed(3)}x off  ${row.ms_per_step.toFixed(3)} ms/step  ${row.steps} steps` +
          ('searches' in row ? `  ${row.searches} searches, ${((row.search_seconds ?? 0) * 1000).toFixed(0)} ms` : '') +
          '\n',
      );
    }
  }
  const out = {
    bench: 'retro-decode',
    model: 'models/retro',
    datastore: { folder: dir, chunks: store.chunkCount, mode: 'hybrid', k: info.retroNeighbours, build },
    threads,
    decode_tokens_per_sequence: N,
    cpu: os.cpus()[0]?.model,
    load_average_before: load0,
    load_average_after: os.loadavg(),
    note:
      'measured on the shared 2-core development machine while other jobs ran (load averages above): the ratios within one run are meaningful, ' +
      'the absolute figures are not; each row is the fastest of its reps (runs: all of them); tokens_per_s counts every sampled token over the wall time of the run (prompts of 20-83 bytes included)',
    rows,
  };
  const file = values.out ?? path.join(root, 'bench', 'results', 'retro-decode.json');
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  process.stdout.write(`wrote ${file}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});

// bench/novelty: what `novelty` costs against decoding, at batch 16.
//   npm run bench:novelty [-- --rounds 5 --tokens 256 --n 16 --threads 1]
// Results: bench/results/novelty-cost.json (and a line on stdout).
//
// One server in this process (the default model, --max-batch 16, the kjv
// corpus). Each round sends the same request twice, without and with
// `novelty: {corpus: "kjv"}`, in alternating order: n = 16 sampled choices
// of --tokens tokens (seeded, eos ignored, so both decode the same tokens;
// checked). Reported: the median wall time and CPU time (this process: server,
// engine threads, client) of each, their ratios, and the time spent measuring
// alone (Corpus.noveltyOfText over the 16 texts, timed directly) as a share
// of the request without novelty.
process.env.UV_THREADPOOL_SIZE ??= '2';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { Corpus } from '../src/novelty/corpus';
import { ensureKjvCorpus } from '../src/novelty/kjv';
import { startServer } from '../src/server';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    tokens: { type: 'string', default: '256' },
    n: { type: 'string', default: '16' },
    threads: { type: 'string', default: '1' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'novelty-cost.json') },
  },
});
const rounds = Number(values.rounds);
const tokens = Number(values.tokens);
const n = Number(values.n);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const corpusDir = ensureKjvCorpus();
  const s = await startServer({
    model: path.join(root, 'models', 'bigbird'),
    host: '127.0.0.1',
    port: 0,
    threads: Number(values.threads),
    maxBatch: n,
    corpora: { kjv: corpusDir },
  });
  const body = { prompt: 'Lev1:1 And the LORD called unto Moses', max_tokens: tokens, n, temperature: 1, seed: 7, ignore_eos: true };
  const run = async (withNovelty: boolean) => {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const r = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(withNovelty ? { ...body, novelty: { corpus: 'kjv' } } : body),
    });
    const json = (await r.json()) as { choices: Array<{ text: string }> };
    if (r.status !== 200) throw new Error(JSON.stringify(json));
    const c = process.cpuUsage(c0);
    return { ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1000, texts: json.choices.map((c) => c.text) };
  };
  await run(false); // warm-up
  await run(true);
  const without: number[] = [];
  const withN: number[] = [];
  // CPU time of this process (server, engine threads and client): less disturbed by other jobs than wall time.
  const cpuWithout: number[] = [];
  const cpuWith: number[] = [];
  let texts: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? [false, true] : [true, false];
    for (const w of order) {
      const r = await run(w);
      (w ? withN : without).push(r.ms);
      (w ? cpuWith : cpuWithout).push(r.cpuMs);
      if (texts.length === 0) texts = r.texts;
      else if (r.texts.join('\u0000') !== texts.join('\u0000')) throw new Error('the two runs decoded different text');
    }
  }
  await s.close(0);

  // The measuring alone, timed directly on the same texts.
  const corpus = Corpus.open(corpusDir).prepare();
  const measureMs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    for (const t of texts) corpus.noveltyOfText(t);
    measureMs.push(performance.now() - t0);
  }

  const result = {
    bench: 'novelty-cost',
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg() },
    note: 'shared machine: other jobs ran meanwhile (load average above); the two variants alternate within each round',
    model: 'bigbird',
    corpus: 'kjv (4,281,890 bytes)',
    threads: Number(values.threads),
    batch: n,
    tokens_per_choice: tokens,
    rounds,
    request_ms: { without_novelty: without, with_novelty: withN },
    median_ms: { without_novelty: median(without), with_novelty: median(withN) },
    ratio_with_to_without: median(withN) / median(without),
    request_cpu_ms: { without_novelty: cpuWithout, with_novelty: cpuWith },
    median_cpu_ms: { without_novelty: median(cpuWithout), with_novelty: median(cpuWith) },
    cpu_ratio_with_to_without: median(cpuWith) / median(cpuWithout),
    // Each round's two requests ran back to back: their difference cancels the slower drifts of the load.
    median_paired_cpu_diff_ms: median(cpuWith.map((c, i) => c - cpuWithout[i])),
    measure_ms_16_choices: measureMs,
    measure_share_of_decode: median(measureMs) / median(without),
  };
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(values.out!, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(
    `batch ${n} x ${tokens} tokens: ${median(without).toFixed(0)} ms without novelty, ${median(withN).toFixed(0)} ms with (x${result.ratio_with_to_without.toFixed(3)}); CPU ${median(cpuWithout).toFixed(0)} / ${median(cpuWith).toFixed(0)} ms (x${result.cpu_ratio_with_to_without.toFixed(3)}, paired difference ${result.median_paired_cpu_diff_ms.toFixed(0)} ms); ` +
      `measuring alone ${median(measureMs).toFixed(1)} ms = ${(100 * result.measure_share_of_decode).toFixed(2)}% of decode\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});

// bench/adapters: what per-request adapters cost at batch 16 (issue: under 10%).
//   npm run bench:adapters [-- --threads 0 --batch 16 --prompt-tokens 64 --tokens 256 --reps 9]
// Results: bench/results/adapters.json (and a table on stdout).
//
// For each model (the shipped default and a GPT-2-124M-shaped F16 checkpoint
// with random weights), `batch` sequences each prefill a prompt and then
// decode `tokens` tokens together, timed end to end and decode-only, in two
// arms run alternately `reps` times (the machine is shared: medians of
// interleaved runs):
//  - base: no adapter on any sequence;
//  - mixed: a third of the sequences with a 16-token soft prompt, a third with
//    (IA)^3, the rest on the base model (random adapters written here).
// The soft prompt costs its 16 positions once, in the first step; (IA)^3
// costs three vector products per layer per token.
process.env.UV_THREADPOOL_SIZE ??= '2';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { Engine, NativeEngine } from '../src/native';
import { median } from './load/stats';
import { writeRandomAdapter } from './lib/adapters';
import { writeRandomGpt2 } from './lib/random-gpt2';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '0' },
    batch: { type: 'string', default: '16' },
    'prompt-tokens': { type: 'string', default: '64' },
    tokens: { type: 'string', default: '256' },
    reps: { type: 'string', default: '9' },
    models: { type: 'string', default: 'default,gpt2-124m-f16' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'adapters.json') },
  },
});
const threads = Number(values.threads);
const batch = Number(values.batch);
const promptTokens = Number(values['prompt-tokens']);
const tokens = Number(values.tokens);
const reps = Number(values.reps);

function modelDir(name: string): string {
  if (name === 'default') return path.join(root, 'models', fs.readFileSync(path.join(root, 'models', 'DEFAULT'), 'utf8').trim());
  const dir = path.join(root, 'bench', 'tmp', name);
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    process.stderr.write(`writing random checkpoint to ${dir} ...\n`);
    writeRandomGpt2(dir, { nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257, nPositions: 1024, dtype: 'F16' });
  }
  return dir;
}

/** One run: prefill every sequence, then `tokens` decode steps; seconds end to end and for the decode steps. */
async function run(engine: NativeEngine, adapters: Array<string | undefined>, vocab: number) {
  const seqs = adapters.map((a) => engine.createSequence({ temperature: 0, ...(a ? { adapter: a } : {}) }));
  const prompt = (i: number) => Array.from({ length: promptTokens }, (_, j) => (31 * i + 7 * j + 1) % Math.min(vocab, 256));
  const t0 = process.hrtime.bigint();
  let out = await engine.step(seqs.map((seq, i) => ({ seq, tokens: prompt(i), sample: true })));
  const t1 = process.hrtime.bigint();
  for (let t = 1; t < tokens; t++) out = await engine.step(out.map((r) => ({ seq: r.seq, tokens: [r.token!], sample: true })));
  const t2 = process.hrtime.bigint();
  seqs.forEach((s) => engine.freeSequence(s));
  return { total: Number(t2 - t0) / 1e9, decode: Number(t2 - t1) / 1e9 };
}

async function benchModel(name: string) {
  const dir = modelDir(name);
  const engine = await Engine.load(dir, { threads });
  const adir = path.join(root, 'bench', 'tmp', `adapters-${name}`);
  writeRandomAdapter(path.join(adir, 'soft16'), dir, { kind: 'prompt_tuning', promptTokens: 16, seed: 3 });
  writeRandomAdapter(path.join(adir, 'ia3'), dir, { kind: 'ia3', seed: 4 });
  engine.loadAdapter('soft16', path.join(adir, 'soft16'));
  engine.loadAdapter('ia3', path.join(adir, 'ia3'));
  const vocab = engine.info().vocabSize;
  const arms: Record<string, Array<string | undefined>> = {
    base: Array.from({ length: batch }, () => undefined),
    mixed: Array.from({ length: batch }, (_, i) => [ 'soft16', 'ia3', undefined][i % 3]),
  };
  await run(engine, arms.base, vocab); // warm-up
  const times: Record<string, { total: number[]; decode: number[] }> = { base: { total: [], decode: [] }, mixed: { total: [], decode: [] } };
  for (let r = 0; r < reps; r++) {
    for (const arm of r % 2 === 0 ? ['base', 'mixed'] : ['mixed', 'base']) {
      const t = await run(engine, arms[arm], vocab);
      times[arm].total.push(t.total);
      times[arm].decode.push(t.decode);
    }
  }
  const generated = batch * tokens;
  const res = (arm: string) => ({
    endToEndTokensPerSecond: generated / median(times[arm].total),
    decodeTokensPerSecond: (batch * (tokens - 1)) / median(times[arm].decode),
    runsSeconds: times[arm].total,
  });
  const base = res('base');
  const mixed = res('mixed');
  return {
    model: name,
    dir: path.relative(root, dir),
    base,
    mixed,
    endToEndCost: 1 - mixed.endToEndTokensPerSecond / base.endToEndTokensPerSecond,
    decodeCost: 1 - mixed.decodeTokensPerSecond / base.decodeTokensPerSecond,
    mixedArm: `${arms.mixed.filter((a) => a === 'soft16').length} soft prompts of 16 tokens, ${arms.mixed.filter((a) => a === 'ia3').length} (IA)^3, ${arms.mixed.filter((a) => !a).length} none`,
  };
}

async function main() {
  const results = [];
  for (const name of values.models!.split(',')) {
    const r = await benchModel(name);
    results.push(r);
    console.log(
      `${name}: batch ${batch}, ${promptTokens}-token prompts, ${tokens} tokens each (${r.mixedArm}):\n` +
        `  end to end: base ${r.base.endToEndTokensPerSecond.toFixed(1)} tok/s, with adapters ${r.mixed.endToEndTokensPerSecond.toFixed(1)} tok/s, cost ${(100 * r.endToEndCost).toFixed(1)}%\n` +
        `  decode:     base ${r.base.decodeTokensPerSecond.toFixed(1)} tok/s, with adapters ${r.mixed.decodeTokensPerSecond.toFixed(1)} tok/s, cost ${(100 * r.decodeCost).toFixed(1)}%`,
    );
  }
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg() },
    batch, promptTokens, tokens, reps, threads, results,
  };
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(values.out!, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${values.out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

// bench/prefix: the prefix cache (cpp/kv_pool.h) on a GPT-3-style few-shot
// workload and on n choices, cache on against off in one run, through the
// HTTP server (POST /v1/completions, streamed) and its GET /metrics.
//   few-shot: one 2,048-token prefix of demonstrations shared by --requests
//     requests, each with its own 32-token question; one request first warms
//     the cache (not counted); TTFT p50 over the rest, sent one at a time.
//   n: one request with n = 8 choices of a 1,024-token prompt; prefill tokens
//     computed (roost_prefill_tokens_computed_total) against 1,024.
// Models: the default model (models/DEFAULT) and the GPT-2-124M shape
// (random weights written by bench/lib/random-gpt2.ts, 4,096 positions so
// the 2,080-token prompts fit).
//   npm run bench:prefix [-- --requests 16 --threads 0 --models default,124m]
// Results: bench/results/prefix.json (and a table on stdout). Run on an idle machine.
process.env.UV_THREADPOOL_SIZE ??= '2';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { startServer } from '../src/server';
import { median } from './load/stats';
import { randomTokens, writeRandomGpt2 } from './lib/random-gpt2';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '16' },
    threads: { type: 'string', default: '0' },
    models: { type: 'string', default: 'default,124m' },
    'prefix-tokens': { type: 'string', default: '2048' },
    'question-tokens': { type: 'string', default: '32' },
    'n-prompt-tokens': { type: 'string', default: '1024' },
    n: { type: 'string', default: '8' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'prefix.json') },
  },
});
const requests = Number(values.requests);
const threads = Number(values.threads);
const prefixTokens = Number(values['prefix-tokens']);
const questionTokens = Number(values['question-tokens']);
const nPromptTokens = Number(values['n-prompt-tokens']);
const n = Number(values.n);

function modelDir(name: string): { dir: string; vocab: number } {
  if (name === 'default') {
    const dir = path.join(root, 'models', fs.readFileSync(path.join(root, 'models', 'DEFAULT'), 'utf8').trim());
    return { dir, vocab: Math.min(256, JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).vocab_size) };
  }
  const shape = { nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257, nPositions: 4096 };
  const dir = path.join(root, 'bench', 'tmp', 'gpt2-124m-f32-4k');
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    process.stderr.write(`writing a random 124M checkpoint to ${dir} ...\n`);
    writeRandomGpt2(dir, { ...shape, dtype: 'F32' });
  }
  return { dir, vocab: 50000 };
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** Seconds to the first streamed token of one completion. */
async function ttft(url: string, prompt: number[], choices = 1): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: 1, temperature: 0, n: choices, stream: true }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let first = 0;
  const reader = res.body!.getReader();
  for (;;) {
    const { done } = await reader.read();
    if (!first) first = performance.now();
    if (done) break;
  }
  return (first - t0) / 1000;
}

async function one(model: string, cache: boolean) {
  const { dir, vocab } = modelDir(model);
  const s = await startServer({ model: dir, host: '127.0.0.1', port: 0, threads, maxBatch: 8, maxQueue: 1024, prefixCache: cache });
  try {
    const prefix = randomTokens(prefixTokens, 1, vocab);
    await ttft(s.url, prefix.concat(randomTokens(questionTokens, 2, vocab))); // warms the cache
    const computed0 = await metric(s.url, 'roost_prefill_tokens_computed_total');
    // Where a request's time goes: engine steps (count, seconds) and the server's own TTFT (submission to first token).
    const names = ['roost_step_seconds_count', 'roost_step_seconds_sum', 'roost_time_to_first_token_seconds_sum'];
    const before = await Promise.all(names.map((m) => metric(s.url, m)));
    const times: number[] = [];
    const cpuMs: number[] = []; // this process's CPU time per request (client, server and engine threads): what a shared machine's load does not inflate
    for (let i = 0; i < requests; i++) {
      const c0 = process.cpuUsage();
      times.push(await ttft(s.url, prefix.concat(randomTokens(questionTokens, 100 + i, vocab))));
      const c = process.cpuUsage(c0);
      cpuMs.push((c.user + c.system) / 1000);
    }
    const after = await Promise.all(names.map((m) => metric(s.url, m)));
    const [steps, stepSeconds, serverTtft] = after.map((a, k) => (a - before[k]) / requests);
    const computed1 = await metric(s.url, 'roost_prefill_tokens_computed_total');
    const nStart = Date.now();
    await ttft(s.url, randomTokens(nPromptTokens, 3, vocab), n);
    const nSeconds = (Date.now() - nStart) / 1000;
    const computed2 = await metric(s.url, 'roost_prefill_tokens_computed_total');
    return {
      model,
      cache,
      fewShot: {
        requests,
        ttftP50Seconds: median(times),
        cpuMsP50: median(cpuMs),
        prefillTokensComputed: computed1 - computed0,
        prefillTokensSent: requests * (prefixTokens + questionTokens),
        // Means per request: engine steps to the first token (max_tokens 1: that is all of its steps), their seconds, the server's TTFT.
        perRequest: { steps, stepSeconds, serverTtftSeconds: serverTtft, clientTtftMeanSeconds: times.reduce((a, b) => a + b, 0) / requests },
      },
      nChoices: { n, promptTokens: nPromptTokens, prefillTokensComputed: computed2 - computed1, seconds: nSeconds },
      hitTokens: await metric(s.url, 'roost_prefix_cache_hit_tokens_total'),
    };
  } finally {
    await s.close(0);
  }
}

async function main() {
  const rows = [];
  for (const model of values.models!.split(','))
    for (const cache of [true, false]) {
      const r = await one(model, cache);
      rows.push(r);
      process.stdout.write(
        `${model.padEnd(8)} cache ${cache ? 'on ' : 'off'}  few-shot TTFT p50 ${(r.fewShot.ttftP50Seconds * 1000).toFixed(1).padStart(8)} ms, ` +
          `prefill computed ${String(r.fewShot.prefillTokensComputed).padStart(7)} / ${r.fewShot.prefillTokensSent}; ` +
          `n=${n}: prefill computed ${r.nChoices.prefillTokensComputed} (prompt ${nPromptTokens}); per request ${r.fewShot.perRequest.steps.toFixed(1)} steps, ` +
          `${(r.fewShot.perRequest.stepSeconds * 1000).toFixed(1)} ms in steps, server TTFT ${(r.fewShot.perRequest.serverTtftSeconds * 1000).toFixed(1)} ms, ` +
          `client mean ${(r.fewShot.perRequest.clientTtftMeanSeconds * 1000).toFixed(1)} ms\n`,
      );
    }
  for (const model of values.models!.split(',')) {
    const on = rows.find((r) => r.model === model && r.cache)!, off = rows.find((r) => r.model === model && !r.cache)!;
    process.stdout.write(`${model}: TTFT p50 ${(off.fewShot.ttftP50Seconds / on.fewShot.ttftP50Seconds).toFixed(1)}x lower with the cache ` +
      `(CPU per request ${(off.fewShot.cpuMsP50 / on.fewShot.cpuMsP50).toFixed(1)}x)\n`);
  }
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(values.out!, JSON.stringify({ date: new Date().toISOString(), threads, loadavg: os.loadavg(), rows }, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});

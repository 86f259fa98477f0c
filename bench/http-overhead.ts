// bench/http-overhead: what the serving layer costs on top of the engine.
//   npm run bench:http [-- --clients 64 --tokens 64 --prompt-tokens 16 --threads 0 --model DIR]
// Results: bench/results/http-overhead.json (and a table on stdout).
//
// How it measures. The server runs in a child process (as `roost serve` would),
// the clients in this one. Three numbers:
//  1. engine alone: the child drives its engine directly (no HTTP, no
//     scheduler) through the same workload: `clients` prompts in one step, then
//     `tokens` - 1 decode steps -> tokens/s (and decode-only tokens/s).
//  2. one streaming client, then `clients` concurrent streaming clients, over
//     HTTP SSE and over WebSocket -> aggregate tokens/s and the ratio to one client.
//  3. serving overhead per token: the scheduler times every engine.step
//     (stepSeconds) and the JS time between a step returning and the next one
//     starting (gapSeconds: applying results, detokenizing, stop strings,
//     building and writing SSE/WS frames, admitting requests). Over the busy
//     run, gap / step is the share of engine step time the TS layer adds per
//     token. Request parsing and socket reads run while a step computes on the
//     engine's threads, so they do not lengthen the step loop; they are covered
//     by the end-to-end ratio (HTTP tokens/s vs. the engine baseline).
// The default model is a random GPT-2-124M-shaped F16 checkpoint (bytes
// tokenizer): most sampled ids are above 255 and have no text, so requests ask
// for logprobs: 0, which makes every token produce a frame (the costlier path).
process.env.UV_THREADPOOL_SIZE ??= '2';
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';

import { startServer } from '../src/server';
import { writeRandomGpt2 } from './lib/random-gpt2';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    child: { type: 'boolean', default: false },
    model: { type: 'string' },
    clients: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '64' },
    'prompt-tokens': { type: 'string', default: '16' },
    threads: { type: 'string', default: '0' },
    transports: { type: 'string', default: 'http,ws' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'http-overhead.json') },
  },
});
const clients = Number(values.clients);
const tokens = Number(values.tokens);
const promptTokens = Number(values['prompt-tokens']);
const threads = Number(values.threads);

function prompt(i: number): number[] {
  return Array.from({ length: promptTokens }, (_, j) => (i * 31 + j * 7) % 256);
}

// ------------------------------------------------------------------ the server (child)

async function child(model: string): Promise<void> {
  const s = await startServer({ model, host: '127.0.0.1', port: 0, threads, maxBatch: Math.max(clients, 1), maxQueue: 1024 });
  const rt = s.holder.runtime!;
  process.on('message', async (m: { cmd: string }) => {
    if (m.cmd === 'totals') process.send!({ totals: { ...rt.scheduler.totals } });
    if (m.cmd === 'baseline') {
      const e = rt.engine;
      // The same workload straight on the engine: all prompts, then `tokens` - 1 decode steps.
      const seqs = Array.from({ length: clients }, () => e.createSequence({ temperature: 0, logprobs: 0 }));
      const t0 = performance.now();
      let out = await e.step(seqs.map((seq, i) => ({ seq, tokens: prompt(i), sample: true })));
      const t1 = performance.now();
      for (let t = 1; t < tokens; t++) out = await e.step(out.map((r) => ({ seq: r.seq, tokens: [r.token!], sample: true })));
      const t2 = performance.now();
      for (const q of seqs) e.freeSequence(q);
      const decodeSeconds = (t2 - t1) / 1000;
      process.send!({
        baseline: {
          tokensPerSecond: (clients * tokens) / ((t2 - t0) / 1000),
          decodeTokensPerSecond: (clients * (tokens - 1)) / decodeSeconds,
          msPerDecodeStep: (decodeSeconds * 1000) / (tokens - 1),
          prefillSeconds: (t1 - t0) / 1000,
        },
      });
    }
    if (m.cmd === 'exit') {
      await s.close(0);
      process.exit(0);
    }
  });
  process.send!({ url: s.url });
}

// ------------------------------------------------------------------ the clients (parent)

async function httpClient(url: string, i: number): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: prompt(i), max_tokens: tokens, temperature: 0, logprobs: 0, stream: true }),
  });
  let n = 0;
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let k: number;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (ev.startsWith('data: {')) n += (JSON.parse(ev.slice(6)).choices[0]?.logprobs?.tokens.length ?? 0);
    }
  }
  return n;
}

function wsClient(url: string, i: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/v1/stream');
    let n = 0;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'request', id: `c${i}`, prompt: prompt(i), max_tokens: tokens, temperature: 0 })));
    ws.on('message', (data) => {
      const ev = JSON.parse(data.toString());
      if (ev.type === 'token') n++;
      else if (ev.type === 'done') {
        ws.close();
        resolve(n);
      } else if (ev.type === 'error') reject(new Error(ev.message));
    });
    ws.on('error', reject);
  });
}

async function run(kind: 'http' | 'ws', url: string, count: number) {
  const t0 = performance.now();
  const counts = await Promise.all(Array.from({ length: count }, (_, i) => (kind === 'http' ? httpClient(url, i) : wsClient(url, i))));
  const seconds = (performance.now() - t0) / 1000;
  const total = counts.reduce((a, b) => a + b, 0);
  if (counts.some((c) => c !== tokens)) throw new Error(`${kind}: a client got ${Math.min(...counts)} tokens, expected ${tokens}`);
  return { clients: count, tokens: total, seconds, tokensPerSecond: total / seconds };
}

async function parent(): Promise<void> {
  let model = values.model;
  if (!model) {
    model = path.join(root, 'bench', 'tmp', 'gpt2-124m-f16');
    if (!fs.existsSync(path.join(model, 'model.safetensors'))) {
      process.stderr.write(`writing a random F16 checkpoint to ${model} ...\n`);
      writeRandomGpt2(model, { nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257, nPositions: 1024, dtype: 'F16' });
    }
  }
  const proc = fork(__filename, ['--child', '--model', model, '--clients', String(clients), '--tokens', String(tokens), '--prompt-tokens', String(promptTokens), '--threads', String(threads)], {
    env: { ...process.env, UV_THREADPOOL_SIZE: '2' },
  });
  const ask = <T>(cmd: string, key: string) =>
    new Promise<T>((resolve) => {
      const on = (m: Record<string, T>) => {
        if (key in m) {
          proc.off('message', on);
          resolve(m[key]);
        }
      };
      proc.on('message', on);
      if (cmd) proc.send({ cmd });
    });
  const url = await ask<string>('', 'url');
  const baseline = await ask<{ tokensPerSecond: number; decodeTokensPerSecond: number; msPerDecodeStep: number; prefillSeconds: number }>('baseline', 'baseline');
  const results: Record<string, unknown> = { model, clients, tokens, promptTokens, threads, baseline, loadAverage: os.loadavg(), cpus: os.cpus().length };
  process.stdout.write(
    `engine alone, ${clients} sequences: ${baseline.tokensPerSecond.toFixed(1)} tokens/s with prefill ` +
      `(${baseline.prefillSeconds.toFixed(2)} s prefill; decode ${baseline.decodeTokensPerSecond.toFixed(1)} tokens/s, ${baseline.msPerDecodeStep.toFixed(1)} ms/step)\n`,
  );
  for (const kind of values.transports!.split(',') as Array<'http' | 'ws'>) {
    // One client: best of 3 (other processes on a shared machine only slow a run down).
    const ones = [await run(kind, url, 1), await run(kind, url, 1), await run(kind, url, 1)];
    const one = ones.reduce((a, b) => (b.tokensPerSecond > a.tokensPerSecond ? b : a));
    const before = await ask<Record<string, number>>('totals', 'totals');
    const many = await run(kind, url, clients);
    const after = await ask<Record<string, number>>('totals', 'totals');
    const step = after.stepSeconds - before.stepSeconds;
    const gap = after.gapSeconds - before.gapSeconds;
    const decoded = after.decodeTokens - before.decodeTokens;
    const overhead = {
      stepSeconds: step,
      gapSeconds: gap,
      steps: after.steps - before.steps,
      gapShareOfStep: gap / step,
      stepMsPerToken: (step * 1000) / (decoded + clients),
      gapMsPerToken: (gap * 1000) / (decoded + clients),
    };
    const speedup = many.tokensPerSecond / one.tokensPerSecond;
    const vsEngine = many.tokensPerSecond / baseline.tokensPerSecond;
    results[kind] = { one, many, speedup, endToEndShareOfEngine: vsEngine, overhead };
    process.stdout.write(
      `${kind}: 1 client ${one.tokensPerSecond.toFixed(1)} tokens/s; ${clients} clients ${many.tokensPerSecond.toFixed(1)} tokens/s ` +
        `(x${speedup.toFixed(1)}; ${(vsEngine * 100).toFixed(0)}% of the engine alone); ` +
        `serving overhead ${(overhead.gapShareOfStep * 100).toFixed(2)}% of engine step time ` +
        `(${overhead.gapMsPerToken.toFixed(3)} ms vs ${overhead.stepMsPerToken.toFixed(3)} ms per token)\n`,
    );
  }
  proc.send({ cmd: 'exit' });
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(values.out!, JSON.stringify(results, null, 2) + '\n');
}

if (values.child) child(values.model!).catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
else parent().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});

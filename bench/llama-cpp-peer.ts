// llama.cpp's side of bench/decode (`--peer-llama-cpp DIR`): the same
// measurements on a GGUF file through node-llama-cpp, loaded from DIR (a scratch
// install, never a dependency of this project). bench/decode runs it as a child
// process with UV_THREADPOOL_SIZE=1: node-llama-cpp evaluates on the libuv pool,
// and spare pool threads spinning against 2 compute threads on 2 cores slow it
// down (docs/peers.md). Prints one JSON line.
//   node dist/bench/llama-cpp-peer.js --module DIR/node_modules/node-llama-cpp --gguf F.gguf \
//     --threads 2 --prompt-tokens 512 --decode-tokens 64 --batches 1,8,32 --check-tokens 1,2,3
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { randomTokens } from './lib/random-gpt2';
import { median } from './load/stats';

const { values } = parseArgs({
  options: {
    module: { type: 'string' },
    gguf: { type: 'string' },
    threads: { type: 'string', default: '2' },
    'prompt-tokens': { type: 'string', default: '512' },
    'decode-tokens': { type: 'string', default: '64' },
    batches: { type: 'string', default: '1,8,32' },
    'check-tokens': { type: 'string', default: '' },
    vocab: { type: 'string' },  // the model's vocabulary size (node-llama-cpp may not report it)
  },
});

// tsc compiles import() to require() in CommonJS output; node-llama-cpp is an ES module.
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<any>;

async function main() {
  if (!values.module || !values.gguf) throw new Error('--module and --gguf are required');
  const threads = Number(values.threads), promptTokens = Number(values['prompt-tokens']);
  const decodeTokens = Number(values['decode-tokens']);
  const { getLlama } = await importEsm(pathToFileURL(path.join(values.module, 'dist', 'index.js')).href);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: values.gguf, gpuLayers: 0 });
  const vocab: number = values.vocab ? Number(values.vocab) : model.fileInsights.vocabularySize ?? model.tokens.count ?? 50257;

  // Prefill: promptTokens in one sequence, best of 3.
  const prefill: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    const ctx = await model.createContext({ contextSize: promptTokens + 16, sequences: 1, threads, batchSize: promptTokens, flashAttention: true });
    const seq = ctx.getSequence();
    const t0 = process.hrtime.bigint();
    await seq.evaluateWithoutGeneratingNewTokens(randomTokens(promptTokens, rep + 1, vocab));
    prefill.push(Number(process.hrtime.bigint() - t0) / 1e9);
    await ctx.dispose();
  }

  // Greedy continuation of a given prompt, to check that both engines read the weights alike.
  let greedy: number[] = [];
  if (values['check-tokens']) {
    const prompt = values['check-tokens'].split(',').map(Number);
    const ctx = await model.createContext({ contextSize: prompt.length + 32, sequences: 1, threads, flashAttention: true });
    for await (const tok of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
      greedy.push(tok);
      if (greedy.length >= 16) break;
    }
    await ctx.dispose();
  }

  // Decode: batch sequences after a 16-token prompt each, evaluated concurrently (node-llama-cpp
  // batches concurrent sequences of one context into one llama_decode per step). Time per step:
  // from the moment every sequence has its first token to its last, over the tokens in between.
  const decode: Array<{ batch: number; tokensPerSecond: number; msPerStep: number }> = [];
  for (const batch of values.batches!.split(',').map(Number)) {
    const ctx = await model.createContext({ contextSize: batch * (16 + decodeTokens + 8), sequences: batch, threads, flashAttention: true });
    const stamps: bigint[][] = [];
    await Promise.all(Array.from({ length: batch }, async (_, i) => {
      const mine: bigint[] = [];
      stamps.push(mine);
      for await (const _tok of ctx.getSequence().evaluate(randomTokens(16, 100 + i, vocab), { temperature: 0 })) {
        mine.push(process.hrtime.bigint());
        if (mine.length >= decodeTokens + 1) break;
      }
    }));
    const start = stamps.reduce((m, s) => (s[0] > m ? s[0] : m), 0n);
    const end = stamps.reduce((m, s) => (s[s.length - 1] > m ? s[s.length - 1] : m), 0n);
    const tokens = stamps.reduce((n, s) => n + s.filter((t) => t > start).length, 0);
    const seconds = Number(end - start) / 1e9;
    decode.push({ batch, tokensPerSecond: tokens / seconds, msPerStep: (seconds / (tokens / batch)) * 1e3 });
    await ctx.dispose();
  }
  console.log(JSON.stringify({ engine: 'llama.cpp via node-llama-cpp', threads, promptTokens,
    prefillTokensPerSecond: promptTokens / Math.min(...prefill), prefillMedianSeconds: median(prefill), decode, greedy }));
  await model.dispose();
  await llama.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

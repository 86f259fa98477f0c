// llama.cpp's log-probs of a token sequence on a GGUF file, through node-llama-cpp
// loaded from a scratch install (never a dependency of this project; see
// bench/llama-cpp-peer.ts). Used by bench/q8-logprobs. Prints one JSON line:
// {"logprobs": [null, log p(t1 | t0), ...]}, log-softmax of the raw logits in float64.
//   node dist/bench/llama-cpp-logprobs.js --module DIR/node_modules/node-llama-cpp --gguf F.gguf --tokens 1,2,3
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { module: { type: 'string' }, gguf: { type: 'string' }, tokens: { type: 'string' }, threads: { type: 'string', default: '2' } },
});

// tsc compiles import() to require() in CommonJS output; node-llama-cpp is an ES module.
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<any>;

async function main() {
  if (!values.module || !values.gguf || !values.tokens) throw new Error('--module, --gguf and --tokens are required');
  const tokens = values.tokens.split(',').map(Number);
  const { getLlama } = await importEsm(pathToFileURL(path.join(values.module, 'dist', 'index.js')).href);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: values.gguf, gpuLayers: 0 });
  const ctx = await model.createContext({ contextSize: tokens.length + 8, sequences: 1, threads: Number(values.threads), batchSize: tokens.length });
  // Every input token but the last asks for the raw logits of the next one.
  const out = await ctx.getSequence().controlledEvaluate(
    tokens.map((t, i) => (i + 1 < tokens.length ? [t, { generateNext: { logits: true } }] : t)),
  );
  const logprobs: Array<number | null> = [null];
  for (let i = 0; i + 1 < tokens.length; i++) {
    const logits: Map<number, number> = out[i].next.logits;
    let max = -Infinity;
    for (const v of logits.values()) max = Math.max(max, v);
    let sum = 0;
    for (const v of logits.values()) sum += Math.exp(v - max);
    logprobs.push(logits.get(tokens[i + 1])! - max - Math.log(sum));
  }
  console.log(JSON.stringify({ engine: 'llama.cpp via node-llama-cpp', logprobs }));
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

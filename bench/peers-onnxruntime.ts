// ONNX Runtime's side of bench/peers: the measurements of bench/decode (512-token
// prefill with last logits, decode at batch 1, 8, 32 after a 16-token prompt per
// sequence, greedy tokens of a check prompt) on a GPT-2 exported by
// tools/reference/export_onnx_gpt2.py, through onnxruntime-node loaded from a
// scratch install (never a dependency of this project). The graph returns only the
// new tokens' keys and values; the cache lives here in one position-major buffer
// [P, L, B, H, D] whose first P rows are passed back without copying.
// Prints one JSON line.
//   node dist/bench/peers-onnxruntime.js --module DIR/node_modules/onnxruntime-node --onnx F.onnx \
//     --layers 12 --heads 12 --head-dim 64 --vocab 50257 --threads 2 --check-tokens 1,2,3
import { parseArgs } from 'node:util';
import { randomTokens } from './lib/random-gpt2';
import { median } from './load/stats';

const { values } = parseArgs({
  options: {
    module: { type: 'string' },
    onnx: { type: 'string' },
    layers: { type: 'string', default: '12' },
    heads: { type: 'string', default: '12' },
    'head-dim': { type: 'string', default: '64' },
    vocab: { type: 'string', default: '50257' },
    threads: { type: 'string', default: '2' },
    'prompt-tokens': { type: 'string', default: '512' },
    'decode-tokens': { type: 'string', default: '64' },
    batches: { type: 'string', default: '1,8,32' },
    'check-tokens': { type: 'string', default: '' },
  },
});

const L = Number(values.layers), H = Number(values.heads), D = Number(values['head-dim']), V = Number(values.vocab);
const row = L * H * D;  // floats per position per sequence, as one [L, 1, H, D] slab

// The KV cache of `batch` sequences that advance together: [capacity, L, batch, H, D].
class Cache {
  readonly k: Float32Array;
  readonly v: Float32Array;
  length = 0;
  constructor(readonly batch: number, readonly capacity: number) {
    this.k = new Float32Array(capacity * row * batch);
    this.v = new Float32Array(capacity * row * batch);
  }
  append(newK: Float32Array, newV: Float32Array, tokens: number) {
    const at = this.length * row * this.batch;
    this.k.set(newK.subarray(0, tokens * row * this.batch), at);
    this.v.set(newV.subarray(0, tokens * row * this.batch), at);
    this.length += tokens;
  }
}

function argmaxRows(logits: Float32Array, batch: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch; b++) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[b * V + i] > logits[b * V + best]) best = i;  // ties: lowest id
    out.push(best);
  }
  return out;
}

async function main() {
  if (!values.module || !values.onnx) throw new Error('--module and --onnx are required');
  const ort = require(values.module);
  const threads = Number(values.threads), promptTokens = Number(values['prompt-tokens']);
  const decodeTokens = Number(values['decode-tokens']);
  const session = await ort.InferenceSession.create(values.onnx, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
  });

  // One call: tokens [batch][T] on top of the cache; returns the last logits and appends K/V.
  async function run(cache: Cache, tokens: number[][]): Promise<Float32Array> {
    const batch = tokens.length, T = tokens[0].length;
    const ids = new BigInt64Array(batch * T);
    tokens.forEach((seq, b) => seq.forEach((t, i) => { ids[b * T + i] = BigInt(t); }));
    const past = cache.length * row * batch;
    const feeds = {
      input_ids: new ort.Tensor('int64', ids, [batch, T]),
      past_key: new ort.Tensor('float32', cache.k.subarray(0, past), [cache.length, L, batch, H, D]),
      past_value: new ort.Tensor('float32', cache.v.subarray(0, past), [cache.length, L, batch, H, D]),
    };
    const out = await session.run(feeds);
    cache.append(out.new_key.data as Float32Array, out.new_value.data as Float32Array, T);
    return out.logits.data as Float32Array;
  }

  // Prefill: promptTokens in one sequence, best of 3.
  const prefill: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    const cache = new Cache(1, promptTokens);
    const t0 = process.hrtime.bigint();
    await run(cache, [randomTokens(promptTokens, rep + 1, V)]);
    prefill.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }

  const greedy: number[] = [];
  if (values['check-tokens']) {
    const prompt = values['check-tokens'].split(',').map(Number);
    const cache = new Cache(1, prompt.length + 16);
    let next = argmaxRows(await run(cache, [prompt]), 1)[0];
    while (greedy.length < 16) {
      greedy.push(next);
      if (greedy.length < 16) next = argmaxRows(await run(cache, [[next]]), 1)[0];
    }
  }

  // Decode: batch sequences, a 16-token prompt each, one warm-up step, then timed steps.
  const decode: Array<{ batch: number; tokensPerSecond: number; msPerStep: number }> = [];
  for (const batch of values.batches!.split(',').map(Number)) {
    const cache = new Cache(batch, 16 + decodeTokens + 1);
    let next = argmaxRows(await run(cache, Array.from({ length: batch }, (_, i) => randomTokens(16, 100 + i, V))), batch);
    next = argmaxRows(await run(cache, next.map((t) => [t])), batch);  // warm-up
    const steps: number[] = [];
    for (let t = 0; t < decodeTokens; t++) {
      const t0 = process.hrtime.bigint();
      next = argmaxRows(await run(cache, next.map((tok) => [tok])), batch);
      steps.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const step = median(steps);
    decode.push({ batch, tokensPerSecond: batch / step, msPerStep: step * 1e3 });
  }
  console.log(JSON.stringify({ engine: 'ONNX Runtime via onnxruntime-node', threads, promptTokens,
    prefillTokensPerSecond: promptTokens / Math.min(...prefill), prefillMedianSeconds: median(prefill), decode, greedy }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

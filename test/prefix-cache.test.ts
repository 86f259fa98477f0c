// Paged KV memory and the prefix cache (cpp/kv_pool.h, docs/design.md): the
// same workload through the scheduler with the cache on and off gives the
// same greedy tokens, sampled log-probs and echoed prompt log-probs on every
// architecture (shared and unshared prompts, adapters, a cancellation), the
// paged ones and block_recurrent (state copies) taking cached tokens; n
// choices prefill their prompt once; a
// tiny --kv-memory preempts and still completes every request with the
// tokens of an unbounded run.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadAdapter } from '../src/engine/adapters';
import { Scheduler, SchedulerOptions, SequenceSpec } from '../src/engine/scheduler';
import { Engine, LoadOptions, NativeEngine, SequenceParams } from '../src/native';
import { post, start } from './http.helpers';

const FIXTURES = path.join(__dirname, 'fixtures');
const ADAPTERS = path.join(FIXTURES, 'adapters');

interface Job {
  prompt: number[];
  params: SequenceParams;
  maxTokens: number;
  n?: number;
  echo?: boolean;
  /** Cancel after this many tokens. */
  cancelAfter?: number;
}
interface Out {
  tokens: number[];
  logprobs: number[];
  prompt: Array<number | null>;
  /** Prompt log-probs the listener got, repeats included. */
  promptReports: number;
  reason: string;
}

function ids(seed: number, n: number, vocab = 250): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return 1 + (x % vocab);
  });
}

/** Runs every job through one scheduler at once; resolves with each sequence's output. */
async function run(engine: NativeEngine, jobs: Job[], opts: Partial<SchedulerOptions> = {}): Promise<{ outs: Out[][]; s: Scheduler }> {
  const s = new Scheduler(engine, { requestTimeoutMs: 0, maxBatch: 8, stepTokens: 96, ...opts });
  const outs = await Promise.all(
    jobs.map((job) => {
      const res: Out[] = [];
      const specs: SequenceSpec[] = Array.from({ length: job.n ?? 1 }, () => {
        const o: Out = { tokens: [], logprobs: [], prompt: [], promptReports: 0, reason: '' };
        res.push(o);
        return {
          prompt: job.prompt,
          params: job.params,
          maxTokens: job.maxTokens,
          promptLogprobs: job.echo === true,
          listener: {
            onPromptLogprobs(start, lps) {
              o.promptReports += lps.length;
              for (let j = 0; j < lps.length; j++) o.prompt[start + j] = Number.isNaN(lps[j]) ? null : lps[j];
            },
            onToken(token, logprob) {
              o.tokens.push(token);
              o.logprobs.push(logprob);
              if (job.cancelAfter !== undefined && o.tokens.length >= job.cancelAfter) queueMicrotask(() => req.cancel());
              return false;
            },
            onFinish(reason) {
              o.reason = reason;
            },
          },
        };
      });
      const req = s.submit(specs);
      return req.done.then(() => res);
    }),
  );
  return { outs, s };
}

/** The largest log-prob difference (sampled and echoed) of two runs. */
function maxDiff(a: Out[][], b: Out[][]): number {
  let d = 0;
  a.forEach((ai, i) =>
    ai.forEach((x, k) => {
      const y = b[i][k];
      x.logprobs.forEach((lp, j) => (d = Math.max(d, Math.abs(lp - y.logprobs[j]))));
      x.prompt.forEach((lp, j) => (d = Math.max(d, lp === null ? 0 : Math.abs(lp - y.prompt[j]!))));
    }),
  );
  return d;
}

function expectSame(a: Out[][], b: Out[][], tolerance = 1e-6): void {
  if (process.env.ROOST_PRINT_DIFF) process.stdout.write(`max log-prob difference ${maxDiff(a, b)}\n`);
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++)
    for (let k = 0; k < a[i].length; k++) {
      const x = a[i][k], y = b[i][k];
      expect([i, k, x.reason]).toEqual([i, k, y.reason]);
      expect([i, k, x.tokens]).toEqual([i, k, y.tokens]);
      for (let j = 0; j < x.logprobs.length; j++) expect(Math.abs(x.logprobs[j] - y.logprobs[j])).toBeLessThanOrEqual(tolerance);
      expect(x.prompt.length).toBe(y.prompt.length);
      for (let j = 0; j < x.prompt.length; j++) {
        if (y.prompt[j] === null) expect(x.prompt[j]).toBeNull();
        else expect(Math.abs(x.prompt[j]! - y.prompt[j]!)).toBeLessThanOrEqual(tolerance);
      }
    }
}

const ARCHS = ['gpt2-tiny', 'gpt2-rotary', 'bigbird-tiny', 'opt-postln-proj', 'opt-preln', 'xglm-odd', 'llama-gqa2', 'qwen2-mha3', 'mistral-window', 'perceiver-tiny', 'recurrent-tiny'];
// The architectures whose K/V live in the paged pool (the others keep per-sequence state).
// perceiver_ar pages its layer-0 K/V (what a prefix alone determines) and rebuilds its latent window.
const PAGED = ['gpt2-tiny', 'gpt2-rotary', 'bigbird-tiny', 'opt-postln-proj', 'opt-preln', 'xglm-odd', 'llama-gqa2', 'qwen2-mha3', 'perceiver-tiny'];
const adaptersFor = (base: string): string[] =>
  fs
    .readdirSync(ADAPTERS)
    .filter((n) => fs.existsSync(path.join(ADAPTERS, n, 'golden.json')))
    .filter((n) => JSON.parse(fs.readFileSync(path.join(ADAPTERS, n, 'golden.json'), 'utf8')).base === base)
    .sort();

async function load(base: string, opts: LoadOptions): Promise<NativeEngine> {
  const e = await Engine.load(path.join(FIXTURES, base), { threads: 1, ...opts });
  for (const n of adaptersFor(base)) loadAdapter(e, n, path.join(ADAPTERS, n), path.join(FIXTURES, base));
  return e;
}

describe('prefix cache on and off give the same outputs', () => {
  test.each(ARCHS)('%s', async (base) => {
    const on = await load(base, { prefixCache: true });
    const off = await load(base, { prefixCache: false });
    const shared = ids(7, 70);
    const adapters = adaptersFor(base);
    const greedy: SequenceParams = { temperature: 0 };
    const jobs: Job[] = [
      { prompt: shared.concat(ids(1, 9)), params: greedy, maxTokens: 6 },
      { prompt: shared.concat(ids(2, 5)), params: greedy, maxTokens: 6 },
      { prompt: ids(3, 80), params: greedy, maxTokens: 6 }, // unshared
      { prompt: shared.concat(ids(4, 3)), params: greedy, maxTokens: 6, echo: true }, // echo: computed in full
      { prompt: shared.concat(ids(5, 7)), params: greedy, maxTokens: 20, cancelAfter: 2 },
      { prompt: shared.concat(ids(6, 4)), params: { temperature: 1, seed: 42 }, maxTokens: 6, n: 3 },
      ...adapters.map((a, i) => ({ prompt: shared.concat(ids(10 + i, 6)), params: { temperature: 0, adapter: a }, maxTokens: 6 })),
      ...adapters.map((a, i) => ({ prompt: shared.concat(ids(20 + i, 6)), params: { temperature: 0, adapter: a }, maxTokens: 6 })),
    ];
    // block_recurrent keeps copies of its state at block boundaries (cpp/state_cache.h);
    // a sliding window caches nothing (docs/design.md says why).
    const copied = base.startsWith('recurrent');
    // perceiver_ar's echo entries before a prompt's last step are those of
    // that step's cut (docs/models.md), which cached tokens riding beyond the
    // budget move: its prompts run whole, one step each (the next test cuts
    // them, without echo).
    const stepTokens = base.startsWith('perceiver') ? 1024 : 96;
    // Twice each: the second round finds the first round's blocks cached.
    const first = await run(on, jobs, { stepTokens });
    const second = await run(on, jobs, { stepTokens });
    const ref = await run(off, jobs, { stepTokens });
    // Batch invariance (docs/design.md): a row's result does not depend on the
    // pass that holds it, so the cache (which runs fewer rows, cut elsewhere)
    // changes no bit.
    const tol = 0;
    expectSame(first.outs, ref.outs, tol);
    expectSame(second.outs, ref.outs, tol);
    expect(ref.s.totals.prefixHitTokens).toBe(0);
    const paged = on.stats().kvBlockRows > 0;
    expect(paged).toBe(PAGED.includes(base));
    // Every prompt token is computed or taken from the cache; the second round finds the first's blocks.
    expect(first.s.totals.prefillComputed + first.s.totals.prefixHitTokens).toBe(ref.s.totals.prefillComputed);
    expect(second.s.totals.prefillComputed + second.s.totals.prefixHitTokens).toBe(ref.s.totals.prefillComputed);
    if (paged || copied) expect(second.s.totals.prefillComputed).toBeLessThan(ref.s.totals.prefillComputed / 2);
    else expect(first.s.totals.prefixHitTokens + second.s.totals.prefixHitTokens).toBe(0);
    expect(on.stats().kvBlocksUsed).toBe(0); // every sequence gave its blocks back
  });
});

describe('perceiver_ar: cached layer-0 blocks under any step cut', () => {
  test.each([32, 96])('stepTokens %i: the tokens and log-probs of the cache off, bit for bit', async (stepTokens) => {
    const on = await load('perceiver-tiny', { prefixCache: true });
    const off = await load('perceiver-tiny', { prefixCache: false });
    const shared = ids(7, 150); // two full blocks and a part
    const jobs: Job[] = [
      { prompt: shared.concat(ids(1, 9)), params: { temperature: 0 }, maxTokens: 6 },
      { prompt: shared.slice(0, 131), params: { temperature: 0 }, maxTokens: 6 }, // 3 after the hit: the window (8) reaches into it
      { prompt: shared.slice(0, 128), params: { temperature: 1, seed: 3 }, maxTokens: 6, n: 3 }, // whole blocks: the last token runs alone
      { prompt: ids(3, 80), params: { temperature: 0 }, maxTokens: 6 },
    ];
    const first = await run(on, jobs, { stepTokens });
    const second = await run(on, jobs, { stepTokens });
    const ref = await run(off, jobs, { stepTokens });
    expectSame(first.outs, ref.outs, 0);
    expectSame(second.outs, ref.outs, 0);
    expect(second.s.totals.prefillComputed + second.s.totals.prefixHitTokens).toBe(ref.s.totals.prefillComputed);
    expect(second.s.totals.prefixHitTokens).toBeGreaterThan(ref.s.totals.prefillComputed / 2);
    expect(on.stats().kvBlocksUsed).toBe(0);
  });
});

describe('n choices share their prompt blocks', () => {
  test('the first choice prefills, the others take its blocks', async () => {
    const e = await load('gpt2-tiny', {});
    const prompt = ids(9, 100);
    const { outs, s } = await run(e, [{ prompt, params: { temperature: 1, seed: 5 }, maxTokens: 4, n: 4 }], { prefixCache: true });
    expect(outs[0].map((o) => o.reason)).toEqual(['length', 'length', 'length', 'length']);
    expect(s.totals.prefixHitTokens).toBe(3 * 64);
    expect(s.totals.prefillComputed).toBe(4 * 100 - 3 * 64);
  });

  test('block_recurrent: the others take the first choice\'s state copy at its last block boundary', async () => {
    const e = await load('recurrent-tiny', {});
    expect(e.stats().prefixCache).toBe(true); // what the server hands the scheduler
    const prompt = ids(9, 100);
    const job: Job = { prompt, params: { temperature: 1, seed: 5 }, maxTokens: 4, n: 4 };
    const { outs, s } = await run(e, [job], { prefixCache: true });
    const off = await run(await load('recurrent-tiny', { prefixCache: false }), [job]);
    expectSame(outs, off.outs, 0);
    expect(s.totals.prefixHitTokens).toBe(3 * 64);
    expect(s.totals.prefillComputed).toBe(4 * 100 - 3 * 64);
    expect(e.stats().stateCacheBytes).toBeGreaterThan(0);
  });

  test('engines that reuse nothing say so', async () => {
    expect((await load('mistral-window', {})).stats().prefixCache).toBe(false);
    for (const base of ['gpt2-tiny', 'recurrent-tiny']) expect((await load(base, { prefixCache: false })).stats().prefixCache).toBe(false);
    for (const base of ['bigbird-tiny', 'perceiver-tiny']) expect((await load(base, {})).stats().prefixCache).toBe(true);
  });

  test('on a prompt of whole blocks the other choices run its last token only, with the tokens of the cache off', async () => {
    const prompt = ids(11, 128); // two blocks
    const job: Job = { prompt, params: { temperature: 1, seed: 9 }, maxTokens: 5, n: 4 };
    const on = await run(await load('llama-gqa2', {}), [job], { prefixCache: true, stepTokens: 512 });
    const off = await run(await load('llama-gqa2', { prefixCache: false }), [job], { stepTokens: 512 });
    expectSame(on.outs, off.outs);
    expect(on.s.totals.prefixHitTokens).toBe(3 * 127); // block 0 shared, block 1 copied but its last row
    expect(on.s.totals.prefillComputed).toBe(128 + 3);
  });
});

describe('a cached prefix is fed beyond the step budget', () => {
  test.each(['llama-gqa2', 'recurrent-tiny'])('%s: a 256-token cached prefix and its question in one step, same tokens', async (base) => {
    const prefix = ids(31, 256);
    const warm: Job = { prompt: prefix.concat(ids(32, 9)), params: { temperature: 0 }, maxTokens: 2 };
    const ask: Job = { prompt: prefix.concat(ids(33, 20)), params: { temperature: 0 }, maxTokens: 2 };
    const on = await load(base, {});
    await run(on, [warm], { stepTokens: 96 });
    const hit = await run(on, [ask], { stepTokens: 96 });
    const ref = await run(await load(base, { prefixCache: false }), [ask], { stepTokens: 96 });
    expectSame(hit.outs, ref.outs);
    expect(hit.s.totals.prefixHitTokens).toBe(256);
    expect(hit.s.totals.prefillComputed).toBe(20);
    expect(hit.s.totals.steps).toBe(2); // the prompt (256 cached + 20) and one decode
    expect(ref.s.totals.steps).toBe(4); // 96 + 96 + 84, then one decode
  });
});

describe('a KV memory too small for the load', () => {
  test('preempts, completes every request with the unbounded run tokens, frees every block', async () => {
    const big = await load('llama-gqa2', { prefixCache: false });
    const blockBytes = big.stats().kvBlockBytes;
    expect(big.stats().kvBlockRows).toBe(64);
    // 8 sequences growing to 5 blocks (10 + 250 positions): 40 blocks; the pool holds 6.
    const jobs: Job[] = Array.from({ length: 8 }, (_, i) => ({
      prompt: ids(100 + i, 10),
      params: i % 2 ? { temperature: 0 } : { temperature: 0.9, seed: 1000 + i },
      maxTokens: 250,
    }));
    const small = await load('llama-gqa2', { kvMemory: 6 * blockBytes, prefixCache: false });
    const ref = await run(big, jobs, { maxBatch: 8 });
    const tight = await run(small, jobs, { maxBatch: 8 });
    // Same tokens (seeded ones too); log-probs within 1e-5: a preempted
    // sequence's decoded positions are recomputed as input rows, which take the
    // GEMM-shaped attention tile where their decode took the one-query kernel
    // (docs/design.md, "Batch invariance").
    expectSame(tight.outs, ref.outs, 1e-5);
    for (const o of tight.outs) expect(o[0].reason).toBe('length');
    expect(tight.s.totals.preemptions).toBeGreaterThan(0);
    expect(ref.s.totals.preemptions).toBe(0);
    expect(small.stats().kvBlocksUsed).toBe(0);
    expect(small.stats().kvBlocksUsed + small.stats().kvBlocksCached + small.stats().kvBlocksFree).toBe(6);
  });

  test('a preemption in prefill reports each echoed prompt log-prob once, equal to an unbounded run', async () => {
    const big = await load('llama-gqa2', { prefixCache: false });
    const blockBytes = big.stats().kvBlockBytes;
    // Prompts of 150 (3 blocks) fed 32 tokens a step by 2-3 sequences at once: the pool of 5 fills mid-prefill.
    const jobs: Job[] = Array.from({ length: 3 }, (_, i) => ({ prompt: ids(200 + i, 150), params: { temperature: 0 }, maxTokens: 60, echo: true }));
    const small = await load('llama-gqa2', { kvMemory: 5 * blockBytes, prefixCache: false });
    const ref = await run(big, jobs, { maxBatch: 3, stepTokens: 32 });
    const tight = await run(small, jobs, { maxBatch: 3, stepTokens: 32 });
    expectSame(tight.outs, ref.outs, 1e-5);
    for (const o of tight.outs) expect([o[0].prompt.length, o[0].promptReports]).toEqual([150, 150]);
    expect(tight.s.totals.preemptions).toBeGreaterThan(0);
    expect(small.stats().kvBlocksUsed).toBe(0);
  });

  test.each([false, true])('perceiver_ar (prefix cache %s): its one-layer blocks count against --kv-memory; a preempted sequence replays its decode', async (prefixCache) => {
    const big = await load('perceiver-tiny', { prefixCache });
    expect(big.stats().kvBlockBytes).toBe(64 * 2 * 64 * 4); // 64 positions x (K, V) x C = 64 x F32, layer 0 only
    const jobs: Job[] = Array.from({ length: 8 }, (_, i) => ({
      prompt: ids(100 + i, 10),
      params: i % 2 ? { temperature: 0 } : { temperature: 0.9, seed: 1000 + i },
      maxTokens: 250,
    }));
    const small = await load('perceiver-tiny', { kvMemory: 6 * big.stats().kvBlockBytes, prefixCache });
    const ref = await run(big, jobs, { maxBatch: 8, prefixCache });
    const tight = await run(small, jobs, { maxBatch: 8, prefixCache });
    // Bit for bit: the replay prefills the prompt, then feeds each sampled
    // token as the sliding decode step it was (replay: the decode row's
    // kernels, no cached block), so the state is the one its decode had.
    expectSame(tight.outs, ref.outs, 0);
    for (const o of tight.outs) expect(o[0].reason).toBe('length');
    expect(ref.s.totals.preemptions).toBe(0);
    expect(tight.s.totals.preemptions).toBeGreaterThan(0);
    expect(small.stats().kvBlocksUsed).toBe(0);
    expect(small.stats().kvBlocksUsed + small.stats().kvBlocksCached + small.stats().kvBlocksFree).toBe(6);
  });

  test('a prompt larger than all of the KV memory fails with a clear error', async () => {
    const e = await load('gpt2-tiny', { kvMemory: 2 * 2 * 64 * 64 * 4 });
    const { outs } = await run(e, [{ prompt: ids(3, 100), params: { temperature: 0 }, maxTokens: 2 }]);
    expect(outs[0][0].reason).toBe('error');
  });
});

describe('GET /metrics and --no-prefix-cache', () => {
  const metric = (text: string, name: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`no ${name} in /metrics`);
    return Number(line.split(' ')[1]);
  };
  test.each([true, false])('prefixCache %s: blocks by state, prefill computed, hits, preemptions', async (cache) => {
    const s = await start(path.join(FIXTURES, 'gpt2-tiny'), { prefixCache: cache });
    try {
      const shared = ids(5, 70);
      // One after the other: the second finds the first's full block (64 tokens) when the cache is on.
      for (const q of [1, 2]) {
        const r = await post(s.url, { prompt: shared.concat(ids(q, 5)), max_tokens: 2, temperature: 0 });
        expect(r.status).toBe(200);
      }
      const text = await (await fetch(`${s.url}/metrics`)).text();
      expect(metric(text, 'roost_prefix_cache_hit_tokens_total')).toBe(cache ? 64 : 0);
      expect(metric(text, 'roost_prefill_tokens_computed_total')).toBe(2 * 75 - (cache ? 64 : 0));
      expect(metric(text, 'roost_preemptions_total')).toBe(0);
      expect(metric(text, 'roost_kv_blocks{state="used"}')).toBe(0);
      // Each request filled one full block: both cached (equal keys: one block) or both freed.
      expect(metric(text, 'roost_kv_blocks{state="cached"}')).toBe(cache ? 1 : 0);
      const st = s.holder.runtime!.engine.stats();
      expect(metric(text, 'roost_kv_blocks{state="free"}')).toBe(st.kvBlocksFree);
      expect(st.kvBlocksFree + st.kvBlocksCached).toBeGreaterThan(1000);
    } finally {
      await s.close(0);
    }
  });
});

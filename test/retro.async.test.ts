// Retrieval off the critical path (src/engine/scheduler.ts giveNeighbours): a
// retro sequence whose neighbours come as a promise sits out of steps until
// they arrive, while the other sequences keep stepping; once given, it goes on
// exactly as when its neighbours came at once. Model: test/fixtures/retro/chunk8
// (m 8, k 2, bytes), the real engine.
import * as path from 'node:path';

import { load, type Loaded } from '../src/cli/model';
import { Scheduler, type FinishReason, type RetroNeighbours, type SequenceSpec } from '../src/engine/scheduler';

const MODEL = path.join(__dirname, 'fixtures', 'retro', 'chunk8');
const M = 8;
const K = 2;

/** Fixed neighbours of a chunk: k * 2m tokens made from its own tokens, so each chunk's differ. */
function neighboursOf(tokens: number[]): number[] {
  return Array.from({ length: K * 2 * M }, (_, j) => (tokens[j % M] * 7 + j * 13) % 256);
}

interface Out {
  tokens: number[];
  logprobs: number[];
  finish?: FinishReason;
  error?: string;
}

function spec(prompt: string, maxTokens: number, onToken: (n: number) => void, retro?: SequenceSpec['retro']) {
  const out: Out = { tokens: [], logprobs: [] };
  const s: SequenceSpec = {
    prompt: [...Buffer.from(prompt)],
    params: { temperature: 0.7, seed: 11n },
    maxTokens,
    promptLogprobs: false,
    ...(retro ? { retro } : {}),
    listener: {
      onToken(t, lp) {
        out.tokens.push(t);
        out.logprobs.push(lp);
        onToken(out.tokens.length);
        return false;
      },
      onFinish(reason, error) {
        out.finish = reason;
        out.error = error?.message;
      },
    },
  };
  return { s, out };
}

let l: Loaded;
beforeAll(async () => {
  l = await load({ model: MODEL, device: 'cpu', threads: 1 });
});

/**
 * X (retro, 40 tokens) and Y (no neighbours, 200 tokens) in one scheduler. With
 * `slow`, each of X's retrievals is a promise that settles only once Y has
 * sampled 3 more tokens (or, if Y were blocked, after 2 s: recorded as a failure).
 */
async function run(slow: boolean) {
  const sched = new Scheduler(l.engine, { maxBatch: 4, requestTimeoutMs: 0 });
  let yCount = 0;
  let xCount = 0;
  const waits: Array<{ chunk: number; yAt: number; xAt: number; stepsAt: number; settle: () => void; timedOut?: boolean }> = [];
  const pending: Array<{ chunk: number; yDuring: number; xDuring: number; steps: number; timedOut: boolean }> = [];
  const settleReady = () => {
    for (const w of waits.splice(0)) {
      if (yCount - w.yAt >= 3) w.settle();
      else waits.push(w);
    }
  };
  const retro: SequenceSpec['retro'] = {
    chunkSize: M,
    neighbours(chunk, tokens) {
      if (!slow) return neighboursOf(tokens);
      return new Promise<RetroNeighbours>((resolve) => {
        const w = { chunk, yAt: yCount, xAt: xCount, stepsAt: sched.totals.steps, timedOut: false, settle: () => {} };
        const timer = setTimeout(() => ((w.timedOut = true), w.settle()), 2000);
        w.settle = () => {
          clearTimeout(timer);
          const i = waits.indexOf(w);
          if (i >= 0) waits.splice(i, 1);
          pending.push({ chunk, yDuring: yCount - w.yAt, xDuring: xCount - w.xAt, steps: sched.totals.steps - w.stepsAt, timedOut: w.timedOut });
          resolve(neighboursOf(tokens));
        };
        waits.push(w);
      });
    },
  };
  const x = spec('And the waters of the', 40, (n) => (xCount = n), retro);
  const y = spec('In the beginning God created', 200, (n) => {
    yCount = n;
    settleReady();
  });
  await Promise.all([sched.submit([x.s]).done, sched.submit([y.s]).done]);
  return { x: x.out, y: y.out, pending };
}

test('a sequence waiting for its neighbours does not hold the others back, and continues as with neighbours given at once', async () => {
  const sync = await run(false);
  const slow = await run(true);
  // X fed its 21 prompt bytes and 39 sampled ones: chunks 0..6 complete, each retrieved once, in order.
  const chunks = Math.floor((21 + 39) / M);
  expect(slow.pending.map((p) => p.chunk)).toEqual(Array.from({ length: chunks }, (_, u) => u));
  for (const p of slow.pending) {
    expect(p.timedOut).toBe(false); // Y kept stepping: each wait ended by Y's 3 tokens, not by the 2 s guard
    expect(p.yDuring).toBe(3);
    expect(p.xDuring).toBe(0); // X sat out
    expect(p.steps).toBeGreaterThanOrEqual(3);
  }
  for (const o of [sync.x, sync.y, slow.x, slow.y]) expect([o.finish, o.error]).toEqual(['length', undefined]);
  expect(slow.x.tokens).toEqual(sync.x.tokens);
  expect(slow.y.tokens).toEqual(sync.y.tokens);
  for (let i = 0; i < sync.x.logprobs.length; i++) expect(Math.abs(slow.x.logprobs[i] - sync.x.logprobs[i])).toBeLessThanOrEqual(1e-5);
  // The neighbours are read: without them X's log-probs differ.
  const none = await (async () => {
    const sched = new Scheduler(l.engine, { maxBatch: 4, requestTimeoutMs: 0 });
    const x = spec('And the waters of the', 40, () => {});
    await sched.submit([x.s]).done;
    return x.out;
  })();
  expect(none.logprobs.some((lp, i) => none.tokens[i] !== sync.x.tokens[i] || Math.abs(lp - sync.x.logprobs[i]) > 1e-3)).toBe(true);
});

test('a retrieval that fails ends only its own sequence, with the reason', async () => {
  const sched = new Scheduler(l.engine, { maxBatch: 4, requestTimeoutMs: 0 });
  const x = spec('And the waters of the', 40, () => {}, { chunkSize: M, neighbours: () => Promise.reject(new Error('the datastore went away')) });
  const y = spec('In the beginning God created', 20, () => {});
  await Promise.all([sched.submit([x.s]).done, sched.submit([y.s]).done]);
  expect([x.out.finish, x.out.error]).toEqual(['error', 'the retrieval for chunk 0 failed: the datastore went away']);
  expect(x.out.tokens).toEqual([]); // chunk 0 completes in the prompt (21 bytes): nothing was sampled
  expect([y.out.finish, y.out.tokens.length]).toEqual(['length', 20]);
});

// Scheduler unit tests against a fake engine: continuous batching, chunked
// prefill under the token budget, limits, cancellation, pause, timeout, drain.
import { RequestError } from '../src/engine/errors';
import { FinishReason, Scheduler, SequenceListener, SequenceSpec } from '../src/engine/scheduler';
import { FakeEngine } from './scheduler.fake-engine';

interface Trace {
  tokens: number[];
  finish?: FinishReason;
  error?: RequestError;
  prompt: Array<[number, number]>;
  admitted: boolean;
}

function spec(prompt: number[], maxTokens: number, extra: Partial<SequenceListener> & { stopAt?: number; promptLogprobs?: boolean } = {}) {
  const trace: Trace = { tokens: [], prompt: [], admitted: false };
  const s: SequenceSpec = {
    prompt,
    params: { temperature: 0 },
    maxTokens,
    promptLogprobs: extra.promptLogprobs ?? false,
    listener: {
      onAdmitted: () => (trace.admitted = true),
      onPromptLogprobs: (start, lps) => trace.prompt.push([start, lps.length]),
      onToken: (t) => {
        trace.tokens.push(t);
        return t === extra.stopAt;
      },
      onFinish: (reason, error) => {
        trace.finish = reason;
        trace.error = error;
      },
    },
  };
  return { s, trace };
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

describe('Scheduler', () => {
  test('runs a request to max_tokens and frees its sequence', async () => {
    const eng = new FakeEngine();
    const sch = new Scheduler(eng, { maxBatch: 4 });
    const a = spec([1, 2, 3], 4);
    const req = sch.submit([a.s]);
    await req.done;
    expect(a.trace.tokens).toEqual([4, 5, 6, 7]);
    expect(a.trace.finish).toBe('length');
    expect(eng.live.size).toBe(0);
    expect(eng.steps.length).toBe(4); // prefill + sample, then 3 decode steps
    expect(eng.steps[0][0]).toMatchObject({ tokens: [1, 2, 3], sample: true });
    expect(eng.steps[1][0]).toMatchObject({ tokens: [4], sample: true });
  });

  test('a request stops when its listener says so, and the stop token is not fed back', async () => {
    const eng = new FakeEngine();
    const sch = new Scheduler(eng);
    const a = spec([10], 50, { stopAt: 13 });
    await sch.submit([a.s]).done;
    expect(a.trace.tokens).toEqual([11, 12, 13]);
    expect(a.trace.finish).toBe('stop');
    expect(eng.steps.flat().some((r) => r.tokens.includes(13))).toBe(false);
  });

  test('new requests join a running batch between steps', async () => {
    const eng = new FakeEngine(100, 5);
    const sch = new Scheduler(eng, { maxBatch: 8 });
    const a = spec([1], 20);
    const ra = sch.submit([a.s]);
    while (a.trace.tokens.length < 2) await new Promise((r) => setTimeout(r, 1));
    expect(a.trace.tokens.length).toBeLessThan(20);
    const b = spec([50], 3);
    await sch.submit([b.s]).done;
    await ra.done;
    // Some step ran both: a decoding while b prefilled or decoded.
    const both = eng.steps.filter((st) => st.length === 2);
    expect(both.length).toBeGreaterThan(0);
    expect(a.trace.tokens).toHaveLength(20);
    expect(b.trace.tokens).toEqual([51, 52, 53]);
  });

  test('long prompts prefill in chunks under the step budget while decodes keep flowing', async () => {
    const eng = new FakeEngine(10_000, 2);
    const sch = new Scheduler(eng, { stepTokens: 64 });
    const d = spec([1], 30);
    const rd = sch.submit([d.s]);
    await new Promise((r) => setTimeout(r, 15));
    const long = spec(range(300, 100), 2, { promptLogprobs: true });
    await sch.submit([long.s]).done;
    await rd.done;
    for (const st of eng.steps) expect(st.reduce((n, r) => n + r.tokens.length, 0)).toBeLessThanOrEqual(64);
    const chunks = eng.steps.flatMap((st) => st.filter((r) => r.tokens.length > 1));
    expect(chunks.length).toBeGreaterThanOrEqual(5); // 300 tokens / (64 - 1 decode) per step
    expect(chunks.map((c) => c.tokens.length).reduce((a, b) => a + b)).toBe(300);
    expect(chunks.slice(0, -1).every((c) => !c.sample)).toBe(true);
    expect(chunks[chunks.length - 1].sample).toBe(true);
    // Every step that prefilled while d was decoding also carried d's token.
    const dSeq = eng.steps[0][0].seq;
    const prefillSteps = eng.steps.filter((st) => st.some((r) => r.tokens.length > 1));
    const withD = prefillSteps.filter((st) => st.some((r) => r.seq === dSeq));
    expect(withD.length).toBeGreaterThan(0);
    // Prompt log-probs arrived chunk by chunk, contiguous from 0.
    let next = 0;
    for (const [start, n] of long.trace.prompt) {
      expect(start).toBe(next);
      next += n;
    }
    expect(next).toBe(300);
    expect(long.trace.tokens).toHaveLength(2);
  });

  test('max_tokens 0 runs the prompt only', async () => {
    const eng = new FakeEngine();
    const sch = new Scheduler(eng);
    const a = spec([5, 6, 7], 0, { promptLogprobs: true });
    await sch.submit([a.s]).done;
    expect(a.trace.tokens).toEqual([]);
    expect(a.trace.finish).toBe('length');
    expect(eng.steps[0][0]).toMatchObject({ sample: false, promptLogprobs: true });
    expect(a.trace.prompt).toEqual([[0, 3]]);
  });

  test('maxBatch bounds sequences per step; the rest wait', async () => {
    const eng = new FakeEngine();
    const sch = new Scheduler(eng, { maxBatch: 2 });
    const xs = [spec([1], 5), spec([2], 5), spec([3], 5)];
    const reqs = xs.map((x) => sch.submit([x.s]));
    await new Promise((r) => setTimeout(r, 0));
    expect(sch.activeSequences).toBeLessThanOrEqual(2);
    expect(sch.waitingRequests).toBe(1);
    await Promise.all(reqs.map((r) => r.done));
    for (const st of eng.steps) expect(st.length).toBeLessThanOrEqual(2);
    for (const x of xs) expect(x.trace.tokens).toHaveLength(5);
  });

  test('a full queue refuses with overloaded and a retry hint', async () => {
    const eng = new FakeEngine();
    const sch = new Scheduler(eng, { maxBatch: 1, maxQueue: 1 });
    const r1 = sch.submit([spec([1], 3).s]);
    const r2 = sch.submit([spec([1], 3).s]);
    let err: unknown;
    try {
      sch.submit([spec([1], 3).s]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).code).toBe('overloaded');
    expect((err as RequestError).retryAfter).toBeGreaterThan(0);
    expect((err as RequestError).message).toMatch(/max-queue 1/);
    await Promise.all([r1.done, r2.done]);
  });

  test('cancel frees the sequence at once and ignores its in-flight result', async () => {
    const eng = new FakeEngine(100, 10);
    const sch = new Scheduler(eng);
    const a = spec([1], 1000);
    const req = sch.submit([a.s]);
    await new Promise((r) => setTimeout(r, 35));
    expect(eng.live.size).toBe(1);
    const seen = a.trace.tokens.length;
    req.cancel();
    expect(a.trace.finish).toBe('cancelled');
    await req.done;
    await new Promise((r) => setTimeout(r, 25)); // the running step ends
    expect(eng.live.size).toBe(0);
    expect(eng.freed).toHaveLength(1);
    expect(a.trace.tokens.length).toBe(seen);
    expect(sch.activeSequences).toBe(0);
  });

  test('cancelling a waiting request removes it from the queue', async () => {
    const eng = new FakeEngine();
    const sch = new Scheduler(eng, { maxBatch: 1 });
    const r1 = sch.submit([spec([1], 5).s]);
    const w = spec([1], 5);
    const r2 = sch.submit([w.s]);
    await new Promise((r) => setTimeout(r, 0)); // r1 is admitted, r2 waits
    expect(sch.waitingRequests).toBe(1);
    r2.cancel();
    expect(w.trace.finish).toBe('cancelled');
    expect(w.trace.admitted).toBe(false);
    expect(sch.waitingRequests).toBe(0);
    await r1.done;
    expect(eng.freed).toHaveLength(1);
  });

  test('a paused request sits out of steps and resumes', async () => {
    const eng = new FakeEngine(100, 2);
    const sch = new Scheduler(eng);
    const a = spec([1], 10);
    const req = sch.submit([a.s]);
    await new Promise((r) => setTimeout(r, 10));
    req.setPaused(true);
    await new Promise((r) => setTimeout(r, 10));
    const at = a.trace.tokens.length;
    await new Promise((r) => setTimeout(r, 20));
    expect(a.trace.tokens.length).toBe(at);
    expect(a.trace.finish).toBeUndefined();
    req.setPaused(false);
    await req.done;
    expect(a.trace.tokens).toHaveLength(10);
  });

  test('the per-request timeout ends a request with request_timeout', async () => {
    const eng = new FakeEngine(100, 5);
    const sch = new Scheduler(eng, { requestTimeoutMs: 30 });
    const a = spec([1], 1_000_000);
    await sch.submit([a.s]).done;
    expect(a.trace.finish).toBe('error');
    expect(a.trace.error?.code).toBe('request_timeout');
    await new Promise((r) => setTimeout(r, 10));
    expect(eng.live.size).toBe(0);
  });

  test('an engine failure ends the sequences of that step and the loop goes on', async () => {
    const eng = new FakeEngine();
    const sch = new Scheduler(eng);
    eng.failNext = true;
    const a = spec([1], 3);
    await sch.submit([a.s]).done;
    expect(a.trace.finish).toBe('error');
    expect(a.trace.error?.code).toBe('engine_error');
    expect(eng.live.size).toBe(0);
    const b = spec([1], 3);
    await sch.submit([b.s]).done;
    expect(b.trace.finish).toBe('length');
  });

  test('a request of several sequences runs them side by side', async () => {
    const eng = new FakeEngine();
    const sch = new Scheduler(eng, { maxBatch: 3 });
    const xs = [spec([1], 4), spec([20], 4), spec([40], 4), spec([60], 4)];
    await sch.submit(xs.map((x) => x.s)).done;
    expect(Math.max(...eng.steps.map((s) => s.length))).toBe(3);
    expect(xs.map((x) => x.trace.tokens[0])).toEqual([2, 21, 41, 61]);
  });

  test('drain lets running requests finish, refuses new ones, and cancels at the deadline', async () => {
    const eng = new FakeEngine(100, 2);
    const sch = new Scheduler(eng);
    const quick = spec([1], 3);
    const slow = spec([1], 1_000_000);
    sch.submit([quick.s]);
    sch.submit([slow.s]);
    const drained = sch.drain(400); // ample for 3 short steps on a loaded machine
    expect(() => sch.submit([spec([1], 1).s])).toThrow(/shutting down/);
    await drained;
    expect(quick.trace.finish).toBe('length');
    expect(slow.trace.finish).toBe('error');
    expect(slow.trace.error?.code).toBe('shutting_down');
    await new Promise((r) => setTimeout(r, 10));
    expect(eng.live.size).toBe(0);
  });
});

test('a paused request holds no slot: a queued one runs to the end while it is paused, and cancelling it frees its state', async () => {
  const eng = new FakeEngine();
  const sch = new Scheduler(eng, { maxBatch: 1, requestTimeoutMs: 0 });
  const a = spec([1], 1_000_000);
  const running = sch.submit([a.s]);
  while (a.trace.tokens.length < 3) await new Promise((r) => setTimeout(r, 1));
  running.setPaused(true); // a reader that stopped reading
  const b = spec([5], 2);
  await sch.submit([b.s]).done;
  expect(b.trace).toMatchObject({ tokens: [6, 7], finish: 'length' });
  expect(a.trace.finish).toBeUndefined();
  running.cancel();
  await running.done;
  expect(a.trace.finish).toBe('cancelled');
  expect(eng.live.size).toBe(0);
}, 2000);

/** Most sequences of an n = 8 request in one step beside a one-sequence request (prompt [9]), under maxRequestShare. */
async function bigBesideSmall(maxRequestShare: number): Promise<number> {
  const eng = new FakeEngine();
  const sch = new Scheduler(eng, { maxBatch: 8, requestTimeoutMs: 0, maxRequestShare });
  const many = range(8).map(() => spec([1], 6));
  const big = sch.submit(many.map((m) => m.s));
  const small = spec([9], 6);
  const other = sch.submit([small.s]);
  await Promise.all([big.done, other.done]);
  expect(many.every((m) => m.trace.finish === 'length') && small.trace.finish === 'length').toBe(true);
  const smallSeq = eng.steps.flat().find((r) => Array.from(r.tokens)[0] === 9)!.seq;
  return Math.max(...eng.steps.filter((st) => st.some((r) => r.seq === smallSeq)).map((st) => st.length - 1));
}

test('maxRequestShare caps one request at its share of the batch while another wants slots', async () => {
  expect(await bigBesideSmall(0.25)).toBe(2); // floor(0.25 * 8)
  expect(await bigBesideSmall(1)).toBe(7); // the max-min fair split alone: 7 + 1
  expect(() => new Scheduler(new FakeEngine(), { maxRequestShare: 0 })).toThrow('maxRequestShare must be a number above 0 and at most 1 (got 0)');
});

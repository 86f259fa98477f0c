// The native engine through the addon, against the PyTorch reference's
// goldens (test/fixtures/gpt2-*/golden.json, tools/reference/make_fixtures.py):
// prompt log-probs, top-5, greedy continuations; then the engine's own
// invariants (KV-cache decode = full forward, batching = running alone,
// seeded sampling) and its error surface (loader errors, bad step arguments).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Detokenizer } from '../src/engine/detokenizer';
import { loadTokenizer } from '../src/engine/tokenizer';
import { Engine, native, NativeEngine, NativeError } from '../src/native';
import { promptLogprobs, sampleTokens } from './engine.helpers';

const FIXTURES = path.join(__dirname, 'fixtures');

interface GoldenCase {
  name: string;
  tokens: number[];
  decode_matches_forward?: boolean;
  logprobs: Array<number | null>;
  top5: Array<[number, number]>;
}
interface GoldenGreedy {
  prompt: string;
  prompt_tokens: number[];
  max_tokens: number;
  tokens: number[];
  text: string;
  text_valid_utf8: boolean;
}
interface Golden {
  model: string;
  logprob_tolerance: number;
  eos_token_id: number | null;
  cases: GoldenCase[];
  greedy: GoldenGreedy[];
}

function golden(name: string): Golden {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'golden.json'), 'utf8'));
}

function config(name: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'config.json'), 'utf8'));
}

/** Model fixtures: folders with a config.json and a golden.json. */
const MODELS = fs
  .readdirSync(FIXTURES)
  .filter((n) => fs.existsSync(path.join(FIXTURES, n, 'config.json')) && fs.existsSync(path.join(FIXTURES, n, 'golden.json')))
  .sort();

/** Fails with the worst position when two log-prob lists differ by more than tol. */
function expectClose(actual: ArrayLike<number | null>, expected: ArrayLike<number | null>, tol: number, label: string): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    const a = actual[i];
    if (e === null || a === null || Number.isNaN(e) || Number.isNaN(a)) {
      const eNone = e === null || Number.isNaN(e as number);
      const aNone = a === null || Number.isNaN(a as number);
      if (eNone !== aNone) throw new Error(`${label}: entry ${i} is ${a}, expected ${e}`);
      continue;
    }
    const d = Math.abs(a - e);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  if (!(worst <= tol)) throw new Error(`${label}: |difference| ${worst} at entry ${at} exceeds ${tol}`);
}

async function rejection(p: Promise<unknown>): Promise<NativeError> {
  try {
    await p;
  } catch (e) {
    return e as NativeError;
  }
  throw new Error('expected the promise to reject');
}

function randomTokens(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % vocab;
  });
}

const THREADS = 2;

test('model fixtures are present', () => {
  expect(MODELS).toEqual(expect.arrayContaining(['gpt2-tiny', 'gpt2-tok', 'gpt2-bytes', 'gpt2-rotary']));
});

describe.each(MODELS)('%s against the reference', (name) => {
  const g = golden(name);
  // Batch invariance (docs/design.md): how a sequence's input is cut into
  // passes, and what else a pass holds, changes no bit of its results. Not
  // for a sliding window (a pass ending inside the window attends as one
  // task, past it query by query) and perceiver_ar (its latent window is
  // rebuilt by whichever pass ends the input): within 1e-5.
  const cutTol = /^(mistral-window|perceiver)/.test(name) ? 1e-5 : 0;
  const tol = g.logprob_tolerance ?? 1e-4;
  let engine: NativeEngine;

  beforeAll(async () => {
    engine = await Engine.load(path.join(FIXTURES, name), { threads: THREADS });
  });

  test('info() reflects config.json', () => {
    const c = config(name);
    const info = engine.info();
    expect(info.modelType).toBe(c.model_type);
    expect(info.vocabSize).toBe(c.vocab_size);
    // HF's own keys: the Llama family and opt (hidden_size ...), xglm (d_model ...); docs/models.md
    const xglm = c.model_type === 'xglm', hf = c.hidden_size !== undefined || xglm;
    expect(info.nEmbd).toBe(xglm ? c.d_model : hf ? c.hidden_size : c.n_embd);
    expect(info.nLayer).toBe(xglm ? c.num_layers : hf ? c.num_hidden_layers : c.n_layer);
    expect(info.nHead).toBe(xglm ? c.attention_heads : hf ? c.num_attention_heads : c.n_head);
    expect(info.maxContext).toBe((hf ? c.max_position_embeddings : c.n_positions) ?? 0);
    expect(info.eosTokenId).toBe(g.eos_token_id ?? -1);
    expect(info.threads).toBe(THREADS);
    expect(info.isa).toBe(native().isa());
    expect(engine.stats().weightBytes).toBeGreaterThan(0);
  });

  test('prompt log-probs of every golden case within tolerance', async () => {
    for (const c of g.cases) {
      expectClose(await promptLogprobs(engine, c.tokens), c.logprobs, tol, `${name}/${c.name}`);
    }
  });

  test('top-5 after the last token, and the greedy pick', async () => {
    for (const c of g.cases) {
      const seq = engine.createSequence({ temperature: 0, logprobs: 5 });
      const [r] = await engine.step([{ seq, tokens: c.tokens, sample: true }]);
      engine.freeSequence(seq);
      expect(r.sampled).toBe(true);
      const top = r.top!;
      expect(top).toHaveLength(5);
      expectClose(top.map((t) => t[1]), c.top5.map((t) => t[1]), tol, `${name}/${c.name} top-5 log-probs`);
      // ids must agree except where two candidates are within the tolerance of each other
      top.forEach(([id], k) => {
        if (id !== c.top5[k][0]) {
          const other = c.top5.find((t) => t[0] === id);
          expect(other && Math.abs(other[1] - c.top5[k][1]) <= tol).toBe(true);
        }
      });
      expect(r.token).toBe(top[0][0]);
      expect(r.logprob).toBeCloseTo(top[0][1], 6);
    }
  });

  test('greedy continuation equals the reference', async () => {
    for (const gr of g.greedy) {
      const out = await sampleTokens(engine, gr.prompt_tokens, gr.max_tokens, { temperature: 0 });
      expect(out).toEqual(gr.tokens);
      if (gr.text_valid_utf8) {
        const d = new Detokenizer(loadTokenizer(path.join(FIXTURES, name)), { skipSpecialTokens: false });
        expect(d.pushAll(out) + d.flush()).toBe(gr.text);
      }
    }
    expect(engine.stats().sequences).toBe(0);
  });

  test('KV-cache decode equals the full forward', async () => {
    // perceiver_ar decodes with a sliding cache, which equals the full forward only
    // while the sequence fits in its latents: the golden says where that holds.
    const exact = g.cases.filter((c) => c.decode_matches_forward !== false && c.tokens.length <= 64);
    const c = exact.reduce((a, b) => (b.tokens.length > a.tokens.length ? b : a));
    const full = await promptLogprobs(engine, c.tokens);
    // one token per step
    let seq = engine.createSequence({ temperature: 0 });
    const oneByOne: number[] = [];
    for (const t of c.tokens) {
      const [r] = await engine.step([{ seq, tokens: [t], sample: false, promptLogprobs: true }]);
      oneByOne.push(...r.promptLogprobs!);
    }
    expect(engine.sequenceLength(seq)).toBe(c.tokens.length);
    engine.freeSequence(seq);
    // Decoding gives a log-prob at every step; the full forward of perceiver_ar has
    // none before its latents, so those entries are compared where the forward has them.
    const isNone = (v: number | null) => v === null || Number.isNaN(v);
    const comparable = (xs: number[]) => xs.map((v, i) => (isNone(full[i]) ? NaN : v));
    expectClose(comparable(oneByOne), full, cutTol, `${name}/${c.name} one token per step`);
    // uneven chunks
    seq = engine.createSequence({ temperature: 0 });
    const chunked: number[] = [];
    let at = 0;
    for (const n of [5, 1, 7, 2, 1000]) {
      const part = c.tokens.slice(at, at + n);
      at += part.length;
      if (part.length === 0) break;
      const [r] = await engine.step([{ seq, tokens: Int32Array.from(part), sample: false, promptLogprobs: true }]);
      // (the addon's objects come from Node's realm, not jest's: no instanceof)
      expect(Object.prototype.toString.call(r.promptLogprobs)).toBe('[object Float64Array]');
      chunked.push(...r.promptLogprobs!);
    }
    engine.freeSequence(seq);
    expectClose(comparable(chunked), full, cutTol, `${name}/${c.name} uneven chunks`);
  });

  test('a batch of mixed-length sequences equals each run alone', async () => {
    const V = engine.info().vocabSize;
    const prompts = [randomTokens(1, V, 1), randomTokens(17, V, 2), randomTokens(40, V, 3), randomTokens(6, V, 4)];
    const DECODE = 5;
    type Run = { prompt: number[]; tokens: number[]; lps: number[] };
    const alone: Run[] = [];
    for (const p of prompts) {
      const seq = engine.createSequence({ temperature: 0 });
      let [r] = await engine.step([{ seq, tokens: p, sample: true, promptLogprobs: true }]);
      const run: Run = { prompt: p, tokens: [r.token!], lps: Array.from(r.promptLogprobs!) };
      for (let k = 1; k < DECODE; k++) {
        [r] = await engine.step([{ seq, tokens: [r.token!], sample: true, promptLogprobs: true }]);
        run.tokens.push(r.token!);
        run.lps.push(...r.promptLogprobs!);
      }
      engine.freeSequence(seq);
      alone.push(run);
    }
    const seqs = prompts.map(() => engine.createSequence({ temperature: 0 }));
    let results = await engine.step(seqs.map((seq, i) => ({ seq, tokens: prompts[i], sample: true, promptLogprobs: true })));
    const batched: Run[] = prompts.map((p, i) => ({ prompt: p, tokens: [results[i].token!], lps: Array.from(results[i].promptLogprobs!) }));
    for (let k = 1; k < DECODE; k++) {
      results = await engine.step(seqs.map((seq, i) => ({ seq, tokens: [batched[i].tokens[k - 1]], sample: true, promptLogprobs: true })));
      results.forEach((r, i) => {
        expect(r.seq).toBe(seqs[i]);
        batched[i].tokens.push(r.token!);
        batched[i].lps.push(...r.promptLogprobs!);
      });
    }
    seqs.forEach((s) => engine.freeSequence(s));
    prompts.forEach((_, i) => {
      expect(batched[i].tokens).toEqual(alone[i].tokens);
      expectClose(batched[i].lps, alone[i].lps, cutTol, `${name} batch member ${i}`);
    });
  });
});

describe('sampling (gpt2-tiny)', () => {
  let engine: NativeEngine;
  const prompt = golden('gpt2-tiny').greedy[0].prompt_tokens;

  beforeAll(async () => {
    engine = await Engine.load(path.join(FIXTURES, 'gpt2-tiny'), { threads: THREADS });
  });

  const sample = (params: Parameters<NativeEngine['createSequence']>[0], n = 24) => sampleTokens(engine, prompt, n, params);

  test('the same seed gives the same tokens; different seeds differ', async () => {
    const a = await sample({ temperature: 1, seed: 42 });
    expect(await sample({ temperature: 1, seed: 42 })).toEqual(a);
    expect(await sample({ temperature: 1, seed: 43 })).not.toEqual(a);
    const big = await sample({ temperature: 1, seed: 2 ** 53 });
    expect(await sample({ temperature: 1, seed: 2 ** 53 })).toEqual(big);
    expect(await sample({ temperature: 1, seed: 2n ** 64n - 1n })).toEqual(await sample({ temperature: 1, seed: 2n ** 64n - 1n }));
  });

  test('top-k 1 and a tiny top-p equal greedy', async () => {
    const greedy = await sample({ temperature: 0 });
    expect(await sample({ temperature: 1.5, topK: 1, seed: 7 })).toEqual(greedy);
    expect(await sample({ temperature: 1.5, topP: 1e-9, seed: 7 })).toEqual(greedy);
  });

  test('logit_bias forces a token; the reported log-prob stays the raw one', async () => {
    const forced = 42;
    expect(await sample({ temperature: 1, seed: 3, logitBias: [[forced, 100]] }, 8)).toEqual(new Array(8).fill(forced));
    const seq = engine.createSequence({ temperature: 0, logitBias: [[forced, 100]] });
    const [r] = await engine.step([{ seq, tokens: prompt, sample: true }]);
    engine.freeSequence(seq);
    const raw = await promptLogprobs(engine, [...prompt, forced]);
    expect(r.token).toBe(forced);
    expect(Math.abs(r.logprob! - raw[raw.length - 1]!)).toBeLessThan(1e-5);
    // a strong negative bias bans the greedy choice
    const greedy = (await sample({ temperature: 0 }, 1))[0];
    expect((await sample({ temperature: 0, logitBias: [[greedy, -100]] }, 1))[0]).not.toBe(greedy);
  });

  test('logprobs: n alternatives, best first', async () => {
    const seq = engine.createSequence({ temperature: 1, seed: 5, logprobs: 3 });
    const [r] = await engine.step([{ seq, tokens: prompt, sample: true, promptLogprobs: true }]);
    engine.freeSequence(seq);
    expect(r.top).toHaveLength(3);
    expect(r.top![0][1]).toBeGreaterThanOrEqual(r.top![1][1]);
    expect(r.top![1][1]).toBeGreaterThanOrEqual(r.top![2][1]);
    expect(r.promptLogprobs).toHaveLength(prompt.length);
    if (r.promptTop) expect(r.promptTop).toHaveLength(prompt.length);
  });
});

describe('every kernel ISA this CPU has gives the goldens', () => {
  const order = ['reference', 'avx2', 'avx512'];
  const original = native().isa();
  afterAll(() => native().setIsa(original));

  test.each(order)('%s', async (isa) => {
    if (order.indexOf(isa) > order.indexOf(native().detectedIsa())) return; // the CPU lacks it
    native().setIsa(isa);
    expect(native().isa()).toBe(isa);
    for (const name of ['gpt2-tiny', 'gpt2-f16', 'gpt2-bf16', 'gpt2-rotary']) {
      const engine = await Engine.load(path.join(FIXTURES, name), { threads: THREADS });
      expect(engine.info().isa).toBe(isa);
      const g = golden(name);
      for (const c of g.cases) expectClose(await promptLogprobs(engine, c.tokens), c.logprobs, g.logprob_tolerance, `${isa} ${name}/${c.name}`);
    }
  });

  test('an unknown ISA is refused with E_ARGUMENT', () => {
    expect(() => native().setIsa('sse9')).toThrow(expect.objectContaining({ code: 'E_ARGUMENT' }));
  });
});

describe('long sequences (gpt2-rotary, no context cap)', () => {
  test('one step of 700 tokens (split inside the engine) equals small steps', async () => {
    const engine = await Engine.load(path.join(FIXTURES, 'gpt2-rotary'), { threads: THREADS });
    const small = await Engine.load(path.join(FIXTURES, 'gpt2-rotary'), { threads: THREADS, maxStepTokens: 16 });
    const tokens = randomTokens(700, engine.info().vocabSize, 9);
    const runs: number[][] = [];
    for (const [e, sizes] of [[engine, [700]], [engine, [100, 250, 350]], [small, [700]]] as Array<[NativeEngine, number[]]>) {
      const seq = e.createSequence({ temperature: 0 });
      const lps: number[] = [];
      let at = 0;
      for (const n of sizes) {
        const [r] = await e.step([{ seq, tokens: tokens.slice(at, at + n), sample: false, promptLogprobs: true }]);
        lps.push(...r.promptLogprobs!);
        at += n;
      }
      expect(e.sequenceLength(seq)).toBe(700);
      e.freeSequence(seq);
      runs.push(lps);
    }
    expectClose(runs[1], runs[0], 1e-5, 'chunks 100/250/350 vs one step');
    expectClose(runs[2], runs[0], 1e-5, 'maxStepTokens 16 vs 512');
  });
});

describe('step arguments', () => {
  let engine: NativeEngine;
  beforeAll(async () => {
    engine = await Engine.load(path.join(FIXTURES, 'gpt2-tiny'), { threads: THREADS });
  });

  test.each([
    ['an unknown sequence', (seq: number) => [{ seq: seq + 1000, tokens: [1], sample: true }], (seq: number) => `unknown sequence ${seq + 1000}`],
    ['a token id = vocab size', (seq: number) => [{ seq, tokens: [1, 512], sample: true }], () => 'token id 512 is outside the vocabulary (0..511)'],
    ['a negative token id', (seq: number) => [{ seq, tokens: [-1], sample: true }], () => 'token id -1 is outside the vocabulary (0..511)'],
    [
      'more tokens than the context',
      (seq: number) => [{ seq, tokens: new Array(129).fill(1), sample: true }],
      (seq: number) => `sequence ${seq} would hold 129 tokens; the model's context is 128`,
    ],
    [
      'a sequence listed twice',
      (seq: number) => [{ seq, tokens: [1], sample: true }, { seq, tokens: [2], sample: true }],
      (seq: number) => `sequence ${seq} is listed twice in one step`,
    ],
    [
      'a replayed step of two tokens',
      (seq: number) => [{ seq, tokens: [1, 2], sample: false, replay: true }],
      (seq: number) => `sequence ${seq}: a replayed step feeds exactly one token`,
    ],
  ])('%s rejects with E_ARGUMENT and leaves the sequence as it was', async (_, reqs, message) => {
    const seq = engine.createSequence({ temperature: 0 });
    const err = await rejection(engine.step(reqs(seq)));
    expect(Object.prototype.toString.call(err)).toBe('[object Error]');
    expect(err.code).toBe('E_ARGUMENT');
    expect(err.message).toBe(message(seq));
    expect(engine.sequenceLength(seq)).toBe(0);
    const [r] = await engine.step([{ seq, tokens: [1, 2, 3], sample: true }]);
    expect(r.sampled).toBe(true);
    expect(engine.sequenceLength(seq)).toBe(3);
    engine.freeSequence(seq);
  });

  test('the context cap holds across steps', async () => {
    const seq = engine.createSequence({ temperature: 0 });
    await engine.step([{ seq, tokens: new Array(128).fill(7), sample: true }]);
    expect(await rejection(engine.step([{ seq, tokens: [1], sample: true }]))).toMatchObject({
      code: 'E_ARGUMENT',
      message: `sequence ${seq} would hold 129 tokens; the model's context is 128`,
    });
    engine.freeSequence(seq);
  });

  test('a freed sequence is unknown', async () => {
    const seq = engine.createSequence();
    engine.freeSequence(seq);
    expect(() => engine.sequenceLength(seq)).toThrow(expect.objectContaining({ code: 'E_ARGUMENT', message: `unknown sequence ${seq}` }));
    expect(await rejection(engine.step([{ seq, tokens: [1], sample: true }]))).toMatchObject({ code: 'E_ARGUMENT', message: `unknown sequence ${seq}` });
  });

  test('freeSequence while its step is in flight takes effect when the step settles', async () => {
    const before = engine.stats().sequences;
    const seq = engine.createSequence({ temperature: 0 });
    const pending = engine.step([{ seq, tokens: [1, 2, 3], sample: true }]);
    engine.freeSequence(seq); // the worker may not have started yet: the step must still run
    const [r] = await pending;
    expect(r.seq).toBe(seq);
    expect(r.sampled).toBe(true);
    expect(() => engine.sequenceLength(seq)).toThrow(expect.objectContaining({ code: 'E_ARGUMENT' }));
    expect(engine.stats().sequences).toBe(before);
  });

  test('wrong argument types throw a TypeError naming the argument', () => {
    const seq = engine.createSequence();
    const bad = (v: unknown) => () => engine.step(v as never);
    expect(bad('x')).toThrow(expect.objectContaining({ name: 'TypeError', message: 'reqs must be an array (got string)' }));
    expect(bad([{ seq, tokens: 'abc', sample: true }])).toThrow(/reqs\[0\]\.tokens must be an Int32Array/);
    expect(bad([{ seq, tokens: [1.5], sample: true }])).toThrow(/reqs\[0\]\.tokens\[0\] must be an integer/);
    expect(bad([{ seq, tokens: new Float32Array(1), sample: true }])).toThrow(expect.objectContaining({ name: 'TypeError' }));
    expect(bad([{ seq, tokens: [1] }])).toThrow(/reqs\[0\]\.sample must be a boolean/);
    expect(() => engine.createSequence({ seed: -1 })).toThrow(/params\.seed/);
    expect(() => engine.createSequence({ seed: 2 ** 53 + 2 })).toThrow(/params\.seed/);
    expect(() => engine.createSequence({ temperature: 'hot' as never })).toThrow(/params\.temperature must be a number/);
    expect(() => engine.createSequence({ logitBias: [[1]] as never })).toThrow(/params\.logitBias\[0\]/);
    expect(() => engine.createSequence({ logitBias: [[512, 1]] })).toThrow(expect.objectContaining({ code: 'E_ARGUMENT' }));
    expect(() => new (native().Engine as unknown as new () => unknown)()).toThrow(/Engine\.load/);
    expect(() => native().Engine.load(42 as never)).toThrow(/dir must be a string/);
    engine.freeSequence(seq);
  });

  test('stats follow the sequences', async () => {
    const before = engine.stats();
    const seq = engine.createSequence();
    expect(engine.stats().sequences).toBe(before.sequences + 1);
    await engine.step([{ seq, tokens: [1, 2, 3, 4], sample: false }]);
    expect(engine.stats().stateBytes).toBeGreaterThan(before.stateBytes);
    engine.freeSequence(seq);
    expect(engine.stats()).toEqual(before);
  });
});

// ------------------------------------------------------------ loader errors

interface StTensor {
  dtype: string;
  shape: number[];
  data: Buffer;
}

function readSafetensors(file: string): Map<string, StTensor> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const data = buf.subarray(8 + n);
  const out = new Map<string, StTensor>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    out.set(name, { dtype: t.dtype, shape: t.shape, data: data.subarray(t.data_offsets[0], t.data_offsets[1]) });
  }
  return out;
}

/** Writes tensors packed in order; `lie` may edit the header entries before writing. */
function writeSafetensors(file: string, tensors: Map<string, StTensor>, lie?: (header: Record<string, any>, dataBytes: number) => void): void {
  const header: Record<string, any> = {};
  let off = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  lie?.(header, off);
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...[...tensors.values()].map((t) => t.data)]));
}

describe('loader errors reject with a code and name the file', () => {
  const base = path.join(FIXTURES, 'gpt2-tiny');
  let dir: string;
  let st: string;
  let cfg: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-ckpt-'));
    for (const f of fs.readdirSync(base)) fs.copyFileSync(path.join(base, f), path.join(dir, f));
    st = path.join(dir, 'model.safetensors');
    cfg = path.join(dir, 'config.json');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function loadError(): Promise<NativeError> {
    return rejection(Engine.load(dir, { threads: 1 }));
  }

  function editConfig(edit: (c: Record<string, unknown>) => void): void {
    const c = JSON.parse(fs.readFileSync(cfg, 'utf8'));
    edit(c);
    fs.writeFileSync(cfg, JSON.stringify(c));
  }

  test('the untouched copy loads', async () => {
    const engine = await Engine.load(dir, { threads: 1 });
    expect(engine.info().vocabSize).toBe(512);
  });

  test('truncated safetensors', async () => {
    const size = fs.statSync(st).size;
    fs.truncateSync(st, size - 100);
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(st);
    expect(err.message).toMatch(/truncated/);
  });

  test('a file shorter than its header length', async () => {
    fs.truncateSync(st, 4);
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(st);
  });

  test('header lying about offsets', async () => {
    writeSafetensors(st, readSafetensors(st), (h, n) => {
      h['ln_f.weight'].data_offsets = [n - 64, n + 192];
    });
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(st);
    expect(err.message).toContain('ln_f.weight');
  });

  test('overlapping tensors', async () => {
    writeSafetensors(st, readSafetensors(st), (h) => {
      h['ln_f.bias'].data_offsets = h['ln_f.weight'].data_offsets;
    });
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(st);
  });

  test('missing tensor', async () => {
    const tensors = readSafetensors(st);
    expect(tensors.delete('h.1.mlp.c_fc.weight')).toBe(true);
    writeSafetensors(st, tensors);
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(dir);
    expect(err.message).toContain('h.1.mlp.c_fc.weight');
  });

  test('misshaped tensor', async () => {
    const tensors = readSafetensors(st);
    const t = tensors.get('h.0.attn.c_attn.weight')!;
    expect(t.shape).toEqual([64, 192]);
    t.shape = [192, 64]; // same size, wrong layout
    writeSafetensors(st, tensors);
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(st);
    expect(err.message).toContain('h.0.attn.c_attn.weight');
  });

  test.each([['Q4'], ['I32']])('dtype %s', async (dtype) => {
    const tensors = readSafetensors(st);
    tensors.get('wte.weight')!.dtype = dtype;
    writeSafetensors(st, tensors);
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(st);
    expect(err.message).toContain(dtype);
  });

  test('no weights at all', async () => {
    fs.rmSync(st);
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(dir);
  });

  test('no config.json', async () => {
    fs.rmSync(cfg);
    const err = await loadError();
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(cfg);
  });

  test('a missing folder', async () => {
    const err = await rejection(Engine.load(path.join(dir, 'nope')));
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain(path.join(dir, 'nope'));
  });

  test.each([
    ['n_head that does not divide n_embd', (c: Record<string, unknown>) => (c.n_head = 5), 'n_head'],
    ['no vocab_size', (c: Record<string, unknown>) => delete c.vocab_size, 'vocab_size'],
    ['a negative n_layer', (c: Record<string, unknown>) => (c.n_layer = -1), 'n_layer'],
    ['an unknown model_type', (c: Record<string, unknown>) => (c.model_type = 'falcon'), 'model_type'],
  ])('bad config: %s', async (_, edit, field) => {
    editConfig(edit);
    const err = await loadError();
    expect(err.code).toBe('E_CONFIG');
    expect(err.message).toContain(cfg);
    expect(err.message).toContain(field);
  });

  test('config.json that is not JSON', async () => {
    fs.writeFileSync(cfg, '{"model_type": "gpt2",');
    const err = await loadError();
    expect(err.code).toBe('E_CONFIG');
    expect(err.message).toContain(cfg);
  });

  test('a config that disagrees with the tensors', async () => {
    editConfig((c) => (c.n_embd = 32));
    const err = await loadError();
    expect(['E_CHECKPOINT', 'E_CONFIG']).toContain(err.code);
    expect(err.message).toContain(dir);
  });
});

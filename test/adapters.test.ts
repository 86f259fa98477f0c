// Per-request adapters (soft prompts, (IA)^3): the engine against the PyTorch
// reference's goldens (tools/reference/make_adapter_fixtures.py), mixed
// batches equal to each request alone (engine and HTTP), and every way an
// adapter folder or a request naming one can be wrong.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { AdapterLoadError, loadAdapter, loadAdapterDir, resolveTarget, weightsSha256 } from '../src/engine/adapters';
import { RequestError } from '../src/engine/errors';
import { RuntimeHolder } from '../src/engine/runtime';
import { scoreTokens } from '../src/engine/scoring';
import { loadTokenizer } from '../src/engine/tokenizer';
import { AdapterInfo, Engine, NativeEngine } from '../src/native';
import type { RunningServer } from '../src/server';
import { safetensorsF32 } from '../bench/lib/adapters';
import { promptLogprobs, sampleTokens } from './engine.helpers';
import { post, postStream, start } from './http.helpers';

const FIXTURES = path.join(__dirname, 'fixtures');
const ADAPTERS = path.join(FIXTURES, 'adapters');

interface AdapterGolden {
  base: string;
  adapter: string;
  kind: string;
  logprob_tolerance: number;
  cases: Array<{ tokens: number[]; logprobs: Array<number | null>; greedy: number[] }>;
}

const goldenNames = fs.readdirSync(ADAPTERS).filter((n) => fs.existsSync(path.join(ADAPTERS, n, 'golden.json'))).sort();
const golden = (name: string): AdapterGolden => JSON.parse(fs.readFileSync(path.join(ADAPTERS, name, 'golden.json'), 'utf8'));

const engines = new Map<string, NativeEngine>();
/** One engine per base fixture with every adapter made for it loaded. */
async function engineFor(base: string): Promise<NativeEngine> {
  let e = engines.get(base);
  if (!e) {
    e = await Engine.load(path.join(FIXTURES, base), { threads: 1 });
    for (const n of goldenNames) if (golden(n).base === base) loadAdapter(e, n, path.join(ADAPTERS, n), path.join(FIXTURES, base));
    engines.set(base, e);
  }
  return e;
}
const info = (e: NativeEngine, name: string): AdapterInfo => e.adapters().find((a) => a.name === name)!;

describe('adapters match the PyTorch reference', () => {
  test.each(goldenNames)('%s: prompt log-probs and greedy tokens', async (name) => {
    const g = golden(name);
    const e = await engineFor(g.base);
    const a = info(e, name);
    expect(a.type).toBe(g.kind);
    for (const c of g.cases) {
      const lps = await promptLogprobs(e, c.tokens, a.name);
      expect(lps.length).toBe(c.logprobs.length);
      for (let i = 0; i < lps.length; i++) {
        if (c.logprobs[i] === null) expect(lps[i]).toBeNull();
        else expect(Math.abs(lps[i]! - c.logprobs[i]!)).toBeLessThan(g.logprob_tolerance);
      }
      expect(await sampleTokens(e, c.tokens, c.greedy.length, { temperature: 0, adapter: name })).toEqual(c.greedy);
    }
  });

  test('an adapter changes the output (the goldens are not the base model)', async () => {
    const e = await engineFor('bigbird-tiny');
    const c = golden('bigbird-tiny-ia3').cases[2];
    const base = await promptLogprobs(e, c.tokens);
    expect(Math.max(...base.slice(1).map((x, i) => Math.abs(x! - c.logprobs[i + 1]!)))).toBeGreaterThan(0.05);
  });
});

/** Greedy tokens of several sequences stepped together in one batch; adapters[i] undefined = base. */
async function greedyBatch(e: NativeEngine, prompts: number[][], adapters: Array<string | undefined>, n: number): Promise<number[][]> {
  const seqs = prompts.map((_, i) => e.createSequence({ temperature: 0, ...(adapters[i] ? { adapter: adapters[i] } : {}) }));
  const out: number[][] = prompts.map(() => []);
  try {
    let feed = prompts;
    for (let s = 0; s < n; s++) {
      const rs = await e.step(seqs.map((seq, i) => ({ seq, tokens: feed[i], sample: true })));
      rs.forEach((r, i) => out[i].push(r.token!));
      feed = rs.map((r) => [r.token!]);
    }
  } finally {
    seqs.forEach((s) => e.freeSequence(s));
  }
  return out;
}

const MIX = ['bigbird-tiny-prompt', 'bigbird-tiny-ia3', 'bigbird-tiny-prompt3', undefined];
const mixPrompts = Array.from({ length: 8 }, (_, i) => Array.from({ length: 3 + 5 * i }, (_, j) => (17 * i + 31 * j + 5) % 256));

test('a batch of 8 over 3 adapters and none gives each sequence exactly its tokens alone (engine)', async () => {
  const e = await engineFor('bigbird-tiny');
  const adapters = mixPrompts.map((_, i) => MIX[i % 4]);
  const together = await greedyBatch(e, mixPrompts, adapters, 16);
  for (let i = 0; i < 8; i++) expect(together[i]).toEqual((await greedyBatch(e, [mixPrompts[i]], [adapters[i]], 16))[0]);
  // and the adapters really differ from each other on the same prompt
  const same = await greedyBatch(e, MIX.map(() => mixPrompts[7]), MIX, 16);
  expect(new Set(same.map((t) => t.join(','))).size).toBe(4);
});

describe('served adapters (HTTP)', () => {
  let server: RunningServer;
  let dir: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-adapters-'));
    for (const n of ['bigbird-tiny-prompt', 'bigbird-tiny-ia3', 'bigbird-tiny-prompt3']) {
      fs.mkdirSync(path.join(dir, n));
      for (const f of ['adapter_config.json', 'adapter_model.safetensors']) fs.copyFileSync(path.join(ADAPTERS, n, f), path.join(dir, n, f));
    }
    server = await start(path.join(FIXTURES, 'bigbird-tiny'), { adapters: dir, maxBatch: 16 });
  });
  afterAll(async () => {
    await server?.close(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const ask = (i: number, model?: string, adapter?: string) =>
    post(server.url, { prompt: mixPrompts[i], max_tokens: 12, temperature: 0, logit_bias: { '256': -100 }, ...(model ? { model } : {}), ...(adapter ? { adapter } : {}) });

  test('8 concurrent greedy requests over 3 adapters and none equal each request alone', async () => {
    const pick = (i: number) => MIX[i % 4];
    // Mixed naming: "base:adapter", the adapter's own name, and the adapter field.
    const spec = (i: number): [string | undefined, string | undefined] => {
      const a = pick(i);
      if (!a) return [undefined, undefined];
      return i % 3 === 0 ? [`bigbird-tiny:${a}`, undefined] : i % 3 === 1 ? [a, undefined] : [undefined, a];
    };
    const together = await Promise.all(mixPrompts.map((_, i) => ask(i, ...spec(i))));
    const alone = [];
    for (let i = 0; i < 8; i++) alone.push(await ask(i, ...spec(i)));
    for (let i = 0; i < 8; i++) {
      expect(together[i].status).toBe(200);
      expect(together[i].json.choices[0].text).toBe(alone[i].json.choices[0].text);
      expect(together[i].json.model).toBe(spec(i)[0] ?? (pick(i) ? `bigbird-tiny:${pick(i)}` : 'bigbird-tiny'));
    }
    // The engine's own batched run of the same prompts agrees with the server's tokens.
    const e = await engineFor('bigbird-tiny');
    const direct = await greedyBatch(e, mixPrompts, mixPrompts.map((_, i) => pick(i)), 12);
    const tok = loadTokenizer(path.join(FIXTURES, 'bigbird-tiny'));
    for (let i = 0; i < 8; i++) expect(tok.decode(direct[i])).toBe(together[i].json.choices[0].text);
  });

  test('streaming with an adapter, and GET /v1/models lists the adapters under the base', async () => {
    const s = await postStream(server.url, { prompt: 'abc', max_tokens: 4, temperature: 0, model: 'bigbird-tiny:bigbird-tiny-ia3' });
    expect(s.status).toBe(200);
    expect(s.events.at(-1)).toBe('[DONE]');
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as any;
    expect(models.data.map((m: any) => m.id)).toEqual([
      'bigbird-tiny',
      'bigbird-tiny:bigbird-tiny-ia3',
      'bigbird-tiny:bigbird-tiny-prompt',
      'bigbird-tiny:bigbird-tiny-prompt3',
    ]);
    expect(models.data[2]).toMatchObject({ parent: 'bigbird-tiny', adapter: { name: 'bigbird-tiny-prompt', type: 'prompt_tuning', prompt_tokens: 6 } });
  });

  test('an unknown adapter name is a clear error and the server keeps serving', async () => {
    const bad = await post(server.url, { prompt: 'abc', max_tokens: 2, model: 'bigbird-tiny:nope' });
    expect(bad.status).toBe(404);
    expect(bad.json.error).toMatchObject({ code: 'model_not_found', param: 'model' });
    expect(bad.json.error.message).toContain('"bigbird-tiny:bigbird-tiny-ia3"');
    const badField = await post(server.url, { prompt: 'abc', max_tokens: 2, adapter: 'nope' });
    expect(badField.status).toBe(400);
    expect(badField.json.error).toMatchObject({ code: 'invalid_parameter', param: 'adapter' });
    expect(badField.json.error.message).toMatch(/unknown adapter "nope": this server has "bigbird-tiny-ia3"/);
    const clash = await post(server.url, { prompt: 'abc', max_tokens: 2, model: 'bigbird-tiny-ia3', adapter: 'bigbird-tiny-prompt' });
    expect(clash.status).toBe(400);
    expect((await post(server.url, { prompt: 'abc', max_tokens: 2, adapter: 42 })).json.error.param).toBe('adapter');
    expect((await ask(0)).status).toBe(200);
  });

  test('a soft prompt counts against the context', async () => {
    // bigbird-tiny has no context cap; the check is the engine's own on a capped model below.
    const e = await engineFor('gpt2-tiny');
    const a = info(e, 'gpt2-tiny-prompt');
    // The request path (HTTP, WebSocket, roost score / eval) refuses before the engine sees it.
    const rt = new RuntimeHolder().attach(e, loadTokenizer(path.join(FIXTURES, 'gpt2-tiny')), 'gpt2-tiny', { stepTokens: 128 });
    const fits = 128 - a.promptTokens;
    await expect(scoreTokens(rt, new Array(fits).fill(1), a.name)).resolves.toHaveLength(fits);
    const over = scoreTokens(rt, new Array(fits + 1).fill(1), a.name);
    await expect(over).rejects.toThrow(RequestError);
    await expect(over).rejects.toMatchObject({
      code: 'context_length_exceeded',
      param: 'prompt',
      message:
        `This model's maximum context length is 128 tokens, however you requested 129 tokens (${a.promptTokens} for the adapter's soft prompt, ` +
        `${fits + 1} in prompt, 0 for max_tokens). Please reduce the prompt or max_tokens.`,
    });
    const seq = e.createSequence({ adapter: a.name });
    await expect(e.step([{ seq, tokens: new Array(123).fill(1), sample: false }])).rejects.toThrow(/would hold 129 tokens; the model's context is 128/);
    e.freeSequence(seq);
  });
});

// ------------------------------------------------------------ bad folders

describe('bad adapter folders give clear errors', () => {
  const BASE = path.join(FIXTURES, 'bigbird-tiny');
  const good = JSON.parse(fs.readFileSync(path.join(ADAPTERS, 'bigbird-tiny-prompt', 'adapter_config.json'), 'utf8'));
  const ones = (n: number) => new Array(n).fill(1);
  const ia3Tensors = (C = 64, F = 128, L = 2) => {
    const t: Record<string, [number[], number[]]> = {};
    for (let l = 0; l < L; l++) {
      t[`h.${l}.attn.ia3_k`] = [[C], ones(C)];
      t[`h.${l}.attn.ia3_v`] = [[C], ones(C)];
      t[`h.${l}.mlp.ia3_ff`] = [[F], ones(F)];
    }
    return t;
  };
  let root: string;
  let e: NativeEngine;
  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-bad-adapters-'));
    e = await Engine.load(BASE, { threads: 1 });
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  function folder(name: string, config: unknown, tensors?: Record<string, [number[], number[]]>): string {
    const d = path.join(root, name);
    fs.mkdirSync(d, { recursive: true });
    if (config !== undefined) fs.writeFileSync(path.join(d, 'adapter_config.json'), typeof config === 'string' ? config : JSON.stringify(config));
    if (tensors) fs.writeFileSync(path.join(d, 'adapter_model.safetensors'), safetensorsF32(tensors));
    return d;
  }
  const ia3Config = { ...good, peft_type: 'IA3', num_virtual_tokens: undefined };
  const prompt6 = { prompt_embeddings: [[6, 64], new Array(6 * 64).fill(0.1)] as [number[], number[]] };

  const cases: Array<[string, () => string, RegExp]> = [
    ['no config', () => folder('noconfig', undefined, prompt6), /not an adapter folder \(no adapter_config.json\)/],
    ['invalid JSON', () => folder('badjson', '{"peft_type": ', prompt6), /adapter_config.json: invalid JSON/],
    ['unknown peft_type', () => folder('lora', { ...good, peft_type: 'LORA' }, prompt6), /peft_type must be "PROMPT_TUNING" or "IA3" \(got "LORA"\)/],
    ['no weights file', () => folder('noweights', good), /adapter_model.safetensors/],
    ['missing tensor', () => folder('missing', ia3Config, Object.fromEntries(Object.entries(ia3Tensors()).slice(1))), /h\.0\.attn\.ia3_k/],
    ['mis-shaped tensor', () => folder('shape', good, { prompt_embeddings: [[6, 32], new Array(6 * 32).fill(0)] }), /prompt_embeddings/],
    ['NaN value', () => folder('nan', good, { prompt_embeddings: [[6, 64], [NaN, ...new Array(6 * 64 - 1).fill(0)]] }), /prompt_embeddings holds a NaN/],
    ['unexpected tensor', () => folder('extra', good, { ...prompt6, 'lm_head.weight': [[2], [1, 2]] }), /unexpected tensor lm_head.weight/],
    ['bad num_virtual_tokens', () => folder('zero', { ...good, num_virtual_tokens: 0 }, prompt6), /num_virtual_tokens must be an integer >= 1/],
    ['made for another model (shapes)', () => path.join(ADAPTERS, 'gpt2-tiny-ia3'), /made for a model with vocab_size 512; this model has 260/],
    [
      'made for other weights (same shapes)',
      () => folder('otherweights', { ...good, base_model_sha256: '0'.repeat(64) }, prompt6),
      /trained on other weights \(base_model_sha256 000000000000\.\.\./,
    ],
    ['bad name', () => path.join(ADAPTERS, 'bigbird-tiny-prompt'), /adapter name "bad name!"/],
  ];
  test.each(cases)('%s', (label, make, message) => {
    const d = make();
    const name = label === 'bad name' ? 'bad name!' : path.basename(d);
    expect(() => loadAdapter(e, name, d, BASE)).toThrow(AdapterLoadError);
    expect(() => loadAdapter(e, name, d, BASE)).toThrow(message);
    expect(e.adapters().map((a) => a.name)).not.toContain(name);
  });

  test('an adapter whose recorded weights hash matches loads; names are unique', () => {
    const d = folder('okhash', { ...good, base_model_sha256: weightsSha256(BASE) }, prompt6);
    expect(loadAdapter(e, 'okhash', d, BASE)).toEqual({ name: 'okhash', type: 'prompt_tuning', promptTokens: 6 });
    expect(() => loadAdapter(e, 'okhash', d, BASE)).toThrow(/already loaded/);
  });

  test('adapters are refused for architectures without support', async () => {
    const p = await Engine.load(path.join(FIXTURES, 'perceiver-tiny'), { threads: 1 });
    expect(() => p.loadAdapter('x', path.join(ADAPTERS, 'bigbird-tiny-ia3'))).toThrow(/does not support adapters/);
  });

  test('--adapters DIR: a folder of adapters, a single adapter folder, or an error naming the bad one', async () => {
    const e2 = await Engine.load(BASE, { threads: 1 });
    expect(loadAdapterDir(e2, path.join(ADAPTERS, 'bigbird-tiny-ia3'), BASE).map((a) => a.name)).toEqual(['bigbird-tiny-ia3']);
    expect(() => loadAdapterDir(e2, path.join(root, 'nope'), BASE)).toThrow(/--adapters .*nope: no such folder/);
    // test/fixtures/adapters also holds gpt2-tiny's adapters: the first one that does not fit is named.
    expect(() => loadAdapterDir(e2, ADAPTERS, BASE)).toThrow(/bigbird-tiny-ia3.*already loaded|gpt2-tiny-ia3.*vocab_size 512/);
  });

  test('a server refuses to start with a bad adapter folder, naming it', async () => {
    await expect(start(BASE, { adapters: path.join(ADAPTERS, 'gpt2-tiny-prompt') })).rejects.toThrow(/gpt2-tiny-prompt.*vocab_size 512; this model has 260/);
  });
});

test('resolveTarget: base, base:adapter, the adapter name, the adapter field', () => {
  const a: AdapterInfo = { name: 'a1', type: 'ia3', promptTokens: 0 };
  const m = new Map([['a1', a]]);
  expect(resolveTarget('base', m, null, null)).toEqual({ model: 'base', adapter: null });
  expect(resolveTarget('base', m, 'base', null)).toEqual({ model: 'base', adapter: null });
  expect(resolveTarget('base', m, 'base:a1', null)).toEqual({ model: 'base:a1', adapter: a });
  expect(resolveTarget('base', m, 'a1', null)).toEqual({ model: 'a1', adapter: a });
  expect(resolveTarget('base', m, null, 'a1')).toEqual({ model: 'base:a1', adapter: a });
  expect(resolveTarget('base', m, 'base:a1', 'a1')).toEqual({ model: 'base:a1', adapter: a });
  expect(() => resolveTarget('base', m, 'other', null)).toThrow(/does not exist: this server serves "base", "base:a1"/);
  expect(() => resolveTarget('base', new Map(), null, 'a1')).toThrow(/serves no adapters/);
});

describe('runtime loading (POST /v1/load_lora_adapter, --allow-adapter-loading)', () => {
  const BASE = path.join(FIXTURES, 'bigbird-tiny');
  const call = async (url: string, route: string, body: unknown) => {
    const r = await fetch(`${url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as any };
  };

  test('off by default: 404 naming the flag', async () => {
    const s = await start(BASE);
    try {
      const r = await call(s.url, '/v1/load_lora_adapter', { lora_name: 'x', lora_path: path.join(ADAPTERS, 'bigbird-tiny-ia3') });
      expect(r.status).toBe(404);
      expect(r.json.error.message).toContain('--allow-adapter-loading');
    } finally {
      await s.close(0);
    }
  });

  test('a bad folder is a 400 while a stream keeps running; a good one serves at once; unload', async () => {
    const s = await start(BASE, { allowAdapterLoading: true });
    try {
      // a long stream in flight the whole time
      const stream = postStream(s.url, { prompt: 'abc', max_tokens: 200, temperature: 0, logit_bias: { '256': -100 } });
      const bad = await call(s.url, '/v1/load_lora_adapter', { lora_name: 'g', lora_path: path.join(ADAPTERS, 'gpt2-tiny-ia3') });
      expect(bad.status).toBe(400);
      expect(bad.json.error).toMatchObject({ code: 'invalid_parameter', param: 'lora_path' });
      expect(bad.json.error.message).toMatch(/vocab_size 512; this model has 260/);
      expect((await call(s.url, '/v1/load_lora_adapter', { lora_name: 'g' })).json.error.param).toBe('lora_path');
      const ok = await call(s.url, '/v1/load_lora_adapter', { lora_name: 'p3', lora_path: path.join(ADAPTERS, 'bigbird-tiny-prompt3') });
      expect(ok).toMatchObject({ status: 200, json: { id: 'bigbird-tiny:p3', type: 'prompt_tuning', prompt_tokens: 3 } });
      expect((await call(s.url, '/v1/load_lora_adapter', { lora_name: 'p3', lora_path: path.join(ADAPTERS, 'bigbird-tiny-prompt3') })).status).toBe(400);
      const used = await post(s.url, { prompt: 'abc', max_tokens: 4, temperature: 0, model: 'bigbird-tiny:p3' });
      expect(used.status).toBe(200);
      expect((await call(s.url, '/v1/unload_lora_adapter', { lora_name: 'p3' })).status).toBe(200);
      expect((await post(s.url, { prompt: 'abc', max_tokens: 4, model: 'bigbird-tiny:p3' })).status).toBe(404);
      expect((await call(s.url, '/v1/unload_lora_adapter', { lora_name: 'p3' })).status).toBe(404);
      const done = await stream;
      expect(done.status).toBe(200);
      expect(done.events.filter((e) => e !== '[DONE]' && e.choices?.[0]?.finish_reason === 'length')).toHaveLength(1);
    } finally {
      await s.close(0);
    }
  });
});

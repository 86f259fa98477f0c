// POST /v1/completions, GET /v1/models, /health, /metrics against a real
// engine (fixture checkpoints): every parameter and error path.
import { Engine, NativeEngine } from '../src/native';
import { loadTokenizer } from '../src/engine/tokenizer';
import { RuntimeHolder } from '../src/engine/runtime';
import { createApp } from '../src/http/app';
import { Metrics } from '../src/http/metrics';
import type { RunningServer } from '../src/server';
import { BYTES, post, postStream, start, TINY, UNBOUNDED } from './http.helpers';

let tiny: RunningServer;
let bytes: RunningServer;
let ref: NativeEngine; // the same checkpoint, driven directly, for expected values

beforeAll(async () => {
  [tiny, bytes, ref] = await Promise.all([start(TINY), start(BYTES), Engine.load(TINY, { threads: 1 })]);
});
afterAll(async () => {
  await Promise.all([tiny?.close(0), bytes?.close(0)]);
});

/** Greedy continuation of `prompt` straight from the engine. */
async function greedy(prompt: number[], n: number): Promise<number[]> {
  const seq = ref.createSequence({ temperature: 0 });
  const out: number[] = [];
  let feed = prompt;
  for (let i = 0; i < n; i++) {
    const [r] = await ref.step([{ seq, tokens: feed, sample: true }]);
    out.push(r.token!);
    feed = [r.token!];
  }
  ref.freeSequence(seq);
  return out;
}

const NO_EOS = { '511': -100 };

describe('routes', () => {
  test('GET /health is ok once loaded, 503 loading before', async () => {
    const r = await fetch(`${tiny.url}/health`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ok' });

    const holder = new RuntimeHolder();
    const app = createApp(holder, new Metrics(() => holder.runtime, { processMetrics: false }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const base = `http://127.0.0.1:${(server.address() as any).port}`;
    try {
      const h = await fetch(`${base}/health`);
      expect(h.status).toBe(503);
      expect(await h.json()).toEqual({ status: 'loading' });
      const c = await post(base, { prompt: 'x' });
      expect(c.status).toBe(503);
      expect(c.json.error).toMatchObject({ type: 'unavailable_error', code: 'model_loading' });
    } finally {
      server.close();
    }
  });

  test('GET /v1/models lists the served model', async () => {
    const r = await fetch(`${tiny.url}/v1/models`);
    expect(await r.json()).toEqual({
      object: 'list',
      data: [{ id: 'gpt2-tiny', object: 'model', created: 0, owned_by: 'roost', max_model_len: 128, parent: null }],
    });
    expect((await fetch(`${tiny.url}/v1/models/gpt2-tiny`)).status).toBe(200);
    const missing = await fetch(`${tiny.url}/v1/models/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as any).error).toMatchObject({ type: 'not_found_error', code: 'model_not_found', param: 'model' });
  });

  test('unknown routes and methods are 404 in the error shape', async () => {
    for (const [method, p] of [['GET', '/nope'], ['GET', '/v1/completions'], ['GET', '/v1/chat/completions'], ['POST', '/v1/embeddings']]) {
      const r = await fetch(`${tiny.url}${p}`, { method });
      expect(r.status).toBe(404);
      const body = (await r.json()) as any;
      expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(body.error.type).toBe('not_found_error');
      expect(body.error.message).toContain(p);
    }
  });

  test('GET /metrics is Prometheus text with the serving metrics', async () => {
    // Other tests share the server: compare counters across this request only.
    const counters = async () => {
      const text = await (await fetch(`${tiny.url}/metrics`)).text();
      const read = (name: string) => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      return {
        prompt: read('roost_prompt_tokens_total'),
        generated: read('roost_generation_tokens_total'),
        length: read('roost_requests_total{outcome="length"}'),
      };
    };
    const before = await counters();
    expect((await post(tiny.url, { prompt: [1, 2, 3], max_tokens: 2, logit_bias: NO_EOS })).status).toBe(200);
    const after = await counters();
    expect({ prompt: after.prompt - before.prompt, generated: after.generated - before.generated, length: after.length - before.length }).toEqual({
      prompt: 3,
      generated: 2,
      length: 1,
    });
    const r = await fetch(`${tiny.url}/metrics`);
    expect(r.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await r.text();
    for (const name of [
      'roost_requests_running', 'roost_requests_waiting', 'roost_time_to_first_token_seconds_bucket', 'roost_inter_token_latency_seconds_bucket',
      'roost_queue_time_seconds_bucket', 'roost_prompt_tokens_total', 'roost_generation_tokens_total', 'roost_kv_memory_bytes',
      'roost_engine_sequences', 'roost_step_seconds_bucket', 'roost_requests_total{outcome="length"}',
    ]) {
      expect(text).toContain(name);
    }
  });
});

describe('completions', () => {
  test('greedy completion matches the engine, with usage', async () => {
    const r = await post(tiny.url, { model: 'gpt2-tiny', prompt: [5, 6, 7], max_tokens: 6, temperature: 0, logit_bias: NO_EOS });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ object: 'text_completion', model: 'gpt2-tiny', usage: { prompt_tokens: 3, completion_tokens: 6, total_tokens: 9 } });
    expect(r.json.id).toMatch(/^cmpl-/);
    const tok = loadTokenizer(TINY);
    // The bias only moves eos, which greedy never picked here if the text matches.
    expect(r.json.choices).toEqual([{ index: 0, text: tok.decode(await greedy([5, 6, 7], 6)), logprobs: null, finish_reason: 'length' }]);
  });

  test('a text prompt is tokenized; the same seed gives the same text', async () => {
    const body = { prompt: 'hello world', max_tokens: 8, seed: 42, logit_bias: NO_EOS };
    const a = await post(tiny.url, body);
    const b = await post(tiny.url, body);
    expect(a.json.choices[0].text).toBe(b.json.choices[0].text);
    expect(a.json.usage.prompt_tokens).toBe(loadTokenizer(TINY).encode('hello world').length);
  });

  test('prompt as string[], int[][] with n: one choice per prompt and sample, index = prompt*n + i', async () => {
    for (const prompt of [['a b', 'c d', 'e'], [[1, 2], [3], [4, 5, 6]]]) {
      const r = await post(tiny.url, { prompt, n: 2, max_tokens: 3, seed: 7, logit_bias: NO_EOS });
      expect(r.status).toBe(200);
      expect(r.json.choices.map((c: any) => c.index)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(r.json.usage.completion_tokens).toBe(18);
    }
  });

  test('n samples use seed + i: choice i equals a single request with seed + i', async () => {
    const many = await post(tiny.url, { prompt: [9, 9], n: 3, max_tokens: 5, seed: 100, logit_bias: NO_EOS });
    for (let i = 0; i < 3; i++) {
      const one = await post(tiny.url, { prompt: [9, 9], max_tokens: 5, seed: 100 + i, logit_bias: NO_EOS });
      expect(many.json.choices[i].text).toBe(one.json.choices[0].text);
    }
  });

  test('best_of returns the sample with the highest cumulative log-prob', async () => {
    const body = { prompt: [1, 2, 3], max_tokens: 5, seed: 3, logprobs: 0, logit_bias: NO_EOS };
    const all = await post(tiny.url, { ...body, n: 4 });
    const sums = all.json.choices.map((c: any) => c.logprobs.token_logprobs.reduce((a: number, b: number) => a + b, 0));
    const best = all.json.choices[sums.indexOf(Math.max(...sums))];
    const r = await post(tiny.url, { ...body, best_of: 4 });
    expect(r.json.choices).toHaveLength(1);
    expect(r.json.choices[0].text).toBe(best.text);
    expect(r.json.usage.completion_tokens).toBe(20); // every sample counts
    const two = await post(tiny.url, { ...body, best_of: 4, n: 2 });
    expect(two.json.choices.map((c: any) => c.index)).toEqual([0, 1]);
  });

  test('echo returns the prompt; with logprobs the prompt log-probs, first null', async () => {
    const r = await post(tiny.url, { prompt: [10, 20, 30], max_tokens: 2, echo: true, logprobs: 2, temperature: 0, logit_bias: NO_EOS });
    const c = r.json.choices[0];
    const tok = loadTokenizer(TINY);
    expect(c.text.startsWith(tok.decode([10, 20, 30]))).toBe(true);
    expect(c.logprobs.tokens).toHaveLength(5);
    expect(c.logprobs.token_logprobs[0]).toBeNull();
    expect(c.logprobs.top_logprobs[0]).toBeNull();
    // Prompt log-probs as the engine computes them.
    const seq = ref.createSequence({ temperature: 0 });
    const [e] = await ref.step([{ seq, tokens: [10, 20, 30], sample: false, promptLogprobs: true }]);
    ref.freeSequence(seq);
    expect(c.logprobs.token_logprobs[1]).toBeCloseTo(e.promptLogprobs![1], 5);
    expect(c.logprobs.token_logprobs[2]).toBeCloseTo(e.promptLogprobs![2], 5);
    const offsets = c.logprobs.text_offset;
    for (let i = 1; i < offsets.length; i++) expect(offsets[i]).toBeGreaterThanOrEqual(offsets[i - 1]);
  });

  test('echo with max_tokens 0 scores the prompt only (lm-evaluation-harness style)', async () => {
    const r = await post(tiny.url, { prompt: 'the cat sat', max_tokens: 0, echo: true, logprobs: 0 });
    expect(r.status).toBe(200);
    const c = r.json.choices[0];
    expect(c.text).toBe('the cat sat');
    expect(c.logprobs.tokens.join('')).toBe('the cat sat');
    expect(c.logprobs.token_logprobs.slice(1).every((x: number) => x < 0)).toBe(true);
    expect(r.json.usage.completion_tokens).toBe(0);
  });

  test('logprobs=k gives the legacy shape with k alternatives, k + 1 when the sampled token is not among them', async () => {
    const r = await post(tiny.url, { prompt: [4, 4], max_tokens: 4, logprobs: 3, seed: 1, logit_bias: NO_EOS });
    const lp = r.json.choices[0].logprobs;
    expect(Object.keys(lp).sort()).toEqual(['text_offset', 'token_logprobs', 'tokens', 'top_logprobs']);
    expect(lp.tokens).toHaveLength(4);
    expect(lp.tokens.join('')).toBe(r.json.choices[0].text);
    lp.top_logprobs.forEach((top: Record<string, number>, i: number) => {
      expect(top[lp.tokens[i]]).toBeCloseTo(lp.token_logprobs[i], 5);
      // The sampled token is among the k best exactly when fewer than k others beat it.
      const better = Object.values(top).filter((v) => v > lp.token_logprobs[i]).length;
      expect(Object.keys(top)).toHaveLength(better < 3 ? 3 : 4);
    });
    expect(lp.text_offset[0]).toBe(0);
  });

  test('stop strings cut the text and never leak into the stream', async () => {
    const body = { prompt: [7, 8, 9], max_tokens: 20, temperature: 0, logit_bias: NO_EOS };
    const full = (await post(tiny.url, body)).json.choices[0].text as string;
    expect(full.length).toBeGreaterThan(6);
    const stop = full.slice(4, 7);
    const cut = full.slice(0, full.indexOf(stop));
    const r = await post(tiny.url, { ...body, stop: [stop, 'zzzzqq'] });
    expect(r.json.choices[0]).toMatchObject({ text: cut, finish_reason: 'stop' });
    const s = await postStream(tiny.url, { ...body, stop });
    const chunks = s.events.filter((e) => e !== '[DONE]').map((e: any) => e.choices[0]);
    expect(chunks.map((c: any) => c.text).join('')).toBe(cut);
    expect(chunks[chunks.length - 1].finish_reason).toBe('stop');
  });

  test('logit_bias forces a token', async () => {
    const r = await post(bytes.url, { prompt: 'x', max_tokens: 5, logit_bias: { '65': 100 }, seed: 1 });
    expect(r.json.choices[0].text).toBe('AAAAA');
    const ban = await post(bytes.url, { prompt: 'x', max_tokens: 5, temperature: 0, logit_bias: { '65': -100 } });
    expect(ban.json.choices[0].text).not.toContain('A');
  });

  test('end of sequence stops with finish_reason stop and no text for it', async () => {
    const r = await post(bytes.url, { prompt: 'x', max_tokens: 5, logit_bias: { '256': 100 } });
    expect(r.json.choices[0]).toMatchObject({ text: '', finish_reason: 'stop' });
    expect(r.json.usage.completion_tokens).toBe(1);
  });

  test('suffix lays the prompt out PSM on a model with FIM tokens', async () => {
    const r = await post(bytes.url, { prompt: 'def f(', suffix: '):\n', max_tokens: 4, temperature: 0 });
    expect(r.status).toBe(200);
    expect(r.json.usage.prompt_tokens).toBe(3 + 'def f('.length + '):\n'.length);
    const e = await post(tiny.url, { prompt: 'a', suffix: 'b' });
    expect(e.status).toBe(400);
    expect(e.json.error).toMatchObject({ param: 'suffix', type: 'invalid_request_error' });
    expect(e.json.error.message).toMatch(/fim_prefix/);
  });

  test('streamed text equals the whole text, decoded from the sampled bytes', async () => {
    // Random bytes from the byte model: invalid sequences and split characters are likely.
    // (Scripted multi-byte tokens are checked exactly in completion.test.ts.)
    const body = { prompt: 'x', max_tokens: 40, seed: 5, temperature: 1, logprobs: 0, logit_bias: { '256': -100, '257': -100, '258': -100, '259': -100 } };
    const whole = await post(bytes.url, body);
    const tokens: string[] = whole.json.choices[0].logprobs.tokens;
    const raw = Buffer.concat(tokens.map((t) => (t.startsWith('bytes:') ? Buffer.from(t.slice(6).replace(/\\x/g, ''), 'hex') : Buffer.from(t, 'utf8'))));
    expect(raw.length).toBe(40);
    const expected = raw.toString('utf8');
    const s = await postStream(bytes.url, body);
    const texts = s.events.filter((e) => e !== '[DONE]').map((e: any) => e.choices[0].text as string);
    expect(texts.join('')).toBe(expected);
    expect(whole.json.choices[0].text).toBe(expected);
  });

  test('prompt + max_tokens beyond the context is a 400 naming the limit', async () => {
    const r = await post(tiny.url, { prompt: Array(120).fill(1), max_tokens: 16 });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'context_length_exceeded', param: 'max_tokens' });
    expect(r.json.error.message).toContain('128');
    const p = await post(tiny.url, { prompt: Array(130).fill(1), max_tokens: 0 });
    expect(p.json.error.param).toBe('prompt');
  });

  test('a model with no context limit takes long requests', async () => {
    const u = await start(UNBOUNDED);
    try {
      const r = await post(u.url, { prompt: Array(300).fill(3), max_tokens: 3, temperature: 0 });
      expect(r.status).toBe(200);
      expect(r.json.usage.prompt_tokens).toBe(300);
      expect(((await (await fetch(`${u.url}/v1/models`)).json()) as any).data[0].max_model_len).toBeNull();
    } finally {
      await u.close(0);
    }
  });

  test('a wrong model name is 404 naming model', async () => {
    const r = await post(tiny.url, { model: 'gpt-4', prompt: 'x' });
    expect(r.status).toBe(404);
    expect(r.json.error).toMatchObject({ code: 'model_not_found', param: 'model', type: 'not_found_error' });
  });

  test.each([
    [{ prompt: 'x', max_tokens: -1 }, 'max_tokens'],
    [{ prompt: 'x', temperature: 3 }, 'temperature'],
    [{ prompt: 'x', top_p: 0 }, 'top_p'],
    [{ prompt: 'x', top_k: 1.5 }, 'top_k'],
    [{ prompt: 'x', n: 0 }, 'n'],
    [{ prompt: 'x', n: 3, best_of: 2 }, 'best_of'],
    [{ prompt: 'x', best_of: 2, stream: true }, 'best_of'],
    [{ prompt: 'x', stop: [1] }, 'stop[0]'],
    [{ prompt: 'x', stop: '' }, 'stop'],
    [{ prompt: 'x', seed: 1.5 }, 'seed'],
    [{ prompt: 'x', echo: 'yes' }, 'echo'],
    [{ prompt: 'x', logprobs: 21 }, 'logprobs'],
    [{ prompt: 'x', logprobs: true }, 'logprobs'],
    [{ prompt: 'x', logit_bias: { abc: 1 } }, 'logit_bias'],
    [{ prompt: 'x', logit_bias: { '600': 1 } }, 'logit_bias'],
    [{ prompt: 'x', logit_bias: { '5': 101 } }, 'logit_bias[5]'],
    [{ prompt: 'x', stream_options: { include_usage: true } }, 'stream_options'],
    [{ prompt: 'x', stream: true, stream_options: { foo: 1 } }, 'stream_options.foo'],
    [{ prompt: 'x', suffix: 5 }, 'suffix'],
    [{ prompt: 'x', presence_penalty: 2.5 }, 'presence_penalty'],
    [{ prompt: 'x', frequency_penalty: -3 }, 'frequency_penalty'],
    [{ prompt: 'x', foo: 1 }, 'foo'],
    [{ prompt: [1, 'a'] }, 'prompt[1]'],
    [{ prompt: [[1], 'a'] }, 'prompt[1]'],
    [{ prompt: [512] }, 'prompt[0]'],
    [{ prompt: [[1], [-1]] }, 'prompt[1][0]'],
    [{ prompt: [] }, 'prompt'],
    [{ prompt: '' }, 'prompt'],
    [{ max_tokens: 3 }, 'prompt'],
    [{ prompt: { a: 1 } }, 'prompt'],
    [{ prompt: 'x', echo: true, suffix: 'y' }, 'echo'],
    [{ prompt: Array(300).fill('a'), n: 1 }, 'prompt'],
    [{ prompt: 'x', n: 100, best_of: 100, max_tokens: 1, stream: false, user: 'u', model: 'gpt2-tiny', echo: false, prompt2: 1 }, 'prompt2'],
  ])('400 for %j names %s', async (body, param) => {
    const r = await post(tiny.url, body);
    expect(r.status).toBe(400);
    expect(r.json.error.type).toBe('invalid_request_error');
    expect(r.json.error.param).toBe(param);
    expect(r.json.error.message).toContain(param.replace(/\[.*$/, '').replace(/^stream_options\./, ''));
  });

  test('accepted OpenAI extras: user, penalties, null fields', async () => {
    const r = await post(tiny.url, {
      prompt: 'x', max_tokens: 1, user: 'me', presence_penalty: 0.5, frequency_penalty: -1, suffix: null, logprobs: null, stop: null, seed: null, n: null,
    });
    expect(r.status).toBe(200);
  });

  test('invalid JSON and invalid UTF-8 are 400 with what is wrong', async () => {
    const j = await post(tiny.url, '{"prompt": "x",');
    expect(j.status).toBe(400);
    expect(j.json.error.code).toBe('invalid_json');
    expect(j.json.error.message).toMatch(/not valid JSON/);
    const u = await post(tiny.url, new Uint8Array([0x7b, 0x22, 0x70, 0xff, 0x22, 0x3a, 0x31, 0x7d]));
    expect(u.status).toBe(400);
    expect(u.json.error.code).toBe('invalid_encoding');
    expect(u.json.error.message).toMatch(/UTF-8.*offset 3/);
    const e = await post(tiny.url, '');
    expect(e.json.error.message).toMatch(/empty/);
    const arr = await post(tiny.url, '[1,2]');
    expect(arr.json.error.message).toMatch(/JSON object/);
  });
});

describe('streaming', () => {
  test('SSE chunks end with [DONE]; include_usage adds a usage chunk with empty choices', async () => {
    const s = await postStream(tiny.url, { prompt: [1, 2], max_tokens: 5, n: 2, seed: 4, logit_bias: NO_EOS, stream_options: { include_usage: true } });
    expect(s.status).toBe(200);
    expect(s.events[s.events.length - 1]).toBe('[DONE]');
    const chunks = s.events.slice(0, -1);
    for (const c of chunks) expect(c).toMatchObject({ object: 'text_completion', model: 'gpt2-tiny' });
    const usage = chunks[chunks.length - 1];
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual({ prompt_tokens: 2, completion_tokens: 10, total_tokens: 12 });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    const whole = await post(tiny.url, { prompt: [1, 2], max_tokens: 5, n: 2, seed: 4, logit_bias: NO_EOS });
    for (const i of [0, 1]) {
      const mine = chunks.slice(0, -1).filter((c: any) => c.choices[0].index === i).map((c: any) => c.choices[0]);
      expect(mine.map((c: any) => c.text).join('')).toBe(whole.json.choices[i].text);
      expect(mine[mine.length - 1].finish_reason).toBe('length');
    }
  });

  test('a stream without include_usage has no usage field; echo streams the prompt first', async () => {
    const s = await postStream(tiny.url, { prompt: 'the', max_tokens: 2, echo: true, logit_bias: NO_EOS });
    const chunks = s.events.slice(0, -1);
    expect(chunks[0].choices[0].text).toBe('the');
    for (const c of chunks) expect(c).not.toHaveProperty('usage');
  });

  test('a stream with logprobs carries them per chunk', async () => {
    const s = await postStream(tiny.url, { prompt: [3], max_tokens: 4, logprobs: 1, seed: 2, logit_bias: NO_EOS });
    const lps = s.events.slice(0, -1).map((c: any) => c.choices[0].logprobs).filter(Boolean);
    expect(lps.flatMap((l: any) => l.tokens)).toHaveLength(4);
  });
});

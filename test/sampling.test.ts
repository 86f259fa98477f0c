// The sampling fields of OpenAI and vLLM end to end on a real server
// (gpt2-tiny): greedy continuations under presence / frequency / repetition
// penalties equal the PyTorch reference's (tools/reference/sampling.py,
// test/fixtures/sampling.json) token for token, over HTTP and the WebSocket;
// min_tokens, ignore_eos, stop_token_ids and include_stop_str_in_output; each
// field outside its range is a 400 naming it; and the request body of vLLM's
// benchmark_serving.py runs unchanged.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WebSocket } from 'ws';

import { tokenString } from '../src/engine/completion';
import type { Tokenizer } from '../src/engine/tokenizer';
import type { RunningServer } from '../src/server';
import { decodeServerBinary, encodeClientBinary, ServerEvent } from '../src/ws/frames';
import { FIXTURES, post, postStream, start, TINY } from './http.helpers';

interface GreedyCase {
  name: string;
  params: Record<string, number>;
  prompt: number[];
  max_tokens: number;
  ids: number[];
  logprobs: number[];
  finish_reason: 'stop' | 'length';
}

const GOLDEN = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'sampling.json'), 'utf8'));
const CASES: GreedyCase[] = GOLDEN.greedy.cases;
const PLAIN = CASES.find((c) => c.name === 'plain')!;
const EOS = GOLDEN.greedy.eos_token_id as number; // 511

let s: RunningServer;
let tok: Tokenizer;

beforeAll(async () => {
  s = await start(TINY);
  tok = s.holder.runtime!.tokenizer;
});
afterAll(() => s?.close(0));

const strings = (ids: number[]) => ids.map((id) => tokenString(tok, id));

describe('greedy with penalties equals the reference', () => {
  test.each(CASES.map((c) => [c.name, c] as const))('%s (HTTP)', async (_name, c) => {
    const r = await post(s.url, { prompt: c.prompt, max_tokens: c.max_tokens, temperature: 0, logprobs: 0, ...c.params });
    expect(r.status).toBe(200);
    const choice = r.json.choices[0];
    expect(choice.logprobs.tokens).toEqual(strings(c.ids));
    expect(choice.text).toBe(tok.decode(c.ids));
    expect(choice.finish_reason).toBe(c.finish_reason);
    // Reported log-probs stay the model's raw ones, whatever the penalties.
    choice.logprobs.token_logprobs.forEach((lp: number, i: number) => expect(Math.abs(lp - c.logprobs[i])).toBeLessThan(1e-4));
    if (c !== PLAIN) expect(c.ids).not.toEqual(PLAIN.ids);
  });

  test('over the WebSocket (JSON and protobuf): the same token ids', async () => {
    const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
    const events: ServerEvent[] = [];
    ws.on('message', (data: Buffer, binary: boolean) => events.push(binary ? decodeServerBinary(data) : JSON.parse(data.toString())));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const asked = CASES.filter((c) => c !== PLAIN);
    asked.forEach((c, i) => {
      const m = { type: 'request', id: `j${i}`, prompt: c.prompt, max_tokens: c.max_tokens, temperature: 0, ...c.params };
      ws.send(JSON.stringify(m));
      ws.send(encodeClientBinary({ ...m, id: `p${i}` }));
    });
    const deadline = Date.now() + 20_000;
    while (events.filter((e) => e.type === 'done').length < 2 * asked.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    ws.close();
    asked.forEach((c, i) => {
      for (const id of [`j${i}`, `p${i}`]) {
        const tokens = events.filter((e) => e.id === id && e.type === 'token').map((e) => (e as { token: number }).token);
        expect([c.name, id, tokens]).toEqual([c.name, id, c.ids]);
      }
    });
  });
});

describe('min_tokens, ignore_eos, stop_token_ids, include_stop_str_in_output', () => {
  // eos is the argmax at every step: a choice would end at its first token.
  const EOS_FIRST = { [String(EOS)]: 100 };

  test('min_tokens holds eos back for that many tokens; ignore_eos runs to max_tokens', async () => {
    const base = { prompt: PLAIN.prompt, temperature: 0, max_tokens: 8, logit_bias: EOS_FIRST };
    const none = await post(s.url, base);
    expect([none.json.choices[0].finish_reason, none.json.usage.completion_tokens]).toEqual(['stop', 1]);
    const held = await post(s.url, { ...base, min_tokens: 5 });
    // Five tokens that are not eos, then eos (which counts, as always).
    expect([held.json.choices[0].finish_reason, held.json.usage.completion_tokens]).toEqual(['stop', 6]);
    const ignored = await post(s.url, { ...base, ignore_eos: true });
    expect([ignored.json.choices[0].finish_reason, ignored.json.usage.completion_tokens]).toEqual(['length', 8]);
    // min_tokens = max_tokens with ignore_eos false: exactly max_tokens.
    const full = await post(s.url, { ...base, min_tokens: 8 });
    expect([full.json.choices[0].finish_reason, full.json.usage.completion_tokens]).toEqual(['length', 8]);
    // Sampling (temperature 1), n choices: each has at least min_tokens.
    const sampled = await post(s.url, { ...base, temperature: 1, n: 4, seed: 7, min_tokens: 3 });
    expect(sampled.json.usage.completion_tokens).toBeGreaterThanOrEqual(4 * 3);
  });

  test('min_tokens: no stop string ends a choice before it', async () => {
    const text = tok.decode(PLAIN.ids);
    const first = strings(PLAIN.ids.slice(0, 2)).join('');
    const stop = strings([PLAIN.ids[1]])[0];
    const early = await post(s.url, { prompt: PLAIN.prompt, temperature: 0, max_tokens: 12, stop });
    expect(early.json.choices[0].finish_reason).toBe('stop');
    expect(early.json.usage.completion_tokens).toBeLessThanOrEqual(2);
    const late = await post(s.url, { prompt: PLAIN.prompt, temperature: 0, max_tokens: 12, stop, min_tokens: 6 });
    expect(late.json.usage.completion_tokens).toBeGreaterThanOrEqual(6);
    expect(late.json.choices[0].text.startsWith(strings(PLAIN.ids.slice(0, 6)).join(''))).toBe(true);
    expect(text.startsWith(first)).toBe(true);
  });

  test('stop_token_ids end the choice; include_stop_str_in_output keeps the token text', async () => {
    // The first token of the plain continuation that has not come before it.
    const k = PLAIN.ids.findIndex((id, i) => i >= 2 && !PLAIN.ids.slice(0, i).includes(id));
    const stopId = PLAIN.ids[k];
    const body = { prompt: PLAIN.prompt, temperature: 0, max_tokens: 20, stop_token_ids: [stopId] };
    const cut = await post(s.url, body);
    expect(cut.json.choices[0]).toMatchObject({ finish_reason: 'stop', text: tok.decode(PLAIN.ids.slice(0, k)) });
    expect(cut.json.usage.completion_tokens).toBe(k + 1);
    const kept = await post(s.url, { ...body, include_stop_str_in_output: true, logprobs: 0 });
    expect(kept.json.choices[0]).toMatchObject({ finish_reason: 'stop', text: tok.decode(PLAIN.ids.slice(0, k + 1)) });
    expect(kept.json.choices[0].logprobs.tokens).toEqual(strings(PLAIN.ids.slice(0, k + 1)));
    // Streamed: the same text.
    const streamed = await postStream(s.url, { ...body, include_stop_str_in_output: true });
    const chunks = streamed.events.filter((e) => e !== '[DONE]');
    expect(chunks.map((e) => e.choices[0].text).join('')).toBe(tok.decode(PLAIN.ids.slice(0, k + 1)));
  });

  test('include_stop_str_in_output keeps the matched stop string', async () => {
    const text = tok.decode(PLAIN.ids);
    const stop = text.slice(5, 8);
    const at = text.indexOf(stop);
    const body = { prompt: PLAIN.prompt, temperature: 0, max_tokens: PLAIN.max_tokens, stop };
    const cut = await post(s.url, body);
    expect(cut.json.choices[0]).toMatchObject({ finish_reason: 'stop', text: text.slice(0, at) });
    const kept = await post(s.url, { ...body, include_stop_str_in_output: true });
    expect(kept.json.choices[0]).toMatchObject({ finish_reason: 'stop', text: text.slice(0, at) + stop });
    const streamed = await postStream(s.url, { ...body, include_stop_str_in_output: true });
    expect(streamed.events.filter((e) => e !== '[DONE]').map((e) => e.choices[0].text).join('')).toBe(text.slice(0, at) + stop);
  });
});

describe('ranges', () => {
  test.each([
    ['presence_penalty', 2.5],
    ['presence_penalty', -2.01],
    ['presence_penalty', '1'],
    ['frequency_penalty', 3],
    ['frequency_penalty', -2.5],
    ['repetition_penalty', 0],
    ['repetition_penalty', -1],
    ['repetition_penalty', 2.01],
    ['min_p', -0.1],
    ['min_p', 1.5],
    ['min_tokens', -1],
    ['min_tokens', 1.5],
    ['min_tokens', 17], // above max_tokens (16 by default)
    ['ignore_eos', 'yes'],
    ['include_stop_str_in_output', 1],
    ['stop_token_ids', 5],
    ['stop_token_ids[0]', [512]],
    ['stop_token_ids[1]', [3, -1]],
    ['stop_token_ids[0]', [1.5]],
  ])('%s = %j is a 400 naming it', async (param, value) => {
    const field = param.replace(/\[\d+\]$/, '');
    const r = await post(s.url, { prompt: 'x', [field]: value });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'invalid_parameter', param, type: 'invalid_request_error' });
    expect(r.json.error.message).toContain(field);
  });

  test('the edges of each range are accepted', async () => {
    const r = await post(s.url, {
      prompt: 'x', max_tokens: 2, presence_penalty: -2, frequency_penalty: 2, repetition_penalty: 2, min_p: 1, min_tokens: 2,
      ignore_eos: false, stop_token_ids: [0, 511], include_stop_str_in_output: false,
    });
    expect(r.status).toBe(200);
  });

  test('the WebSocket refuses the same way', async () => {
    const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
    const got: any[] = [];
    ws.on('message', (d: Buffer) => got.push(JSON.parse(d.toString())));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(JSON.stringify({ type: 'request', id: 'a', prompt: 'x', min_p: 2 }));
    const deadline = Date.now() + 5000;
    while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    ws.close();
    expect(got[0]).toMatchObject({ type: 'error', id: 'a', code: 'invalid_parameter', param: 'min_p' });
  });
});

describe("vLLM's benchmark_serving.py request shape", () => {
  // async_request_openai_completions: the body it posts to /v1/completions
  // (benchmarks/backend_request_func.py), with --ignore-eos and min_tokens in extra_body.
  test.each([
    ['with best_of and logprobs null', { temperature: 0.0, best_of: 1, logprobs: null }],
    ['with repetition_penalty 1.0 and usage', { temperature: 0.0, repetition_penalty: 1.0, logprobs: null, stream_options: { include_usage: true } }],
    ['with min_tokens', { temperature: 0.0, best_of: 1, logprobs: null, min_tokens: 24, stream_options: { include_usage: true } }],
  ])('%s: completes with exactly max_tokens tokens', async (_name, extra) => {
    const models = await (await fetch(`${s.url}/v1/models`)).json();
    const body = {
      model: models.data[0].id,
      prompt: 'In the beginning God created the heaven and the earth.',
      max_tokens: 24,
      stream: true,
      ignore_eos: true,
      ...extra,
    };
    const res = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    const raw = await res.text();
    const events = raw.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
    expect(events[events.length - 1]).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const finish = chunks.flatMap((c) => c.choices).filter((c: any) => c.finish_reason !== null);
    expect(finish).toEqual([expect.objectContaining({ finish_reason: 'length' })]);
    const usage = chunks.find((c) => c.usage)?.usage;
    if (usage) expect(usage.completion_tokens).toBe(24);
    // Without usage, count from a non-streamed twin.
    const twin = await post(s.url, { ...body, stream: false, stream_options: undefined });
    expect(twin.json.usage.completion_tokens).toBe(24);
  });
});

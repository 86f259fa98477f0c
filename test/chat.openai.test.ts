// POST /v1/chat/completions through the official `openai` SDK against a GPT-2
// fixture with a ChatML chat template: the prompt is the template rendered as
// Python jinja2 renders it (golden), and the output is the completion path's
// on that prompt, token for token: text, log-probs, usage, n with seeds,
// streaming deltas and include_usage.
import * as fs from 'node:fs';
import OpenAI from 'openai';

import type { RunningServer } from '../src/server';
import { goldenOf, tinyWithChatml } from './chat.helpers';
import { start, TINY } from './http.helpers';

// gpt2-tiny ends a sequence at token 511: banned where a request must run to its length.
const NO_EOS = { '511': -100 };
const chatml = goldenOf('chatml');
const CASE = chatml.cases[1]; // system + user
const RENDERED = CASE.rendered!;
const messages = CASE.messages as OpenAI.ChatCompletionMessageParam[];

let dir: string;
let s: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  dir = tinyWithChatml();
  s = await start(dir, { modelId: 'tiny-chat' });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
afterAll(async () => {
  await s.close(0);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A token's bytes from its text: UTF-8, or OpenAI's "bytes:\\xNN..." form for part of a character. */
function tokenBytes(token: string): number[] {
  if (!token.startsWith('bytes:')) return Array.from(Buffer.from(token, 'utf8'));
  return token.slice(6).split('\\x').slice(1).map((h) => parseInt(h, 16));
}

async function tokenize(body: object): Promise<number[]> {
  const r = await fetch(`${s.url}/tokenize`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  expect(r.status).toBe(200);
  return ((await r.json()) as { tokens: number[] }).tokens;
}

test('the prompt is the template rendered by Python jinja2, tokenized', async () => {
  const fromMessages = await tokenize({ messages });
  expect(fromMessages).toEqual(await tokenize({ prompt: RENDERED }));
  expect(fromMessages.length).toBeGreaterThan(10);
  const r = await fetch(`${s.url}/detokenize`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tokens: fromMessages }) });
  expect(await r.json()).toEqual({ prompt: RENDERED });
});

test('greedy chat equals /v1/completions on the rendered prompt, token for token, with exact usage and logprobs', async () => {
  const chat = await client.chat.completions.create({
    model: 'tiny-chat', messages, max_tokens: 10, temperature: 0, logit_bias: NO_EOS, logprobs: true, top_logprobs: 3,
  });
  const legacy = await client.completions.create({ model: 'tiny-chat', prompt: RENDERED, max_tokens: 10, temperature: 0, logit_bias: NO_EOS, logprobs: 3 });
  const promptTokens = (await tokenize({ messages })).length;

  expect(chat.object).toBe('chat.completion');
  expect(chat.id).toMatch(/^chatcmpl-/);
  expect(chat.model).toBe('tiny-chat');
  expect(chat.choices).toHaveLength(1);
  const c = chat.choices[0];
  expect(c.index).toBe(0);
  expect(c.message).toEqual({ role: 'assistant', content: legacy.choices[0].text });
  expect(c.finish_reason).toBe('length');
  expect(chat.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 10, total_tokens: promptTokens + 10 });
  expect(legacy.usage).toEqual(chat.usage);

  const entries = c.logprobs!.content!;
  const lp = legacy.choices[0].logprobs!;
  expect(entries.map((e) => e.token)).toEqual(lp.tokens);
  expect(entries.map((e) => e.logprob)).toEqual(lp.token_logprobs);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    expect(e.bytes).toEqual(tokenBytes(e.token));
    expect(e.top_logprobs).toHaveLength(3);
    // Greedy: the chosen token is the best alternative; the alternatives are the legacy ones, best first.
    expect(e.top_logprobs[0]).toEqual({ token: e.token, logprob: e.logprob, bytes: e.bytes });
    expect(Object.fromEntries(e.top_logprobs.map((t) => [t.token, t.logprob]))).toEqual(lp.top_logprobs![i]);
    for (let j = 1; j < 3; j++) expect(e.top_logprobs[j].logprob).toBeLessThanOrEqual(e.top_logprobs[j - 1].logprob);
  }
});

test('top_logprobs counts exactly k, 0 included; without logprobs there are none', async () => {
  for (const k of [0, 1, 5]) {
    const r = await client.chat.completions.create({ messages, max_tokens: 4, seed: 3, logit_bias: NO_EOS, logprobs: true, top_logprobs: k });
    const entries = r.choices[0].logprobs!.content!;
    expect(entries).toHaveLength(4);
    for (const e of entries) expect(e.top_logprobs).toHaveLength(k);
  }
  const none = await client.chat.completions.create({ messages, max_tokens: 4, seed: 3 });
  expect(none.choices[0].logprobs).toBeNull();
});

test('n choices with a seed: choice i is the completion with seed + i', async () => {
  const chat = await client.chat.completions.create({ messages, max_tokens: 6, n: 3, seed: 42, logit_bias: NO_EOS });
  const legacy = await client.completions.create({ prompt: RENDERED, max_tokens: 6, n: 3, seed: 42, logit_bias: NO_EOS, model: 'tiny-chat' });
  expect(chat.choices.map((c) => c.index)).toEqual([0, 1, 2]);
  expect(chat.choices.map((c) => c.message.content)).toEqual(legacy.choices.map((c) => c.text));
  expect(chat.usage!.completion_tokens).toBe(18);
  // Three seeds, three different samples (the check that n is not one sample thrice).
  expect(new Set(chat.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
});

test('streamed: role first, then content deltas, then finish_reason; include_usage adds the usage chunk; equals the whole answer', async () => {
  const body = { messages, max_completion_tokens: 9, n: 2, seed: 5, logit_bias: NO_EOS, logprobs: true, top_logprobs: 2 };
  const whole = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  const text = ['', ''];
  const entries: OpenAI.ChatCompletionTokenLogprob[][] = [[], []];
  const firstOf: Array<OpenAI.ChatCompletionChunk.Choice | undefined> = [undefined, undefined];
  const finish: Array<string | null> = [null, null];
  let usage: OpenAI.CompletionUsage | null | undefined;
  let chunks = 0;
  let afterUsage = 0;
  for await (const chunk of stream) {
    chunks++;
    expect(chunk.object).toBe('chat.completion.chunk');
    if (usage) afterUsage++;
    if (chunk.usage) {
      expect(chunk.choices).toEqual([]);
      usage = chunk.usage;
      continue;
    }
    expect(chunk.usage).toBeNull();
    const c = chunk.choices[0];
    if (!firstOf[c.index]) {
      firstOf[c.index] = c;
      expect(c.delta).toEqual({ role: 'assistant', content: '' });
      continue;
    }
    expect(c.delta.role).toBeUndefined();
    if (c.finish_reason) {
      expect(c.delta).toEqual({});
      finish[c.index] = c.finish_reason;
      continue;
    }
    expect(finish[c.index]).toBeNull();
    text[c.index] += c.delta.content;
    entries[c.index].push(...c.logprobs!.content!);
  }
  expect(chunks).toBeGreaterThan(4);
  expect(afterUsage).toBe(0);
  expect(finish).toEqual(['length', 'length']);
  expect(text).toEqual(whole.choices.map((c) => c.message.content));
  expect(entries).toEqual(whole.choices.map((c) => c.logprobs!.content));
  expect(usage).toEqual(whole.usage);
  expect(usage!.completion_tokens).toBe(18);
});

test('stop strings and finish_reason stop; max_tokens defaults to the rest of the context', async () => {
  const greedy = await client.chat.completions.create({ messages, max_tokens: 12, temperature: 0, logit_bias: NO_EOS });
  const text = greedy.choices[0].message.content!;
  const stop = text.slice(4, 6);
  const stopped = await client.chat.completions.create({ messages, max_tokens: 12, temperature: 0, logit_bias: NO_EOS, stop });
  expect(stopped.choices[0].message.content).toBe(text.slice(0, text.indexOf(stop)));
  expect(stopped.choices[0].finish_reason).toBe('stop');

  const rest = await client.chat.completions.create({ messages, temperature: 0, logit_bias: NO_EOS });
  expect(rest.usage!.total_tokens).toBe(128); // gpt2-tiny's n_positions
  expect(rest.choices[0].finish_reason).toBe('length');
});

test('bad requests answer 400 with catalogue codes naming the field', async () => {
  const bad = async (body: unknown) => {
    const r = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    expect(r.status).toBe(400);
    return ((await r.json()) as any).error;
  };
  expect(await bad({ max_tokens: 3 })).toMatchObject({ code: 'invalid_parameter', param: 'messages', message: 'messages is required' });
  expect(await bad({ messages: [] })).toMatchObject({ code: 'invalid_parameter', param: 'messages', message: 'messages must not be empty' });
  expect(await bad({ messages: 'hi' })).toMatchObject({ code: 'invalid_parameter', param: 'messages' });
  expect(await bad({ messages: [{ role: 'wizard', content: 'x' }] })).toMatchObject({
    code: 'invalid_parameter', param: 'messages[0].role', message: 'messages[0].role must be "system", "user" or "assistant" (got "wizard")',
  });
  expect(await bad({ messages: [{ role: 'user' }] })).toMatchObject({ code: 'invalid_parameter', param: 'messages[0].content' });
  expect(await bad({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image_url', image_url: { url: 'x' } }] }] })).toMatchObject({
    code: 'unsupported_parameter', param: 'messages[0].content[1].type',
  });
  expect(await bad({ messages: [{ role: 'user', content: [{ type: 'text', text: 5 }] }] })).toMatchObject({ code: 'invalid_parameter', param: 'messages[0].content[0].text' });
  expect(await bad({ messages, logprobs: 3 })).toMatchObject({ code: 'invalid_parameter', param: 'logprobs' });
  expect(await bad({ messages, top_logprobs: 2 })).toMatchObject({ code: 'invalid_parameter', param: 'top_logprobs', message: 'top_logprobs needs logprobs: true' });
  expect(await bad({ messages, logprobs: true, top_logprobs: 21 })).toMatchObject({ code: 'invalid_parameter', param: 'top_logprobs' });
  expect(await bad({ messages, max_completion_tokens: -1 })).toMatchObject({ code: 'invalid_parameter', param: 'max_completion_tokens' });
  expect(await bad({ messages, prompt: 'x' })).toMatchObject({ code: 'unknown_parameter', param: 'prompt' });
  expect(await bad({ messages, tools: [] })).toMatchObject({ code: 'unsupported_parameter', param: 'tools' });
  expect(await bad({ messages, temperature: 9 })).toMatchObject({ code: 'invalid_parameter', param: 'temperature' });
  expect(await bad({ messages, frobnicate: 1 })).toMatchObject({ code: 'unknown_parameter', param: 'frobnicate' });
  expect(await bad({ messages, max_tokens: 200 })).toMatchObject({ code: 'context_length_exceeded' });
});

test('text parts are joined with newlines, as one string would be', async () => {
  const parts = [{ role: 'user', content: [{ type: 'text', text: 'Hello' }, { type: 'text', text: 'there' }] }];
  expect(await tokenize({ messages: parts })).toEqual(await tokenize({ messages: [{ role: 'user', content: 'Hello\nthere' }] }));
});

test('a model without a chat template answers 400 naming --chat-template', async () => {
  const plain = await start(TINY);
  try {
    const res = await fetch(`${plain.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ messages }) });
    expect(res.status).toBe(400);
    const err = ((await res.json()) as any).error;
    expect(err.code).toBe('invalid_parameter');
    expect(err.param).toBe('messages');
    expect(err.message).toContain('--chat-template');
  } finally {
    await plain.close(0);
  }
});

test("a template's roost:stop strings end the reply (--chat-template overriding the model's)", async () => {
  const greedy = await client.chat.completions.create({ messages, max_tokens: 12, temperature: 0, logit_bias: NO_EOS });
  const text = greedy.choices[0].message.content!;
  const stop = text.slice(3, 5);
  const file = `${dir}/stopping.jinja`;
  fs.writeFileSync(file, `{#- roost:stop ${JSON.stringify(stop)} -#}\n` + fs.readFileSync(`${__dirname}/fixtures/chat-templates/chatml.jinja`, 'utf8'));
  const other = await start(dir, { chatTemplate: file });
  try {
    const c = new OpenAI({ baseURL: `${other.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const r = await c.chat.completions.create({ messages, max_tokens: 12, temperature: 0, logit_bias: NO_EOS });
    expect(r.choices[0].message.content).toBe(text.slice(0, text.indexOf(stop)));
    expect(r.choices[0].finish_reason).toBe('stop');
  } finally {
    await other.close(0);
  }
});

// vLLM's utility routes: POST /tokenize (prompt, or messages rendered with the
// chat template), POST /detokenize, GET /version. Ids against the PyTorch
// reference tokenizer's goldens (test/fixtures/gpt2-tiny/golden.json).
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { RunningServer } from '../src/server';
import { goldenOf, tinyWithChatml } from './chat.helpers';
import { loadTokenizer } from '../src/engine/tokenizer';
import { start, TINY } from './http.helpers';

const golden = JSON.parse(fs.readFileSync(path.join(TINY, 'golden.json'), 'utf8'));
let dir: string;
let s: RunningServer;

beforeAll(async () => {
  dir = tinyWithChatml();
  s = await start(dir, { modelId: 'tiny-chat', apiKey: 'k' });
});
afterAll(async () => {
  await s.close(0);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function call(route: string, body?: unknown, method = 'POST') {
  const r = await fetch(`${s.url}${route}`, {
    method,
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer k' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: (await r.json()) as any };
}

test('/tokenize a prompt: the reference ids, count and max_model_len', async () => {
  for (const { text, ids } of golden.tokenizer as Array<{ text: string; ids: number[] }>) {
    const r = await call('/tokenize', { prompt: text });
    expect(r).toEqual({ status: 200, json: { count: ids.length, max_model_len: 128, tokens: ids } });
    expect((await call('/tokenize', { model: 'tiny-chat', prompt: text, add_special_tokens: false })).json.tokens).toEqual(ids);
  }
});

test('/tokenize messages: the chat template rendered as jinja2 renders it; add_generation_prompt', async () => {
  const g = goldenOf('chatml');
  for (const c of g.cases.filter((x) => x.rendered !== undefined)) {
    const fromMessages = await call('/tokenize', { messages: c.messages, add_generation_prompt: c.add_generation_prompt });
    const fromText = await call('/tokenize', { prompt: c.rendered });
    expect(fromMessages.json).toEqual(fromText.json);
  }
  const withPrompt = await call('/tokenize', { messages: g.cases[0].messages });
  const without = await call('/tokenize', { messages: g.cases[0].messages, add_generation_prompt: false });
  expect(withPrompt.json.tokens.slice(0, without.json.count)).toEqual(without.json.tokens);
  expect(withPrompt.json.count).toBeGreaterThan(without.json.count);
});

test('/detokenize: the text of the ids; out-of-vocabulary ids are refused naming the id', async () => {
  for (const { text, ids } of golden.tokenizer as Array<{ text: string; ids: number[] }>) {
    expect(await call('/detokenize', { tokens: ids })).toEqual({ status: 200, json: { prompt: text } });
  }
  expect(await call('/detokenize', { tokens: [] })).toEqual({ status: 200, json: { prompt: '' } });
  const oov = await call('/detokenize', { tokens: [39, 512] });
  expect(oov.status).toBe(400);
  expect(oov.json.error).toMatchObject({ code: 'invalid_parameter', param: 'tokens[1]', message: 'tokens[1] must be a token id from 0 to 511 (the tokenizer\'s vocabulary) (got 512)' });
  expect((await call('/detokenize', { tokens: [-1] })).json.error).toMatchObject({ param: 'tokens[0]' });
  expect((await call('/detokenize', { tokens: [1.5] })).json.error).toMatchObject({ param: 'tokens[0]' });
  expect((await call('/detokenize', {})).json.error).toMatchObject({ code: 'invalid_parameter', param: 'tokens' });
});

test('bad /tokenize requests name their field', async () => {
  const err = async (body: unknown) => {
    const r = await call('/tokenize', body);
    expect(r.status).toBe(r.json.error.code === 'model_not_found' ? 404 : 400);
    return r.json.error;
  };
  expect(await err({})).toMatchObject({ code: 'invalid_parameter', param: 'prompt' });
  expect(await err({ prompt: 5 })).toMatchObject({ code: 'invalid_parameter', param: 'prompt' });
  expect(await err({ prompt: 'x', add_special_tokens: 'yes' })).toMatchObject({ code: 'invalid_parameter', param: 'add_special_tokens' });
  expect(await err({ prompt: 'x', messages: [] })).toMatchObject({ code: 'unknown_parameter', param: 'prompt' });
  expect(await err({ messages: [] })).toMatchObject({ code: 'invalid_parameter', param: 'messages' });
  expect(await err({ messages: [{ role: 'robot', content: 'x' }] })).toMatchObject({ param: 'messages[0].role' });
  expect(await err({ prompt: 'x', extra: 1 })).toMatchObject({ code: 'unknown_parameter', param: 'extra' });
  expect(await err({ prompt: 'x', model: 'other' })).toMatchObject({ code: 'model_not_found', param: 'model' });
  expect(await err([1])).toMatchObject({ code: 'invalid_parameter', param: null });
});

test('GET /version: package.json version; the routes need the API key like the others', async () => {
  const version = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version;
  expect(await call('/version', undefined, 'GET')).toEqual({ status: 200, json: { version } });
  const r = await fetch(`${s.url}/tokenize`, { method: 'POST', body: JSON.stringify({ prompt: 'x' }) });
  expect(r.status).toBe(401);
});

test('a large chat prompt is tokenized off the event loop, with the same ids', async () => {
  const big = 'word '.repeat(14000) + 'end'; // 70 KB: past OFF_THREAD_PROMPT_BYTES
  const rendered = `<|im_start|>user\n${big}<|im_end|>\n<|im_start|>assistant\n`;
  const r = await call('/tokenize', { messages: [{ role: 'user', content: big }] });
  expect(r.status).toBe(200);
  expect(r.json.tokens).toEqual(loadTokenizer(dir).encode(rendered));
  expect((s.holder.runtime!.tokenizeWorker as any).worker).toBeDefined(); // the worker was started for it
  // Too long for gpt2-tiny's 128 positions: the chat route refuses it naming the prompt.
  const chat = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer k' },
    body: JSON.stringify({ messages: [{ role: 'user', content: big }] }),
  });
  expect(chat.status).toBe(400);
  expect(((await chat.json()) as any).error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
});

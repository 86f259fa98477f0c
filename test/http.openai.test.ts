// The official `openai` npm client as a real client: whole and streamed
// completions, stream_options, and errors surfacing as APIError.
import OpenAI from 'openai';

import type { RunningServer } from '../src/server';
import { start, TINY } from './http.helpers';

let s: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  s = await start(TINY, { apiKey: 'k' });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'k', maxRetries: 0 });
});
afterAll(() => s.close(0));

const NO_EOS = { '511': -100 };

test('completions.create, whole', async () => {
  const r = await client.completions.create({ model: 'gpt2-tiny', prompt: 'hello', max_tokens: 5, temperature: 0, logit_bias: NO_EOS });
  expect(r.object).toBe('text_completion');
  expect(r.choices).toHaveLength(1);
  expect(r.choices[0].finish_reason).toBe('length');
  expect(r.usage).toMatchObject({ completion_tokens: 5 });
});

test('completions.create, streamed, with include_usage; the text equals the whole one', async () => {
  const whole = await client.completions.create({ model: 'gpt2-tiny', prompt: 'hello', max_tokens: 8, temperature: 0, logit_bias: NO_EOS });
  const stream = await client.completions.create({
    model: 'gpt2-tiny', prompt: 'hello', max_tokens: 8, temperature: 0, logit_bias: NO_EOS, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let usage: OpenAI.CompletionUsage | null | undefined;
  let finish: string | null = null;
  for await (const chunk of stream) {
    if (chunk.choices.length) {
      text += chunk.choices[0].text;
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  expect(text).toBe(whole.choices[0].text);
  expect(finish).toBe('length');
  expect(usage).toMatchObject({ prompt_tokens: whole.usage!.prompt_tokens, completion_tokens: 8 });
});

test('models.list', async () => {
  const page = await client.models.list();
  expect(page.data.map((m) => m.id)).toEqual(['gpt2-tiny']);
});

test('errors arrive as APIError with status, type, param and code', async () => {
  const err = await client.completions.create({ model: 'gpt2-tiny', prompt: 'x', max_tokens: -5 }).catch((e) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  expect(err.status).toBe(400);
  expect(err.param).toBe('max_tokens');
  expect(err.type).toBe('invalid_request_error');
  const auth = await new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list().catch((e) => e);
  expect(auth).toBeInstanceOf(OpenAI.AuthenticationError);
});

// Chat over the WebSocket (/v1/stream): a "chat" message, JSON or protobuf
// (ChatRequest), gives the same tokens and usage as POST /v1/chat/completions;
// refusals are error events naming the field.
import * as fs from 'node:fs';
import { WebSocket } from 'ws';

import type { RunningServer } from '../src/server';
import { decodeServerBinary, encodeClientBinary, ServerEvent } from '../src/ws/frames';
import { goldenOf, tinyWithChatml } from './chat.helpers';
import { start } from './http.helpers';

const NO_EOS = { '511': -100 };
const messages = goldenOf('chatml').cases[2].messages;
let dir: string;
let s: RunningServer;

beforeAll(async () => {
  dir = tinyWithChatml();
  s = await start(dir);
});
afterAll(async () => {
  await s.close(0);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Sends one message and collects the events of its id until done or error. */
async function exchange(msg: Record<string, any>, binary: boolean): Promise<ServerEvent[]> {
  const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const events: ServerEvent[] = [];
  const ended = new Promise<void>((resolve) => {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const e = isBinary ? decodeServerBinary(data) : (JSON.parse(data.toString()) as ServerEvent);
      events.push(e);
      if (e.type !== 'token') resolve();
    });
  });
  ws.send(binary ? encodeClientBinary(msg) : JSON.stringify(msg));
  await ended;
  ws.close();
  return events;
}

async function httpChat(body: object) {
  const r = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  expect(r.status).toBe(200);
  return (await r.json()) as any;
}

test.each([['JSON', false], ['protobuf', true]])('%s: the same tokens and usage as the HTTP chat route', async (_name, binary) => {
  const http = await httpChat({ messages, max_tokens: 7, seed: 11, logit_bias: NO_EOS });
  const events = await exchange({ type: 'chat', id: 'c1', messages, max_tokens: 7, seed: 11, logit_bias: NO_EOS }, binary as boolean);
  const tokens = events.filter((e) => e.type === 'token') as Array<Extract<ServerEvent, { type: 'token' }>>;
  const done = events[events.length - 1];
  expect(tokens).toHaveLength(7);
  expect(tokens.map((t) => t.text).join('')).toBe(http.choices[0].message.content);
  expect(done).toEqual({ type: 'done', id: 'c1', finish_reason: 'length', usage: http.usage });
});

test('logprobs with top_logprobs: each token event has its alternatives', async () => {
  const events = await exchange({ type: 'chat', id: 'lp', messages, max_completion_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2, logit_bias: NO_EOS }, false);
  const tokens = events.filter((e) => e.type === 'token') as Array<Extract<ServerEvent, { type: 'token' }>>;
  expect(tokens).toHaveLength(3);
  // Greedy: the chosen token is among the top 2, so exactly 2 entries, the best being the chosen one.
  for (const t of tokens) {
    expect(Object.keys(t.top_logprobs!)).toHaveLength(2);
    expect(Math.max(...Object.values(t.top_logprobs!))).toBe(t.logprob);
  }
});

test.each([['JSON', false], ['protobuf', true]])('%s: refusals name the field', async (_name, binary) => {
  const err = async (msg: Record<string, any>) => {
    const events = await exchange(msg, binary as boolean);
    expect(events).toHaveLength(1);
    return events[0];
  };
  expect(await err({ type: 'chat', id: 'e1', messages: [] })).toMatchObject({ type: 'error', id: 'e1', code: 'invalid_parameter', param: 'messages' });
  expect(await err({ type: 'chat', id: 'e2', messages: [{ role: 'tool', content: 'x' }] })).toMatchObject({ id: 'e2', param: 'messages[0].role' });
  expect(await err({ type: 'chat', id: 'e3', messages, temperature: 5 })).toMatchObject({ id: 'e3', param: 'temperature' });
  if (!binary) {
    expect(await err({ type: 'chat', id: 'e4', messages, prompt: 'x' })).toMatchObject({ id: 'e4', code: 'unknown_parameter', param: 'prompt' });
    expect(await err({ type: 'chat', id: 'e5', messages, n: 2 })).toMatchObject({ id: 'e5', code: 'unknown_parameter', param: 'n' });
  }
});

// WebSocket /v1/stream with a real engine: JSON and protobuf frames, many
// requests per connection, cancel, malformed frames, close -> cancel,
// backpressure, heartbeats, API key.
import { WebSocket } from 'ws';

import type { RunningServer } from '../src/server';
import type { ServerEvent } from '../src/ws/frames';
import { BYTES, post, sequences, start, TINY, UNBOUNDED, waitFor } from './http.helpers';
import { Client } from './ws.helpers';

// Both servers' models (gpt2-tiny, gpt2-rotary) end a sequence at token 511: banned where a request must keep running.
const NO_EOS = { '511': -100 };
let s: RunningServer;
let u: RunningServer;

beforeAll(async () => {
  [s, u] = await Promise.all([start(TINY), start(UNBOUNDED, { ws: { heartbeatMs: 100, highWaterMark: 1000, hardLimit: 1_000_000 } })]);
});
afterAll(() => Promise.all([s.close(0), u.close(0)]));

test('JSON: one event per token, then done with usage; the text equals the HTTP completion', async () => {
  const c = new Client(s.url);
  await c.open();
  c.sendJson({ type: 'request', id: 'a', prompt: 'hello', max_tokens: 6, seed: 9, logit_bias: NO_EOS });
  const done = await c.until((e) => e.type === 'done' && e.id === 'a');
  const tokens = c.of('a').filter((e) => e.type === 'token') as Array<Extract<ServerEvent, { type: 'token' }>>;
  expect(tokens).toHaveLength(6);
  for (const t of tokens) {
    expect(Number.isInteger(t.token)).toBe(true);
    expect(t.logprob).toBeLessThanOrEqual(0);
  }
  expect(done).toMatchObject({ finish_reason: 'length', usage: { completion_tokens: 6, total_tokens: 6 + (done as any).usage.prompt_tokens } });
  const http = await post(s.url, { prompt: 'hello', max_tokens: 6, seed: 9, logit_bias: NO_EOS });
  expect(tokens.map((t) => t.text).join('')).toBe(http.json.choices[0].text);
  c.close();
});

test('protobuf frames give the same tokens as JSON', async () => {
  const c = new Client(s.url);
  await c.open();
  const req = { type: 'request', id: 'p', prompt: [1, 2, 3], max_tokens: 5, seed: 4, temperature: 0.8, stop: ['zzz'], logprobs: 2, logit_bias: { '511': -100 } };
  c.sendProto(req);
  c.sendJson({ ...req, id: 'j' });
  await c.until((e) => e.type === 'done' && e.id === 'p');
  await c.until((e) => e.type === 'done' && e.id === 'j');
  const toks = (id: string) => c.of(id).filter((e) => e.type === 'token').map((e: any) => [e.token, e.text]);
  expect(toks('p')).toEqual(toks('j'));
  const first = c.of('p')[0] as any;
  // logprobs 2: the 2 best, plus the sampled token when it is not one of them.
  for (const e of c.of('p').filter((x) => x.type === 'token') as any[]) {
    const better = Object.values(e.top_logprobs as Record<string, number>).filter((v) => v > e.logprob + 1e-6).length;
    expect(Object.keys(e.top_logprobs)).toHaveLength(better < 2 ? 2 : 3);
    expect(Object.values(e.top_logprobs as Record<string, number>).some((v) => Math.abs(v - e.logprob) < 1e-5)).toBe(true);
  }
  expect(first.type).toBe('token');
  expect(c.of('p').find((e) => e.type === 'done')).toMatchObject({ finish_reason: 'length', usage: { prompt_tokens: 3, completion_tokens: 5 } });
  c.close();
});

test('many concurrent requests on one connection, each addressed by its id', async () => {
  const c = new Client(s.url);
  await c.open();
  const ids = ['r0', 'r1', 'r2', 'r3', 'r4'];
  ids.forEach((id, i) => c.sendJson({ type: 'request', id, prompt: [i + 1], max_tokens: 3 + i, logit_bias: NO_EOS }));
  for (const [i, id] of ids.entries()) {
    await c.until((e) => e.type === 'done' && e.id === id);
    expect(c.of(id).filter((e) => e.type === 'token')).toHaveLength(3 + i);
  }
  c.close();
});

test('cancel stops a request: done with finish_reason cancelled and the sequence freed', async () => {
  const c = new Client(u.url);
  await c.open();
  c.sendJson({ type: 'request', id: 'long', prompt: [1], max_tokens: 1_000_000, logit_bias: NO_EOS });
  await c.until((e) => e.type === 'token');
  c.sendJson({ type: 'cancel', id: 'long' });
  const done = await c.until((e) => e.type === 'done');
  expect(done).toMatchObject({ id: 'long', finish_reason: 'cancelled' });
  await waitFor(() => sequences(u) === 0, 2000, 'freed');
  c.sendJson({ type: 'cancel', id: 'long' });
  expect(await c.until((e) => e.type === 'error')).toMatchObject({ id: 'long', code: 'invalid_parameter', param: 'id' });
  c.close();
});

test('malformed frames get an error event and the connection stays usable', async () => {
  const c = new Client(s.url);
  await c.open();
  c.ws.send('{"type": "request", "id": ');
  expect(await c.until((e) => e.type === 'error')).toMatchObject({ code: 'invalid_json' });
  c.ws.send(Buffer.from([0xff, 0xff, 0xff, 0x01]));
  expect(await c.until((e) => e.type === 'error' && e.code === 'invalid_frame')).toMatchObject({ message: expect.stringMatching(/^the frame is not a roost.ClientMessage: /) });
  c.sendJson({ type: 'request', id: 'x', prompt: 'a', max_tokens: -1 });
  expect(await c.until((e) => e.type === 'error' && e.id === 'x')).toMatchObject({ code: 'invalid_parameter', param: 'max_tokens' });
  c.sendJson({ type: 'request', id: 'y', prompt: 'a', n: 2 });
  expect(await c.until((e) => e.type === 'error' && e.id === 'y')).toMatchObject({ code: 'unknown_parameter', param: 'n' });
  c.sendJson({ type: 'hello', id: 'z' });
  expect(await c.until((e) => e.type === 'error' && e.id === 'z')).toMatchObject({ param: 'type' });
  c.sendJson([1, 2]);
  expect(await c.until((e) => e.type === 'error' && e.id === undefined && e.code === 'invalid_parameter')).toMatchObject({
    message: 'a message must be a JSON object (got an array of length 2)',
    param: null,
  });
  expect(c.events.filter((e) => e.type === 'error')).toHaveLength(6);
  c.sendJson({ type: 'request', id: 'ok', prompt: 'a', max_tokens: 2 });
  expect(await c.until((e) => e.type === 'done' && e.id === 'ok')).toBeTruthy();
  c.close();
});

test('an id in use by a running request is refused', async () => {
  const c = new Client(u.url);
  await c.open();
  c.sendJson({ type: 'request', id: 'dup', prompt: [1], max_tokens: 1_000_000, logit_bias: NO_EOS });
  c.sendJson({ type: 'request', id: 'dup', prompt: [1], max_tokens: 1 });
  expect(await c.until((e) => e.type === 'error')).toMatchObject({ id: 'dup', param: 'id' });
  c.close();
  await waitFor(() => sequences(u) === 0, 2000, 'freed on close');
});

test('closing the socket cancels its requests', async () => {
  const c = new Client(u.url);
  await c.open();
  for (const id of ['a', 'b', 'c']) c.sendJson({ type: 'request', id, prompt: [1], max_tokens: 1_000_000, logit_bias: NO_EOS });
  await waitFor(() => sequences(u) === 3, 5000, 'three running');
  c.close();
  await waitFor(() => sequences(u) === 0, 2000, 'freed on close');
});

test('backpressure: a connection over its high-water mark pauses, resumes when drained, and is dropped past the hard limit', async () => {
  const c = new Client(u.url);
  await c.open();
  await waitFor(() => u.gateway.wss.clients.size >= 1, 1000, 'server side socket');
  const serverWs = [...u.gateway.wss.clients].pop()!;
  let buffered = 0;
  // Stand in for a slow reader: what the socket reports as not yet sent.
  Object.defineProperty(serverWs, 'bufferedAmount', { get: () => buffered, configurable: true });
  c.sendJson({ type: 'request', id: 'bp', prompt: [1], max_tokens: 1_000_000, logit_bias: NO_EOS });
  await c.until((e) => e.type === 'token');
  buffered = 5000; // over the 1000-byte high-water mark
  await new Promise((r) => setTimeout(r, 50));
  const frozen = c.events.length;
  const steps = u.holder.runtime!.scheduler.totals.steps;
  await new Promise((r) => setTimeout(r, 150));
  expect(c.events.length).toBe(frozen);
  expect(u.holder.runtime!.scheduler.totals.steps).toBe(steps); // its sequence sits out of steps
  expect(sequences(u)).toBe(1); // ... but keeps its state
  buffered = 0;
  await waitFor(() => c.events.length > frozen + 3, 2000, 'resumed');
  buffered = 2_000_000; // past the hard limit
  await new Promise<void>((r) => c.ws.once('close', () => r()));
  await waitFor(() => sequences(u) === 0, 2000, 'freed after drop');
});

test('a peer that does not answer pings is dropped', async () => {
  const c = new Client(u.url, { autoPong: false });
  await c.open();
  const closed = new Promise<number>((r) => c.ws.once('close', (code) => r(code)));
  expect(await closed).toBe(1006); // terminated, no close frame
});

test('the API key guards the upgrade (header or ?api_key=); other paths are 404', async () => {
  const k = await start(TINY, { apiKey: 'key1' });
  try {
    // A refused upgrade answers as HTTP does: the catalogue's status and error body.
    const refusal = (url: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; body: any }>((resolve) =>
        new WebSocket(url, { headers }).on('unexpected-response', (_q, res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        }),
      );
    const missingKey = await refusal(k.url.replace('http', 'ws') + '/v1/stream');
    expect(missingKey).toEqual({
      status: 401,
      body: { error: { message: 'missing API key: send Authorization: Bearer <key> or ?api_key=<key>', type: 'authentication_error', param: null, code: 'invalid_api_key' } },
    });
    const wrongKey = await refusal(k.url.replace('http', 'ws') + '/v1/stream?api_key=nope');
    const httpWrongKey = await post(k.url, { prompt: 'x', max_tokens: 1 }, { Authorization: 'Bearer nope' });
    expect(httpWrongKey.status).toBe(401);
    expect(wrongKey).toEqual({ status: 401, body: httpWrongKey.json });
    expect(wrongKey.body.error).toEqual({ message: 'invalid API key', type: 'authentication_error', param: null, code: 'invalid_api_key' });
    const c = new Client(k.url, { headers: { Authorization: 'Bearer key1' } });
    await c.open();
    c.close();
    const q = new WebSocket(k.url.replace('http', 'ws') + '/v1/stream?api_key=key1');
    await new Promise((r) => q.once('open', r));
    q.close();
    expect(await refusal(k.url.replace('http', 'ws') + '/nope', { Authorization: 'Bearer key1' })).toEqual({
      status: 404,
      body: { error: { message: 'no WebSocket endpoint at /nope: use /v1/stream', type: 'not_found_error', param: null, code: 'not_found' } },
    });
  } finally {
    await k.close(0);
  }
});

test('adapters and suffix over the WebSocket: the same tokens as HTTP, JSON and protobuf', async () => {
  const path = await import('node:path');
  const fixtures = path.join(__dirname, 'fixtures');
  const a = await start(path.join(fixtures, 'bigbird-tiny'), { adapters: path.join(fixtures, 'adapters', 'bigbird-tiny-prompt3') });
  const b = await start(BYTES);
  try {
    for (const [server, extra] of [
      [a, { model: 'bigbird-tiny:bigbird-tiny-prompt3' }],
      [a, { adapter: 'bigbird-tiny-prompt3' }],
      [b, { suffix: ' world' }],
    ] as Array<[RunningServer, Record<string, string>]>) {
      const c = new Client(server.url);
      await c.open();
      const req = { type: 'request', prompt: 'hello', max_tokens: 6, temperature: 0, ...extra };
      c.sendJson({ ...req, id: 'j' });
      c.sendProto({ ...req, id: 'p' });
      await c.until((e) => e.type === 'done' && e.id === 'j');
      await c.until((e) => e.type === 'done' && e.id === 'p');
      const text = (id: string) => c.of(id).filter((e) => e.type === 'token').map((e: any) => e.text).join('');
      const { type, ...body } = req;
      const http = await post(server.url, body);
      expect(http.status).toBe(200);
      expect(text('j')).toBe(http.json.choices[0].text);
      expect(text('p')).toBe(text('j'));
      c.close();
    }
    const c = new Client(a.url);
    await c.open();
    c.sendJson({ type: 'request', id: 'x', prompt: 'hi', adapter: 'nope' });
    expect(await c.until((e) => e.type === 'error' && e.id === 'x')).toMatchObject({ code: 'invalid_parameter', param: 'adapter' });
    c.close();
  } finally {
    await Promise.all([a.close(0), b.close(0)]);
  }
});

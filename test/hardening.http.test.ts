// Issue 15: one careless or hostile HTTP client must not stall or starve the
// others. Each test is one finding of the issue, reproduced against a real
// server; every wait is bounded, so a server that hangs fails the test.
import * as zlib from 'node:zlib';

import { fairShares } from '../src/engine/scheduler';
import type { RunningServer } from '../src/server';
import { BYTES, FIXTURES, post, sequences, start, TINY, UNBOUNDED, waitFor } from './http.helpers';
import { postHead, RawClient, within } from './hardening.helpers';

// Runs until cancelled: the unbounded model has no context limit.
const FOREVER = { prompt: [1, 2, 3], max_tokens: 1_000_000, logit_bias: { '511': -100 } };

/** Resolves once the scheduler has run no step for `quietMs` (every stream is paused or done). */
async function untilQuiet(s: RunningServer, quietMs = 300): Promise<void> {
  const totals = s.holder.runtime!.scheduler.totals;
  let last = -1;
  await waitFor(
    async () => {
      const now = totals.steps;
      const quiet = now === last;
      last = now;
      if (!quiet) await new Promise((r) => setTimeout(r, quietMs));
      return quiet;
    },
    30_000,
    'the never-read stream to stop being stepped',
  );
}

describe('finding 1: a client that never reads its stream', () => {
  test('holds no batch slot: with --max-batch 4 and an unread n:4 stream, an ordinary request still runs', async () => {
    const s = await start(UNBOUNDED, { maxBatch: 4, requestTimeoutMs: 120_000 });
    const hog = new RawClient(s.url, { read: false });
    try {
      const body = JSON.stringify({ ...FOREVER, n: 4, stream: true });
      await hog.write(postHead({ 'Content-Length': Buffer.byteLength(body) }, body));
      await waitFor(() => sequences(s) === 4, 10_000, 'the n:4 stream to run');
      await untilQuiet(s); // its socket is full: paused
      const r = await within(post(s.url, { prompt: [1], max_tokens: 2, logit_bias: { '511': -100 } }), 15_000, 'an ordinary request beside a never-read stream');
      expect(r.status).toBe(200);
      expect(r.json.usage.completion_tokens).toBe(2);
      expect(sequences(s)).toBe(4); // the paused stream's state is kept
    } finally {
      hog.destroy();
      await s.close(0);
    }
  });

  test('is ended after the stall time and its sequences freed', async () => {
    const s = await start(UNBOUNDED, { maxBatch: 4, stallTimeoutMs: 300 });
    const hog = new RawClient(s.url, { read: false });
    try {
      const body = JSON.stringify({ ...FOREVER, n: 2, stream: true });
      await hog.write(postHead({ 'Content-Length': Buffer.byteLength(body) }, body));
      await waitFor(() => sequences(s) === 2, 10_000, 'the stream to run');
      await waitFor(() => sequences(s) === 0, 20_000, 'the stalled stream to be freed');
      const open = () => new Promise<number>((r) => s.server.getConnections((_e, n) => r(n)));
      await waitFor(async () => (await open()) === 0, 5_000, 'the stalled connection to close');
    } finally {
      hog.destroy();
      await s.close(0);
    }
  });

  test('fairness: slots are split max-min fairly, the indivisible rest to the oldest', () => {
    expect(fairShares([8, 1], 4)).toEqual([3, 1]);
    expect(fairShares([...Array(8).fill(64), 1], 64)).toEqual([8, 8, 8, 8, 8, 8, 8, 7, 1]);
    expect(fairShares([64], 64)).toEqual([64]);
    expect(fairShares([2, 0, 100], 64)).toEqual([2, 0, 62]);
    expect(fairShares([3, 3], 0)).toEqual([0, 0]);
  });

  test("fairness: one request's n cannot keep a newcomer out of the batch", async () => {
    const s = await start(UNBOUNDED, { maxBatch: 4 });
    const big = new AbortController();
    try {
      const bigDone = fetch(`${s.url}/v1/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ ...FOREVER, n: 8, stream: true }),
        signal: big.signal,
      }).then((r) => r.text()).catch(() => 'aborted');
      await waitFor(() => s.holder.runtime!.scheduler.totals.decodeTokens > 8, 10_000, 'the n:8 request to decode');
      const r = await within(post(s.url, { prompt: [1], max_tokens: 3, logit_bias: { '511': -100 } }), 15_000, 'a request beside an n:8 request on 4 slots');
      expect(r.status).toBe(200);
      expect(r.json.usage.completion_tokens).toBe(3);
      big.abort();
      expect(await bigDone).toBe('aborted'); // it was still running: the newcomer did not wait for it
    } finally {
      big.abort();
      await s.close(0);
    }
  });
});

describe('finding 3: an 8 MiB prompt', () => {
  test('is refused by its size against the context before it is tokenized', async () => {
    const s = await start(BYTES);
    try {
      const encode = jest.spyOn(s.holder.runtime!.tokenizer, 'encode');
      const r = await post(s.url, { prompt: 'x'.repeat((8 << 20) - 64) });
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
      expect(r.json.error.message).toContain(`at least ${(8 << 20) - 64} in prompt`);
      expect(encode).not.toHaveBeenCalled();
      // Large bodies are decoded off the event loop, with the same messages.
      const bad = Buffer.concat([Buffer.from('{"prompt":"'), Buffer.alloc(300_000, 120), Buffer.from([0xff]), Buffer.from('"}')]);
      const r2 = await post(s.url, bad);
      expect(r2.status).toBe(400);
      expect(r2.json.error.message).toBe('the request body is not valid UTF-8 (byte offset 300011)');
    } finally {
      await s.close(0);
    }
  });
});

describe('finding 4: amplification', () => {
  test('256 prompts x 4000 characters with echo and logprobs 20 is a 400 naming the cost bound, before tokenizing', async () => {
    const s = await start(UNBOUNDED);
    try {
      const encode = jest.spyOn(s.holder.runtime!.tokenizer, 'encode');
      const text = 'the quick brown fox jumps over the lazy dog. '.repeat(100).slice(0, 4000);
      const body = { prompt: Array(256).fill(text), echo: true, logprobs: 20, max_tokens: 0 };
      const r = await within(post(s.url, body), 20_000, 'the amplification request');
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({ code: 'cost_limit_exceeded', param: 'logprobs', type: 'invalid_request_error' });
      expect(r.json.error.message).toMatch(/at least \d+ log-prob entries .*the limit per request is 1048576/);
      expect(encode).not.toHaveBeenCalled();
      expect(sequences(s)).toBe(0);
      // Within the bound it is served, written out choice by choice.
      const ok = await post(s.url, { prompt: [text.slice(0, 40), text.slice(0, 30)], echo: true, logprobs: 2, max_tokens: 1 });
      expect(ok.status).toBe(200);
      expect(ok.json.choices.map((c: any) => c.index)).toEqual([0, 1]);
      expect(ok.json.choices[0].logprobs.tokens.length).toBe(ok.json.choices[0].logprobs.top_logprobs.length);
      expect(ok.json.usage.completion_tokens).toBe(2);
    } finally {
      await s.close(0);
    }
  });
});

describe('finding 6: wrong statuses', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(TINY, { maxBatch: 2, maxQueue: 0 });
  });
  afterAll(() => s.close(0));

  const send = (headers: Record<string, string>, body: Buffer | string) =>
    fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body }).then(async (r) => ({
      status: r.status,
      json: (await r.json()) as any,
    }));

  test('Content-Encoding: gzip and deflate are decoded; corrupt data is 400, an unknown coding 415, a bomb 413 (never 500)', async () => {
    const json = JSON.stringify({ prompt: 'hi', max_tokens: 1 });
    expect((await send({ 'Content-Encoding': 'gzip' }, zlib.gzipSync(json))).status).toBe(200);
    expect((await send({ 'Content-Encoding': 'deflate' }, zlib.deflateSync(json))).status).toBe(200);
    const corrupt = await send({ 'Content-Encoding': 'gzip' }, json);
    expect(corrupt.status).toBe(400);
    expect(corrupt.json.error).toMatchObject({ code: 'invalid_encoding', type: 'invalid_request_error' });
    expect((await send({ 'Content-Encoding': 'deflate' }, 'xyz')).json.error.code).toBe('invalid_encoding');
    const br = await send({ 'Content-Encoding': 'br' }, 'x');
    expect(br.status).toBe(415);
    expect(br.json.error.code).toBe('unsupported_media_type');
    const bomb = await send({ 'Content-Encoding': 'gzip' }, zlib.gzipSync(Buffer.alloc(64 << 20, 32)));
    expect(bomb.status).toBe(413);
    expect(bomb.json.error.message).toContain('inflates to more than the limit of 8388608 bytes');
  });

  test('GET /v1/models/% is 400, not 500', async () => {
    const r = await fetch(`${s.url}/v1/models/%`);
    expect(r.status).toBe(400);
    expect(((await r.json()) as any).error.code).toBe('invalid_parameter');
  });

  test('n larger than --max-batch with --max-queue 0 is a 400 naming n (a retry could never succeed)', async () => {
    const r = await post(s.url, { prompt: 'hi', n: 3, max_tokens: 1 });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'invalid_parameter', param: 'n' });
    expect(r.json.error.message).toContain('--max-batch 2, --max-queue 0');
    expect((await post(s.url, { prompt: 'hi', n: 2, max_tokens: 1 })).status).toBe(200);
  });

  test('unloading an adapter while a queued request uses it does not fail that request', async () => {
    const base = `${FIXTURES}/bigbird-tiny`;
    const a = await start(base, { maxBatch: 1, allowAdapterLoading: true });
    const call = (route: string, body: unknown) => fetch(`${a.url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const running = new AbortController();
    try {
      expect((await call('/v1/load_lora_adapter', { lora_name: 'p', lora_path: `${FIXTURES}/adapters/bigbird-tiny-prompt` })).status).toBe(200);
      const long = fetch(`${a.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: [1, 2], max_tokens: 1_000_000, stream: true, logit_bias: { '256': -100 } }), signal: running.signal })
        .then((r) => r.text())
        .catch(() => 'aborted');
      await waitFor(() => sequences(a) === 1, 10_000, 'the long request to hold the only slot');
      const queued = post(a.url, { prompt: [1, 2, 3], adapter: 'p', max_tokens: 2, logit_bias: { '256': -100 } });
      await waitFor(() => a.holder.runtime!.scheduler.waitingRequests === 1, 10_000, 'the adapter request to queue');
      expect((await call('/v1/unload_lora_adapter', { lora_name: 'p' })).status).toBe(200);
      expect((await post(a.url, { prompt: [1], adapter: 'p', max_tokens: 1 })).status).toBe(400); // gone for new requests
      running.abort();
      await long;
      const r = await within(queued, 15_000, 'the queued adapter request');
      expect(r.status).toBe(200);
      expect(r.json.usage.completion_tokens).toBe(2);
      await waitFor(() => a.holder.runtime!.engine.adapters().length === 0, 5_000, 'the engine to drop the adapter once unused');
    } finally {
      running.abort();
      await a.close(0);
    }
  });
});

describe('finding 7: slow and oversized bodies', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(TINY, { http: { headersTimeoutMs: 300, bodyTimeoutMs: 600 }, app: { bodyLimit: 1000 } });
  });
  afterAll(() => s.close(0));

  test('a half-sent body or header is not held open forever', async () => {
    const body = new RawClient(s.url);
    const head = new RawClient(s.url);
    try {
      await body.write(postHead({ 'Content-Length': 100 }, '{"prompt":'));
      await head.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\n');
      await body.waitFor(() => body.closed, 10_000, 'the connection with half a body to close');
      await head.waitFor(() => head.closed, 10_000, 'the connection with half a header to close');
      expect(body.received).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      body.destroy();
      head.destroy();
    }
  });

  test('a chunked body past the limit gets its 413 while it is still streaming in', async () => {
    const c = new RawClient(s.url);
    try {
      await c.write(postHead({ 'Transfer-Encoding': 'chunked' }));
      const chunk = '{"prompt":"' + 'x'.repeat(2000);
      await c.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`); // and never the last chunk
      await c.waitFor(() => c.received.includes('\r\n\r\n'), 10_000, 'the 413');
      expect(c.received).toMatch(/^HTTP\/1\.1 413/);
      expect(c.received).toMatch(/connection: close/i);
      await c.waitFor(() => c.closed, 10_000, 'the connection to close');
    } finally {
      c.destroy();
    }
  });

  test('a 100 MB Content-Length gets 413 at once and the connection closes without the body being read', async () => {
    const c = new RawClient(s.url);
    try {
      await c.write(postHead({ 'Content-Length': 100_000_000 }, '{"prompt":"'));
      await c.waitFor(() => c.received.includes('\r\n\r\n'), 10_000, 'the 413');
      expect(c.received).toMatch(/^HTTP\/1\.1 413/);
      expect(c.received).toContain('the limit is 1000 bytes');
      await c.waitFor(() => c.closed, 10_000, 'the connection to close');
    } finally {
      c.destroy();
    }
  });
});

describe('finding 9: the drain', () => {
  test('new requests during the drain get 503 shutting_down (not a refused connection)', async () => {
    const s = await start(UNBOUNDED);
    const running = new AbortController();
    try {
      const long = fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...FOREVER, stream: true }), signal: running.signal })
        .then((r) => r.text())
        .catch(() => 'aborted');
      await waitFor(() => sequences(s) === 1, 10_000, 'the long request to run');
      const closed = s.close(20_000);
      await waitFor(() => s.holder.status === 'draining', 5_000, 'the drain to start');
      const r = await post(s.url, { prompt: 'x', max_tokens: 1 });
      expect(r.status).toBe(503);
      expect(r.json.error).toMatchObject({ code: 'shutting_down', type: 'unavailable_error' });
      expect(r.headers.get('connection')).toBe('close');
      expect((await fetch(`${s.url}/health`)).status).toBe(503);
      running.abort();
      await long;
      await within(closed, 10_000, 'the drain to end once the last request ended');
    } finally {
      running.abort();
      await s.close(0);
    }
  });

  test('a client that half-closes after its request still gets the response', async () => {
    const s = await start(TINY);
    const c = new RawClient(s.url);
    try {
      const body = JSON.stringify({ prompt: 'hi', max_tokens: 3, logit_bias: { '511': -100 } });
      await c.write(postHead({ 'Content-Length': Buffer.byteLength(body) }, body));
      c.end();
      await c.waitFor(() => /"total_tokens":\d+\}\}/.test(c.received), 10_000, 'the response');
      expect(c.received).toMatch(/HTTP\/1\.1 200 OK/);
      const json = JSON.parse(c.received.slice(c.received.indexOf('{"id"')));
      expect(json.usage.completion_tokens).toBe(3);
    } finally {
      c.destroy();
      await s.close(0);
    }
  });
});

// What every HTTP request meets before its route: CORS (--allowed-origins),
// the JSON Content-Type rule (415), X-Request-Id, and the access log, on a
// real server. The browser's side of CORS is test/cors.browser.test.ts.
import { WebSocket } from 'ws';

import type { AccessLogEntry } from '../src/http/access-log';
import { formatEntry } from '../src/http/access-log';
import { normalizeOrigin } from '../src/engine/origins';
import type { RunningServer } from '../src/server';
import { parseSse, post, sequences, start, TINY, UNBOUNDED, waitFor } from './http.helpers';

const ALLOWED = 'http://app.test:3000';
const OTHER = 'http://evil.test';
// Runs until cancelled: the unbounded model has no context limit.
const FOREVER = { prompt: [1, 2, 3], max_tokens: 1_000_000, logit_bias: { '511': -100 } };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const corsHeaders = (h: Headers) => [...h.keys()].filter((k) => k.startsWith('access-control-')).sort();

function preflight(url: string, origin: string, headers = 'content-type, authorization') {
  return fetch(`${url}/v1/completions`, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': headers },
  });
}

describe('CORS', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(TINY, { allowedOrigins: [ALLOWED], apiKey: 'k' });
  });
  afterAll(() => s.close(0));

  test('a preflight from an allowed origin is answered 204 before the API key check', async () => {
    const r = await preflight(s.url, ALLOWED, 'content-type, authorization, x-stainless-os, bad header');
    expect(r.status).toBe(204);
    expect(Object.fromEntries([...r.headers].filter(([k]) => k.startsWith('access-control-') || k === 'vary'))).toEqual({
      'access-control-allow-origin': ALLOWED,
      'access-control-allow-methods': 'GET, POST, OPTIONS',
      'access-control-allow-headers': 'Authorization, Content-Type, X-Request-Id, x-stainless-os',
      'access-control-max-age': '600',
      'access-control-expose-headers': 'X-Request-Id, Retry-After',
      vary: 'Origin',
    });
    expect(await r.text()).toBe('');
  });

  test('a preflight from another origin gets no CORS header (the browser then refuses)', async () => {
    const r = await preflight(s.url, OTHER);
    expect(r.status).toBe(401);
    expect(corsHeaders(r.headers)).toEqual([]);
    expect(r.headers.get('vary')).toBe('Origin');
  });

  test('responses carry Access-Control-Allow-Origin for the allowed origin only, and Vary: Origin always', async () => {
    const auth = { Authorization: 'Bearer k' };
    const ok = await post(s.url, { prompt: 'Hi', max_tokens: 2 }, { ...auth, Origin: ALLOWED });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(ok.headers.get('access-control-expose-headers')).toBe('X-Request-Id, Retry-After');
    expect(ok.headers.get('vary')).toBe('Origin');
    // Errors too: the page can read why it was refused.
    const refused = await post(s.url, { prompt: 'Hi', max_tokens: 2 }, { Origin: ALLOWED });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    for (const headers of [{ ...auth, Origin: OTHER }, auth]) {
      const r = await post(s.url, { prompt: 'Hi', max_tokens: 2 }, headers);
      expect(r.status).toBe(200);
      expect(corsHeaders(r.headers)).toEqual([]);
      expect(r.headers.get('vary')).toBe('Origin');
    }
  });

  test('* allows any origin; without --allowed-origins there is no CORS at all', async () => {
    const any = await start(TINY, { allowedOrigins: ['*'] });
    const none = await start(TINY);
    try {
      const p = await preflight(any.url, OTHER);
      expect(p.status).toBe(204);
      expect(p.headers.get('access-control-allow-origin')).toBe('*');
      expect((await post(any.url, { prompt: 'Hi', max_tokens: 1 }, { Origin: OTHER })).headers.get('access-control-allow-origin')).toBe('*');
      const q = await preflight(none.url, ALLOWED);
      expect(q.status).toBe(404);
      expect(corsHeaders(q.headers)).toEqual([]);
      const r = await post(none.url, { prompt: 'Hi', max_tokens: 1 }, { Origin: ALLOWED });
      expect(r.status).toBe(200);
      expect(corsHeaders(r.headers)).toEqual([]);
      expect(r.headers.get('vary')).toBeNull();
    } finally {
      await any.close(0);
      await none.close(0);
    }
  });

  test.each([
    ['http://localhost:3000', 'http://localhost:3000'],
    ['https://App.Example.com', 'https://app.example.com'],
    ['http://a.test:80', 'http://a.test'],
    ['http://a.test/', 'http://a.test'],
    ['*', '*'],
    ['a.test', undefined],
    ['http://a.test/path', undefined],
    ['ftp://a.test', undefined],
    ['http://user@a.test', undefined],
    ['', undefined],
  ])('--allowed-origins entry %j is %j', (entry, origin) => {
    expect(normalizeOrigin(entry)).toBe(origin);
  });
});

/** Opens /v1/stream with this Origin (none: as a non-browser client): 'open', or the refusal's status and body. */
function openWebSocket(url: string, origin?: string): Promise<{ status: number; body: any } | 'open'> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/stream`, origin === undefined ? {} : { origin });
    ws.once('open', () => {
      ws.close();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
    });
    ws.once('error', reject);
  });
}

describe('the WebSocket checks Origin itself (browsers apply no CORS to it)', () => {
  test('a page of an allowed origin and a client without Origin connect; a page of another origin gets 403', async () => {
    const s = await start(TINY, { allowedOrigins: [ALLOWED] });
    const none = await start(TINY);
    const any = await start(TINY, { allowedOrigins: ['*'] });
    try {
      expect(await openWebSocket(s.url, ALLOWED)).toBe('open');
      expect(await openWebSocket(s.url)).toBe('open');
      expect(await openWebSocket(any.url, OTHER)).toBe('open');
      expect(await openWebSocket(none.url)).toBe('open');
      for (const [url, origin] of [
        [s.url, OTHER],
        [none.url, ALLOWED],
      ]) {
        expect(await openWebSocket(url, origin)).toEqual({
          status: 403,
          body: {
            error: {
              message: `a page from "${origin}" may not open this WebSocket: start the server with --allowed-origins "${origin}"`,
              type: 'invalid_request_error',
              param: null,
              code: 'origin_not_allowed',
            },
          },
        });
      }
    } finally {
      await Promise.all([s.close(0), none.close(0), any.close(0)]);
    }
  });
});

describe('a body that is not declared JSON is refused with 415', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(TINY, { allowAdapterLoading: true });
  });
  afterAll(() => s.close(0));

  const body = JSON.stringify({ prompt: 'Hi', max_tokens: 1 });
  test.each([
    ['text/plain;charset=UTF-8', 'Content-Type "text/plain;charset=UTF-8"'],
    ['application/x-www-form-urlencoded', 'Content-Type "application/x-www-form-urlencoded"'],
    ['multipart/form-data; boundary=x', 'Content-Type "multipart/form-data; boundary=x"'],
    [undefined, 'no Content-Type'],
  ])('Content-Type %j', async (type, got) => {
    const headers = type === undefined ? undefined : { 'Content-Type': type };
    for (const route of ['/v1/completions', '/v1/load_lora_adapter']) {
      // A Uint8Array body: fetch adds no Content-Type of its own.
      const r = await fetch(`${s.url}${route}`, { method: 'POST', headers, body: new TextEncoder().encode(body) });
      expect(r.status).toBe(415);
      expect(r.headers.get('connection')).toBe('close');
      expect(await r.json()).toEqual({
        error: {
          message: `the request body must be JSON: send Content-Type: application/json (got ${got})`,
          type: 'invalid_request_error',
          param: null,
          code: 'unsupported_media_type',
        },
      });
    }
  });

  test.each(['application/json', 'application/json; charset=utf-8', 'Application/JSON', 'application/vnd.api+json'])('Content-Type %j is JSON', async (type) => {
    const r = await post(s.url, body, { 'Content-Type': type });
    expect(r.status).toBe(200);
  });

  test('the other body checks are unchanged: an empty JSON body is still named as empty', async () => {
    const r = await post(s.url, '', {});
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'invalid_json', message: 'the request body is empty: send a JSON object' });
  });
});

describe('X-Request-Id', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(TINY);
  });
  afterAll(() => s.close(0));

  test('a sane id is echoed; none, a long one or one with spaces or control characters gets a new UUID', async () => {
    const echoed = await post(s.url, { prompt: 'Hi', max_tokens: 1 }, { 'X-Request-Id': 'trace-42/a:b' });
    expect(echoed.headers.get('x-request-id')).toBe('trace-42/a:b');
    const max = 'x'.repeat(128);
    expect((await post(s.url, { prompt: 'Hi', max_tokens: 1 }, { 'X-Request-Id': max })).headers.get('x-request-id')).toBe(max);
    for (const sent of [undefined, 'x'.repeat(129), 'two words', 'tab\there', '']) {
      const r = await post(s.url, { prompt: 'Hi', max_tokens: 1 }, sent === undefined ? {} : { 'X-Request-Id': sent });
      expect(r.headers.get('x-request-id')).toMatch(UUID);
    }
    // On every route, errors included.
    const missing = await fetch(`${s.url}/nope`, { headers: { 'X-Request-Id': 'r-404' } });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('x-request-id')).toBe('r-404');
    expect((await fetch(`${s.url}/health`)).headers.get('x-request-id')).toMatch(UUID);
  });
});

describe('access log', () => {
  let s: RunningServer;
  const lines: string[] = [];
  beforeAll(async () => {
    s = await start(UNBOUNDED, { maxBatch: 4, accessLog: { format: 'json', write: (l) => lines.push(l) } });
  });
  afterAll(() => s.close(0));

  /** The log entry of the request with this id, once written. */
  async function entry(id: string): Promise<AccessLogEntry> {
    let found: string | undefined;
    await waitFor(() => (found = lines.find((l) => JSON.parse(l).request_id === id)) !== undefined, 10_000, `the log line of ${id}`);
    expect(found!.endsWith('\n')).toBe(true);
    expect(found!.slice(0, -1)).not.toContain('\n');
    return JSON.parse(found!);
  }

  const KEYS = ['time', 'method', 'path', 'status', 'prompt_tokens', 'completion_tokens', 'ttft_ms', 'total_ms', 'request_id', 'client_closed'];

  test('a completion: one line with its status, tokens, TTFT and total time', async () => {
    const before = Date.now();
    const r = await post(s.url, { prompt: [1, 2, 3], max_tokens: 5 }, { 'X-Request-Id': 'log-1' });
    expect(r.status).toBe(200);
    const e = await entry('log-1');
    expect(Object.keys(e)).toEqual(KEYS);
    expect(e).toMatchObject({ method: 'POST', path: '/v1/completions', status: 200, prompt_tokens: 3, completion_tokens: 5, request_id: 'log-1', client_closed: false });
    expect(e.completion_tokens).toBe(r.json.usage.completion_tokens);
    expect(Date.parse(e.time)).toBeGreaterThanOrEqual(before - 1);
    expect(e.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(e.ttft_ms).toBeGreaterThan(0);
    expect(e.total_ms).toBeGreaterThanOrEqual(e.ttft_ms!);
    expect(lines.filter((l) => l.includes('"log-1"'))).toHaveLength(1);
  });

  test('a stream logs at its end; a refused request logs its status and no tokens', async () => {
    const res = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'log-2' },
      body: JSON.stringify({ prompt: [4, 5], max_tokens: 7, stream: true, stream_options: { include_usage: true } }),
    });
    const { events } = parseSse(await res.text());
    const usage = events[events.length - 2].usage;
    expect(await entry('log-2')).toMatchObject({ status: 200, prompt_tokens: 2, completion_tokens: 7, client_closed: false });
    expect(usage).toMatchObject({ prompt_tokens: 2, completion_tokens: 7 });

    expect((await post(s.url, { prompt: 'Hi', max_tokens: -1 }, { 'X-Request-Id': 'log-3' })).status).toBe(400);
    expect(await entry('log-3')).toMatchObject({ method: 'POST', status: 400, prompt_tokens: null, completion_tokens: null, ttft_ms: null, client_closed: false });
    await fetch(`${s.url}/v1/models?x=1`, { headers: { 'X-Request-Id': 'log-4' } });
    expect(await entry('log-4')).toMatchObject({ method: 'GET', path: '/v1/models', status: 200, prompt_tokens: null, completion_tokens: null, ttft_ms: null });
  });

  test('a client that leaves mid-stream: the status sent (200), the tokens generated, client_closed', async () => {
    const ac = new AbortController();
    const res = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'log-5' },
      body: JSON.stringify({ ...FOREVER, stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    let seen = '';
    while ((seen.match(/"text"/g) ?? []).length < 3) seen += Buffer.from((await reader.read()).value!).toString();
    ac.abort();
    const e = await entry('log-5');
    expect(e).toMatchObject({ status: 200, prompt_tokens: 3, client_closed: true });
    expect(e.completion_tokens).toBeGreaterThanOrEqual(3);
    expect(e.ttft_ms).toBeGreaterThan(0);
  });

  test('a client that leaves before any answer: 499, client_closed', async () => {
    const ac = new AbortController();
    const p = fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'log-6' },
      body: JSON.stringify(FOREVER),
      signal: ac.signal,
    }).catch(() => undefined);
    const decoded = s.holder.runtime!.scheduler.totals.decodeTokens;
    await waitFor(() => sequences(s) === 1 && s.holder.runtime!.scheduler.totals.decodeTokens > decoded, 10_000, 'the request to decode');
    ac.abort();
    await p;
    const e = await entry('log-6');
    expect(e).toMatchObject({ status: 499, prompt_tokens: 3, client_closed: true });
    expect(e.completion_tokens).toBeGreaterThan(0);
  });

  test('the text format: the same fields on one line, - for none', () => {
    const e: AccessLogEntry = {
      time: '2026-12-07T11:46:21.765Z',
      method: 'POST',
      path: '/v1/completions',
      status: 200,
      prompt_tokens: 2,
      completion_tokens: 16,
      ttft_ms: 74.8,
      total_ms: 76.5,
      request_id: 'abc-1',
      client_closed: false,
    };
    expect(formatEntry(e, 'text')).toBe('2026-12-07T11:46:21.765Z POST /v1/completions 200 prompt_tokens=2 completion_tokens=16 ttft_ms=74.8 total_ms=76.5 request_id=abc-1');
    expect(formatEntry({ ...e, status: 499, prompt_tokens: null, completion_tokens: null, ttft_ms: null, client_closed: true }, 'text')).toBe(
      '2026-12-07T11:46:21.765Z POST /v1/completions 499 prompt_tokens=- completion_tokens=- ttft_ms=- total_ms=76.5 request_id=abc-1 client_closed',
    );
    expect(formatEntry({ ...e, path: '/a b' }, 'text')).toContain(' "/a b" 200 ');
    expect(JSON.parse(formatEntry(e, 'json'))).toEqual(e);
  });
});

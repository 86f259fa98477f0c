// Admission, cancellation and server lifecycle over HTTP with a real engine:
// overload 429, keep-alive while queued, disconnect frees the sequence,
// API keys, body limit, request timeout, graceful shutdown.
import { WebSocket } from 'ws';

import type { RunningServer } from '../src/server';
import { parseSse, post, postStream, sequences, start, TINY, UNBOUNDED, waitFor } from './http.helpers';

// Runs until cancelled: the unbounded model has no context limit.
const FOREVER = { prompt: [1, 2, 3], max_tokens: 1_000_000, logit_bias: { '511': -100 } };

async function metric(s: RunningServer, name: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`${name} not in /metrics`);
  return Number(m[1]);
}

describe('one slot, one queue place', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(UNBOUNDED, { maxBatch: 1, maxQueue: 1 });
  });
  afterAll(() => s.close(0));

  test('a full queue answers 429 overloaded with Retry-After; queued streams get keep-alive comments', async () => {
    const running = new AbortController();
    const first = fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...FOREVER, stream: true }), signal: running.signal });
    await waitFor(() => sequences(s) === 1, 5000, 'the first request to run');
    // Second: waits in the queue, streaming.
    const queued = new AbortController();
    const res2 = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: [5], max_tokens: 2, stream: true }), signal: queued.signal });
    expect(res2.status).toBe(200);
    const reader = res2.body!.getReader();
    const { value } = await reader.read();
    expect(Buffer.from(value!).toString()).toContain(': keep-alive');
    expect(await metric(s, 'roost_requests_waiting')).toBe(1);
    expect(await metric(s, 'roost_requests_running')).toBe(1);
    // Third: refused.
    const r3 = await post(s.url, { prompt: [5], max_tokens: 2 });
    expect(r3.status).toBe(429);
    expect(r3.headers.get('retry-after')).toBe('1');
    expect(r3.json.error).toMatchObject({ type: 'overloaded_error', code: 'overloaded', param: null });
    expect(r3.json.error.message).toMatch(/max-queue 1/);
    // Free the slot: the queued one runs to the end.
    running.abort();
    await first.catch(() => undefined);
    let rest = '';
    for (;;) {
      const { value: v, done } = await reader.read();
      if (done) break;
      rest += Buffer.from(v!).toString();
    }
    const { events } = parseSse(rest);
    expect(events[events.length - 1]).toBe('[DONE]');
    await waitFor(() => sequences(s) === 0, 5000, 'sequences freed');
  });

  test('a streaming client that disconnects frees its sequence within a step, visible in /metrics', async () => {
    const ac = new AbortController();
    // Count steps from the server's cancel, not from the client's abort: how
    // soon the close event is seen depends on the machine's load.
    const scheduler = s.holder.runtime!.scheduler;
    let stepsAtCancel = -1;
    const submit = scheduler.submit.bind(scheduler);
    scheduler.submit = (specs) => {
      const req = submit(specs);
      const cancel = req.cancel.bind(req);
      req.cancel = () => ((stepsAtCancel = scheduler.totals.steps), cancel());
      return req;
    };
    try {
      const res = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...FOREVER, stream: true }), signal: ac.signal });
      const reader = res.body!.getReader();
      let got = '';
      while (!got.includes('"text_completion"')) got += Buffer.from((await reader.read()).value!).toString();
      expect(await metric(s, 'roost_engine_sequences')).toBe(1);
      ac.abort();
      await waitFor(() => sequences(s) === 0, 2000, 'the sequence to be freed');
    } finally {
      scheduler.submit = submit;
    }
    // The step running at the cancel completes; the sequence is gone after it.
    expect(stepsAtCancel).toBeGreaterThanOrEqual(0);
    expect(scheduler.totals.steps - stepsAtCancel).toBeLessThanOrEqual(1);
    expect(await metric(s, 'roost_engine_sequences')).toBe(0);
    expect(await metric(s, 'roost_kv_memory_bytes')).toBe(0);
    expect(await metric(s, 'roost_requests_running')).toBe(0);
  });

  test('a non-streaming client that disconnects is cancelled too', async () => {
    // Earlier tests cancelled requests too: count this one's.
    const cancelledBefore = await metric(s, 'roost_requests_total{outcome="cancelled"}');
    const ac = new AbortController();
    const p = fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(FOREVER), signal: ac.signal });
    await waitFor(() => sequences(s) === 1, 5000, 'the request to run');
    ac.abort();
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    await waitFor(() => sequences(s) === 0, 2000, 'the sequence to be freed');
    await waitFor(async () => (await metric(s, 'roost_requests_total{outcome="cancelled"}')) === cancelledBefore + 1, 2000, 'the cancellation to be counted');
    expect(await metric(s, 'roost_requests_total{outcome="cancelled"}')).toBe(cancelledBefore + 1);
  });
});

test('the API key guards every route but /health', async () => {
  const s = await start(TINY, { apiKey: 'sekret' });
  try {
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    const none = await post(s.url, { prompt: 'x', max_tokens: 1 });
    expect(none.status).toBe(401);
    expect(none.json.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
    const wrong = await post(s.url, { prompt: 'x', max_tokens: 1 }, { Authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect((await fetch(`${s.url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${s.url}/metrics`)).status).toBe(401);
    const ok = await post(s.url, { prompt: 'x', max_tokens: 1 }, { Authorization: 'Bearer sekret' });
    expect(ok.status).toBe(200);
  } finally {
    await s.close(0);
  }
});

test('a body over the limit is 413 naming the limit', async () => {
  const s = await start(TINY, { app: { bodyLimit: 1000 } });
  try {
    const r = await post(s.url, { prompt: 'x'.repeat(2000) });
    expect(r.status).toBe(413);
    expect(r.json.error).toMatchObject({ code: 'payload_too_large' });
    expect(r.json.error.message).toMatch(/limit is 1000 bytes/);
    expect((await post(s.url, { prompt: 'x', max_tokens: 1 })).status).toBe(200);
  } finally {
    await s.close(0);
  }
});

test('the per-request timeout ends a request with 504, or an error event in a stream', async () => {
  const s = await start(UNBOUNDED, { requestTimeoutMs: 150 });
  try {
    const r = await post(s.url, FOREVER);
    expect(r.status).toBe(504);
    expect(r.json.error).toMatchObject({ type: 'timeout_error', code: 'request_timeout' });
    const st = await postStream(s.url, FOREVER);
    const last = st.events[st.events.length - 2];
    expect(st.events[st.events.length - 1]).toBe('[DONE]');
    expect(last.error).toMatchObject({ code: 'request_timeout' });
    await waitFor(() => sequences(s) === 0, 1000, 'the sequence to be freed');
  } finally {
    await s.close(0);
  }
});

test('graceful shutdown lets short requests finish, cancels long ones at the deadline, refuses new work', async () => {
  const s = await start(UNBOUNDED, { maxBatch: 4 });
  try {
    // A WebSocket with a running request stays open while it runs; an idle one is closed with 1012 at once.
    const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
    await new Promise((r) => ws.once('open', r));
    const idle = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
    await new Promise((r) => idle.once('open', r));
    const idleClosed = new Promise<number>((r) => idle.once('close', (code) => r(code)));
    const events: any[] = [];
    ws.on('message', (d: Buffer) => events.push(JSON.parse(d.toString())));
    const wsClosed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    const long = postStream(s.url, FOREVER);
    await waitFor(() => sequences(s) === 1, 5000, 'the long request to run');
    // Long enough to still run after the steps below, short enough to end within the grace period.
    ws.send(JSON.stringify({ type: 'request', id: 'early', prompt: [1], max_tokens: 1000, logit_bias: { '511': -100 } }));
    await waitFor(() => sequences(s) === 2, 5000, 'the WebSocket request to run');
    const short = post(s.url, { prompt: [1], max_tokens: 400, logit_bias: { '511': -100 } });
    await waitFor(() => sequences(s) === 3, 5000, 'three running');
    const closed = s.close(5000);
    expect(s.holder.status).toBe('draining');
    expect(await idleClosed).toBe(1012);
    // New work is refused: a new HTTP request gets 503 shutting_down (the listener stays open during the drain);
    // a request on the open WebSocket gets shutting_down too.
    const refused = await post(s.url, { prompt: [1], max_tokens: 1 });
    expect(refused.status).toBe(503);
    expect(refused.json).toEqual({ error: { message: 'the server is shutting down and accepts no new requests', type: 'unavailable_error', param: null, code: 'shutting_down' } });
    ws.send(JSON.stringify({ type: 'request', id: 'late', prompt: [1], max_tokens: 1 }));
    await waitFor(() => events.some((e) => e.id === 'late'), 2000, 'the refusal of the late request');
    expect(events.filter((e) => e.id === 'late')).toEqual([
      { type: 'error', id: 'late', code: 'shutting_down', message: 'the server is shutting down and accepts no new requests', param: null },
    ]);
    // The running WebSocket request finishes, then its connection closes with 1012.
    expect(await wsClosed).toBe(1012);
    expect(events.filter((e) => e.id === 'early' && e.type === 'done')).toEqual([
      expect.objectContaining({ finish_reason: 'length', usage: expect.objectContaining({ completion_tokens: 1000 }) }),
    ]);
    const sr = await short;
    expect(sr.status).toBe(200);
    expect(sr.json.usage.completion_tokens).toBe(400);
    const lr = await long;
    expect(lr.events[lr.events.length - 2].error).toMatchObject({ code: 'shutting_down', type: 'unavailable_error' });
    await closed;
    expect(s.holder.runtime!.engine.stats().sequences).toBe(0);
    await expect(fetch(`${s.url}/health`)).rejects.toThrow();
  } finally {
    await s.close(0);
  }
});

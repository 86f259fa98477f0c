// The graceful drain a load balancer relies on, on a real `roost serve`
// process: SIGTERM during running streams (HTTP SSE and WebSocket) makes
// /health answer 503 for --drain-seconds while other requests are still
// served; then new requests get 503, the streams run to their end, the
// WebSocket closes with 1012 once idle, and the process exits 0. A request that
// crosses that close is never started (clients may resend it elsewhere).
import { WebSocket } from 'ws';

import { spawnRoost } from '../bench/load/server';
import { parseSse, start, UNBOUNDED, waitFor } from './http.helpers';
import { compileIfStale } from './serve.helpers';

beforeAll(compileIfStale, 120000);

// Long enough to run past SIGTERM, short enough to finish within the 30 s grace on a loaded machine.
const TOKENS = 6000;
const LONG = { prompt: [1, 2, 3], max_tokens: TOKENS, logit_bias: { '511': -100 } };

test('SIGTERM during streams: /health 503 while serving, streams complete, exit 0', async () => {
  const server = await spawnRoost({ model: UNBOUNDED, extraArgs: ['--threads', '1', '--drain-seconds', '3'], startTimeoutMs: 60_000 });
  try {
    // An SSE stream, running once its first chunk arrived.
    const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...LONG, stream: true, stream_options: { include_usage: true } }) });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let raw = '';
    const first = await reader.read();
    raw += Buffer.from(first.value!).toString();
    const sse = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return raw;
        raw += Buffer.from(value).toString();
      }
    })();

    // A WebSocket stream, running once its first token arrived.
    const ws = new WebSocket(server.url.replace(/^http/, 'ws') + '/v1/stream');
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    const events: any[] = [];
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    const firstToken = new Promise<void>((r) =>
      ws.on('message', (d: Buffer) => {
        events.push(JSON.parse(d.toString()));
        r();
      }),
    );
    ws.send(JSON.stringify({ type: 'request', id: 'w', ...LONG }));
    await firstToken;

    const stopped = server.stop(60_000);
    // The signal arrives asynchronously: wait for the server to say it got it.
    await waitFor(() => server.log().some((l) => /SIGTERM: \/health fails for 3 s/.test(l)), 10_000, 'the server to take SIGTERM');
    // The health period: /health fails, everything else is still served.
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ status: 'shutting_down' });
    const other = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: [1], max_tokens: 3 }) });
    expect(other.status).toBe(200);
    expect((await other.json()).usage.completion_tokens).toBe(3);

    // Both streams run to their end.
    const { events: sseEvents } = parseSse(await sse);
    expect(sseEvents[sseEvents.length - 1]).toBe('[DONE]');
    const chunks = sseEvents.slice(0, -1);
    expect(chunks.filter((e) => e.error)).toEqual([]);
    expect(chunks.map((e) => e.choices?.[0]?.finish_reason).filter(Boolean)).toEqual(['length']);
    expect(chunks[chunks.length - 1].usage).toMatchObject({ completion_tokens: TOKENS });
    expect(await closed).toBe(1012);
    const done = events.filter((e) => e.type === 'done');
    expect(events.filter((e) => e.type === 'error')).toEqual([]);
    expect(done).toHaveLength(1);
    expect(done[0]).toMatchObject({ id: 'w', finish_reason: 'length', usage: { completion_tokens: TOKENS } });
    expect(events.filter((e) => e.type === 'token')).toHaveLength(TOKENS);

    expect(await stopped).toBe('exit code 0');
  } finally {
    await server.stop(1000);
  }
}, 120_000);

test('a WebSocket request that reaches a draining server after its 1012 close is never started', async () => {
  const s = await start(UNBOUNDED);
  try {
    const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    const events: any[] = [];
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.on('message', (d: Buffer) => {
      const ev = JSON.parse(d.toString());
      events.push(ev);
      // The server closes as soon as this request is done: this next request crosses its close frame.
      if (ev.type === 'done') ws.send(JSON.stringify({ type: 'request', id: 'late', prompt: [1], max_tokens: 2 }));
    });
    ws.send(JSON.stringify({ type: 'request', id: 'first', prompt: [1, 2], max_tokens: 40, logit_bias: { '511': -100 } }));
    await new Promise<void>((r) => ws.once('message', () => r()));
    const stopping = s.close(10_000);
    expect(await closed).toBe(1012);
    await stopping;
    expect(events.filter((e) => e.type === 'done').map((e) => [e.id, e.usage.completion_tokens])).toEqual([['first', 40]]);
    expect(events.filter((e) => e.id === 'late')).toEqual([]);
    // The engine ran one request only.
    const text = await s.metrics.registry.metrics();
    expect([...text.matchAll(/^roost_requests_total\{outcome="(\w+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])])).toEqual([['length', 1]]);
    expect(/^roost_prompt_tokens_total (\d+)$/m.exec(text)![1]).toBe('2');
  } finally {
    await s.close(0);
  }
});

// bench/load's WebSocket client resends a request that a draining Roost never
// started (docs/api.md): one with no event before a 1012 close, or with a
// shutting_down error before any token. A scripted WebSocket server plays the
// draining replica on its first connection and a live one on the next.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

import { WsTransport } from '../bench/load/ws';

type Script = (ws: WebSocket, msg: { id: string }, connection: number) => void;

async function scripted(script: Script) {
  const server = http.createServer();
  const wss = new WebSocketServer({ server, path: '/v1/stream' });
  let connections = 0;
  wss.on('connection', (ws) => {
    const n = connections++;
    ws.on('message', (d: Buffer) => script(ws, JSON.parse(d.toString()), n));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    connections: () => connections,
    close: () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A live replica: two tokens, then done. */
function answer(ws: WebSocket, id: string) {
  ws.send(JSON.stringify({ type: 'token', id, text: 'a', token: 97, logprob: -1 }));
  ws.send(JSON.stringify({ type: 'token', id, text: 'b', token: 98, logprob: -1 }));
  ws.send(JSON.stringify({ type: 'done', id, finish_reason: 'length', usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } }));
}

const SPEC = { index: 0, prompt: 'x', promptTokens: 1, maxTokens: 2, seed: 1 };
const OPTS = { temperature: 1, includeUsage: true, timeoutMs: 10_000 };

test.each([
  ['a 1012 close before any event', (ws: WebSocket) => ws.close(1012, 'server restarting')],
  ['a shutting_down error before any token', (ws: WebSocket, id: string) => ws.send(JSON.stringify({ type: 'error', id, code: 'shutting_down', message: 'the server is shutting down' }))],
])('a request refused unstarted by %s is resent on a new connection', async (_what, refuse) => {
  const s = await scripted((ws, msg, connection) => (connection === 0 ? refuse(ws, msg.id) : answer(ws, msg.id)));
  const t = new WsTransport(s.url, OPTS, 'json');
  try {
    await t.prepare(1);
    const r = await t.send(SPEC, 0, performance.now());
    expect(r.error).toBeUndefined();
    expect(r).toMatchObject({ ok: true, outputTokens: 2, tokenEvents: 2, finishReason: 'length' });
    expect(t.resentRequests()).toBe(1);
    expect(s.connections()).toBe(2);
  } finally {
    await t.close();
    await s.close();
  }
});

test('a request cut by a 1012 close after a token, or refused by another close code, fails', async () => {
  const s = await scripted((ws, msg, connection) => {
    if (connection === 0) {
      ws.send(JSON.stringify({ type: 'token', id: msg.id, text: 'a', token: 97, logprob: -1 }));
      ws.close(1012, 'server restarting');
    } else if (connection === 1) ws.close(1001, 'going away');
    else answer(ws, msg.id);
  });
  const t = new WsTransport(s.url, OPTS, 'json');
  try {
    await t.prepare(1);
    const cut = await t.send(SPEC, 0, performance.now());
    expect(cut.ok).toBe(false);
    expect(cut.error?.code).toBe('close_1012');
    const away = await t.send(SPEC, 0, performance.now());
    expect(away.ok).toBe(false);
    expect(away.error?.code).toBe('close_1001');
    expect(t.resentRequests()).toBe(0);
  } finally {
    await t.close();
    await s.close();
  }
});

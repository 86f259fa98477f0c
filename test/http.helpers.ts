// Shared by the HTTP and WebSocket tests: a real server (real engine, fixture
// checkpoint) listening on a free loopback port, and small request helpers.
import * as path from 'node:path';

import { RunningServer, ServeOptions, startServer } from '../src/server';

export const FIXTURES = path.join(__dirname, 'fixtures');
/** BPE tokenizer, context 128, no FIM tokens. */
export const TINY = path.join(FIXTURES, 'gpt2-tiny');
/** Byte tokenizer with eos / fim_prefix / fim_middle / fim_suffix, context 64. */
export const BYTES = path.join(FIXTURES, 'gpt2-bytes');
/** Rotary without n_positions: no context limit (for long-running requests). */
export const UNBOUNDED = path.join(FIXTURES, 'gpt2-rotary');

export function start(model: string, opts: Partial<ServeOptions> = {}): Promise<RunningServer> {
  return startServer({
    model,
    host: '127.0.0.1',
    port: 0,
    threads: 1,
    ...opts,
    app: { keepAliveMs: 50, ...opts.app },
    ws: { heartbeatMs: 60_000, ...opts.ws },
  });
}

/** The server's /v1/completions, or `base` itself when it names a route (e.g. `${s.url}/v1/chat/completions`). */
const route = (base: string) => (new URL(base).pathname === '/' ? `${base}/v1/completions` : base);

export async function post(base: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(route(base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Reads an SSE response into its data events (parsed JSON, or '[DONE]') and comment lines. */
export async function postStream(base: string, body: unknown, signal?: AbortSignal) {
  const res = await fetch(route(base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...(body as object), stream: true }),
    signal,
  });
  const raw = await res.text();
  return { status: res.status, raw, ...parseSse(raw) };
}

export function parseSse(raw: string) {
  const events: any[] = [];
  const comments: string[] = [];
  for (const block of raw.split('\n\n')) {
    if (block === '') continue;
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) comments.push(line);
      else if (line.startsWith('data: ')) {
        const d = line.slice(6);
        events.push(d === '[DONE]' ? d : JSON.parse(d));
      }
    }
  }
  return { events, comments };
}

export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function sequences(s: RunningServer): number {
  return s.holder.runtime!.engine.stats().sequences;
}

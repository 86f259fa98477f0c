// WebSocket transport: Roost's /v1/stream, JSON text frames or protobuf binary
// frames (proto/roost.proto). A pool of connections, each carrying many
// requests by id: in a closed loop each worker has its own connection (slot i
// -> connection i mod size), in an open loop requests go round-robin.
// Connections open before the level starts, so TTFT excludes the handshake.
// A draining Roost (SIGTERM, docs/api.md) closes a connection with 1012 once
// idle and never starts a request that reached it after that close; such a
// request (no event before the 1012 close, or a shutting_down error before any
// token) is resent on a reopened connection, as a balancer resends an HTTP
// request a draining replica refused. Resends are counted, and their time counts
// in the request's latency.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { WebSocket } from 'ws';

import { apiErrorOf, ClassifiedError, classifyError, LoadError } from './errors';
import { repoRoot } from './paths';
import { RequestOptions, RequestResult, StreamClock, Transport } from './transport';
import type { RequestSpec } from './workload';

export type WsFormat = 'json' | 'protobuf';

let types: { client: protobuf.Type; server: protobuf.Type } | undefined;
function protoTypes() {
  if (!types) {
    const file = path.join(repoRoot(), 'proto', 'roost.proto');
    const root = protobuf.parse(fs.readFileSync(file, 'utf8'), { keepCase: true }).root;
    types = { client: root.lookupType('roost.ClientMessage'), server: root.lookupType('roost.ServerMessage') };
  }
  return types;
}

/** A client message (JSON form) as a protobuf ClientMessage. */
export function encodeClientProto(msg: Record<string, unknown>): Uint8Array {
  const { client } = protoTypes();
  const { type, prompt, ...rest } = msg;
  const body: Record<string, unknown> = { ...rest };
  if (typeof prompt === 'string') body.text = prompt;
  else if (Array.isArray(prompt)) body.tokens = { ids: prompt };
  const err = client.verify({ [String(type)]: body });
  if (err) throw new Error(`cannot encode a ${String(type)} message as protobuf: ${err}`);
  return client.encode(client.fromObject({ [String(type)]: body })).finish();
}

/** A protobuf ServerMessage in its JSON form ({type, ...fields}). */
export function decodeServerProto(data: Uint8Array): Record<string, unknown> {
  const { server } = protoTypes();
  const o = server.toObject(server.decode(data), { longs: Number, oneofs: true, defaults: true }) as Record<string, any>;
  return { type: o.kind, ...o[o.kind] };
}

interface Pending {
  /** The connection the request went out on. */
  ws: WebSocket;
  clock: StreamClock;
  spec: RequestSpec;
  levelStart: number;
  usage: { completion_tokens?: unknown; prompt_tokens?: unknown } | null;
  finishReason: string | null;
  timer?: NodeJS.Timeout;
  resolve: (r: RequestResult) => void;
  /** Sends the request again (absent once MAX_RESENDS is reached). */
  resend?: () => void;
}

/** Close code of a draining Roost (src/ws/gateway.ts DRAIN_CLOSE_CODE). */
const DRAIN_CLOSE_CODE = 1012;
const MAX_RESENDS = 5;

let nextId = 0;

class Connection {
  private ws: WebSocket | undefined;
  private opening: Promise<WebSocket> | undefined;
  private lastError: unknown;
  readonly pending = new Map<string, Pending>();
  /** Error events the server could not attribute to a request (no id). */
  unattributed = 0;
  /** Requests sent again after a drain refused them unstarted. */
  resent = 0;

  constructor(
    private readonly url: string,
    private readonly format: WsFormat,
    private readonly opts: RequestOptions,
  ) {}

  open(): Promise<WebSocket> {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve(this.ws);
    if (this.opening) return this.opening;
    this.opening = new Promise<WebSocket>((resolve, reject) => {
      const headers: Record<string, string> = {};
      if (this.opts.apiKey) headers.Authorization = `Bearer ${this.opts.apiKey}`;
      const ws = new WebSocket(this.url, { headers, perMessageDeflate: false, handshakeTimeout: this.opts.timeoutMs > 0 ? this.opts.timeoutMs : undefined });
      let opened = false;
      ws.on('unexpected-response', (_req, res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < 65536) text += c;
        });
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          const api = apiErrorOf(parsed);
          reject(new LoadError('http_status', `WebSocket upgrade refused: HTTP ${res.statusCode}${api?.message ? `: ${api.message}` : ''}`, api?.code, res.statusCode));
        });
        res.on('error', reject);
      });
      ws.on('open', () => {
        opened = true;
        this.ws = ws;
        this.lastError = undefined;
        resolve(ws);
      });
      ws.on('error', (e) => {
        this.lastError = e;
        if (!opened) reject(e);
      });
      ws.on('message', (data: Buffer, binary: boolean) => this.message(ws, data, binary));
      ws.on('close', (code: number, reason: Buffer) => {
        if (this.ws === ws) this.ws = undefined;
        if (!opened) reject(this.lastError ?? new LoadError('connection_closed', `WebSocket closed during the handshake (${code})`, String(code)));
        const why: unknown =
          this.lastError ?? new LoadError('connection_closed', `the WebSocket closed (${code}${reason.length ? ` ${reason.toString()}` : ''}) while the request ran`, `close_${code}`);
        for (const [id, p] of this.pending) {
          if (p.ws !== ws) continue;
          if (code === DRAIN_CLOSE_CODE && p.clock.events === 0 && this.resendUnstarted(id, p)) continue;
          this.settle(id, p, why);
        }
      });
    }).finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  async send(spec: RequestSpec, levelStart: number, clock = new StreamClock(), resends = 0): Promise<RequestResult> {
    let ws: WebSocket;
    try {
      ws = await this.open();
    } catch (e) {
      return clock.result(spec, levelStart, { usage: null, finishReason: null, error: classifyError(e) });
    }
    const id = `load-${nextId++}`;
    const o = this.opts;
    const msg: Record<string, unknown> = { type: 'request', id, prompt: spec.prompt, max_tokens: spec.maxTokens, temperature: o.temperature, seed: spec.seed };
    if (o.logitBias && Object.keys(o.logitBias).length) msg.logit_bias = o.logitBias;
    if (o.logprobs !== undefined) msg.logprobs = o.logprobs;
    Object.assign(msg, o.extraBody);
    let frame: string | Uint8Array;
    try {
      frame = this.format === 'json' ? JSON.stringify(msg) : encodeClientProto(msg);
    } catch (e) {
      return clock.result(spec, levelStart, { usage: null, finishReason: null, error: { kind: 'other', code: 'encode', message: String((e as Error).message) } });
    }
    return new Promise<RequestResult>((resolve) => {
      const p: Pending = { ws, clock, spec, levelStart, usage: null, finishReason: null, resolve };
      if (resends < MAX_RESENDS) p.resend = () => void this.send(spec, levelStart, clock, resends + 1).then(resolve);
      this.pending.set(id, p);
      if (o.timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.settle(id, p, new LoadError('timeout', `no done event within ${o.timeoutMs / 1000} s`, 'client_timeout'));
          if (ws.readyState === WebSocket.OPEN) {
            const cancel = { type: 'cancel', id };
            ws.send(this.format === 'json' ? JSON.stringify(cancel) : encodeClientProto(cancel));
          }
        }, o.timeoutMs);
      }
      ws.send(frame, (err) => {
        if (err) this.settle(id, p, err);
      });
    });
  }

  /** A request the server never started: send it again (false when out of resends). */
  private resendUnstarted(id: string, p: Pending): boolean {
    if (!p.resend || this.pending.get(id) !== p) return false;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    this.resent++;
    p.resend();
    return true;
  }

  private settle(id: string, p: Pending, err?: unknown): void {
    if (this.pending.get(id) !== p) return;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    const error: ClassifiedError | undefined = err === undefined ? undefined : classifyError(err);
    p.resolve(p.clock.result(p.spec, p.levelStart, { usage: p.usage, finishReason: p.finishReason, error }));
  }

  private message(ws: WebSocket, data: Buffer, binary: boolean): void {
    const now = performance.now();
    let ev: Record<string, unknown>;
    try {
      ev = binary ? decodeServerProto(data) : (JSON.parse(data.toString('utf8')) as Record<string, unknown>);
    } catch (e) {
      // A frame we cannot read: fail every request of this connection that could have owned it.
      for (const [id, p] of this.pending) if (p.ws === ws) this.settle(id, p, new LoadError('protocol', `unreadable ${binary ? 'binary' : 'text'} frame: ${(e as Error).message}`, 'invalid_frame'));
      return;
    }
    const id = typeof ev.id === 'string' ? ev.id : '';
    const p = id ? this.pending.get(id) : undefined;
    if (ev.type === 'error' && !p) {
      this.unattributed++;
      return;
    }
    if (!p) return; // a late event of a request that timed out
    if (ev.type === 'token') p.clock.mark(1, now);
    else if (ev.type === 'done') {
      p.usage = (ev.usage as Pending['usage']) ?? null;
      p.finishReason = typeof ev.finish_reason === 'string' ? ev.finish_reason : null;
      this.settle(id, p);
    } else if (ev.type === 'error') {
      const code = typeof ev.code === 'string' && ev.code ? ev.code : 'error_event';
      if (code === 'shutting_down' && p.clock.events === 0) {
        // This connection's server drains: leave it to its running requests, resend on a new one.
        if (this.ws === ws) this.ws = undefined;
        if (this.resendUnstarted(id, p)) return;
      }
      this.settle(id, p, new LoadError('server_error', `error event: ${String(ev.message ?? '')}`, code));
    } else {
      this.settle(id, p, new LoadError('protocol', `unknown event type ${JSON.stringify(ev.type)}`, 'unknown_event'));
    }
  }

  close(): void {
    this.ws?.close(1000);
    this.ws = undefined;
  }
}

export class WsTransport implements Transport {
  readonly name: string;
  private pool: Connection[] = [];
  private rr = 0;
  private readonly url: string;

  /** poolSize: connections (0 = one per slot). */
  constructor(
    base: string,
    private readonly opts: RequestOptions,
    private readonly format: WsFormat = 'json',
    private readonly poolSize = 0,
  ) {
    this.name = `ws-${format}`;
    this.url = base.replace(/^http/, 'ws') + '/v1/stream';
    if (format === 'protobuf') protoTypes(); // fail early on a missing proto file
  }

  async prepare(slots: number): Promise<void> {
    const want = this.poolSize > 0 ? this.poolSize : Math.max(1, slots);
    while (this.pool.length < want) this.pool.push(new Connection(this.url, this.format, this.opts));
    // Open them now (errors surface on the first request that uses a connection).
    await Promise.all(this.pool.slice(0, want).map((c) => c.open().catch(() => undefined)));
  }

  send(spec: RequestSpec, slot: number, levelStart: number): Promise<RequestResult> {
    if (this.pool.length === 0) this.pool.push(new Connection(this.url, this.format, this.opts));
    const i = slot >= 0 ? slot % this.pool.length : this.rr++ % this.pool.length;
    return this.pool[i].send(spec, levelStart);
  }

  unattributedErrors(): number {
    return this.pool.reduce((a, c) => a + c.unattributed, 0);
  }

  /** Requests resent after a draining server refused them unstarted. */
  resentRequests(): number {
    return this.pool.reduce((a, c) => a + c.resent, 0);
  }

  async close(): Promise<void> {
    for (const c of this.pool) c.close();
    this.pool = [];
  }
}

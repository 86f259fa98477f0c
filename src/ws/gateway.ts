// WebSocket gateway, /v1/stream: many requests per connection, each with a
// client id ("request" with a prompt, or "chat" with messages rendered by the
// chat template); one event per token; a final done event; cancel messages. Frames
// are JSON (text) or protobuf (binary); each reply goes out in the format of the
// frame that asked. Backpressure: above highWaterMark buffered bytes the
// connection's requests pause (their sequences sit out of steps), below half
// of it they resume; past hardLimit the peer is dropped. Ping/pong drops dead peers.
// Draining (SIGTERM): each connection is closed with 1012 (service restart) as
// soon as it has no running request; a request frame that arrives after that
// close is not started, so the client may resend it elsewhere (docs/api.md).
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';

import { apiKeyRefusal } from '../engine/api-key';
import { chatMessageType, parseChatStreamMessage, retrievalQuery, startChatStream } from '../engine/chat-params';
import { CompletionEvents, CompletionRun, startCompletion } from '../engine/completion';
import { RequestError, toRequestError } from '../engine/errors';
import { webSocketOriginRefusal } from '../engine/origins';
import { type CompletionParams, messageId, parseStreamMessage } from '../engine/params';
import type { RuntimeHolder } from '../engine/runtime';
import { DEFAULT_STALL_TIMEOUT_MS } from '../engine/scheduler';
import type { Novelty } from '../novelty/corpus';
import { noveltyMeasurer, type Corpora } from '../novelty/registry';
import type { RetrievedEntry } from '../retrieval/in-context';
import { completionRetrieval, type RetroRetrieval } from '../retrieval/retro';
import type { Datastores } from '../retrieval/registry';
import { decodeBinary, decodeText, encodeBinary, encodeText, ServerEvent } from './frames';

export interface GatewayOptions {
  apiKey?: string;
  /** --allowed-origins: an upgrade from a browser page of any other origin is refused (403). */
  allowedOrigins?: readonly string[];
  /** Largest client frame, bytes (ws closes the connection with 1009 beyond it). */
  maxPayload?: number;
  /** Buffered bytes above which the connection's requests pause. */
  highWaterMark?: number;
  /** Buffered bytes above which the connection is dropped. */
  hardLimit?: number;
  /** Ping period, ms; a peer that has not answered the previous ping is dropped. */
  heartbeatMs?: number;
  /** Concurrent requests per connection. */
  maxRequestsPerConnection?: number;
  /** A connection paused by backpressure longer than this, ms, is dropped. */
  stallTimeoutMs?: number;
  /** Datastores for the `retrieval` field (src/retrieval). */
  datastores?: Datastores;
  /** Corpora for the `novelty` field (src/novelty). */
  corpora?: Corpora;
  /**
   * --ui: the server's own page (the playground) may open the WebSocket: an
   * Origin naming the Host it was sent to. (A page that reached this server
   * by DNS rebinding passes too, as its same-origin fetches of the HTTP API
   * do with or without --ui: --api-key is the guard there; docs/playground.md.)
   */
  allowOwnOrigin?: boolean;
}

export const STREAM_PATH = '/v1/stream';
/** Close code of a connection ended by a drain: nothing sent after its last answer was started. */
export const DRAIN_CLOSE_CODE = 1012;

/** A client message of type "chat" (src/engine/chat-params.ts validates the rest). */
function isChat(msg: unknown): msg is Record<string, unknown> {
  return typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === chatMessageType;
}

/**
 * What a request's events report beside its tokens. `passages`: in-context retrieval's,
 * laid before the prompt (on the done event); `retro`: what a retro model's chunks
 * retrieve, each chunk's entry on the first event after its retrieval, as HTTP streams
 * it; `measure`: novelty of the generated text (done event). A chat message fills them
 * in once its prompt is tokenized, before its first event.
 */
interface LaunchExtras {
  passages?: RetrievedEntry[];
  retro?: RetroRetrieval | null;
  measure?: (text: string) => Novelty;
}

interface Live {
  run: CompletionRun;
  binary: boolean;
}

export class Gateway {
  readonly wss: WebSocketServer;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly opts: Required<Omit<GatewayOptions, 'apiKey' | 'datastores' | 'corpora'>> & { apiKey?: string; datastores?: Datastores; corpora?: Corpora };
  private draining = false;
  /** Per open connection: closes it if it has no running request (called on drain and after each request). */
  private readonly leaveIfIdle = new Set<() => void>();

  constructor(
    private readonly holder: RuntimeHolder,
    opts: GatewayOptions = {},
  ) {
    this.opts = {
      allowedOrigins: [],
      allowOwnOrigin: false,
      maxPayload: 1 << 20,
      highWaterMark: 1 << 20,
      hardLimit: 16 << 20,
      heartbeatMs: 30_000,
      maxRequestsPerConnection: 256,
      stallTimeoutMs: DEFAULT_STALL_TIMEOUT_MS,
      ...opts,
    };
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.opts.maxPayload });
    this.wss.on('connection', (ws) => this.connection(ws));
    const alive = new WeakMap<WebSocket, boolean>();
    this.wss.on('connection', (ws) => {
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
    });
    this.heartbeat = setInterval(() => {
      for (const ws of this.wss.clients) {
        if (!alive.get(ws)) {
          ws.terminate();
          continue;
        }
        alive.set(ws, false);
        ws.ping();
      }
    }, this.opts.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Routes an HTTP upgrade: /v1/stream (from an allowed origin, with the API key when one is set), else 404. */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? '/', 'http://x');
      // Refused upgrades get the catalogue's status and the same body as an HTTP error.
      const reject = (e: RequestError) => {
        const body = JSON.stringify(e.body());
        socket.end(
          `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      };
      if (url.pathname !== STREAM_PATH) return reject(new RequestError('not_found', `no WebSocket endpoint at ${url.pathname}: use ${STREAM_PATH}`));
      const refusal =
        webSocketOriginRefusal(this.opts.allowedOrigins ?? [], req.headers.origin, this.opts.allowOwnOrigin && req.headers.host ? [`http://${req.headers.host}`, `https://${req.headers.host}`] : []) ??
        apiKeyRefusal(this.opts.apiKey, req.headers.authorization, url.searchParams.get('api_key'));
      if (refusal) return reject(refusal);
      if (this.draining || this.holder.status === 'draining') return reject(new RequestError('shutting_down', 'the server is shutting down and accepts no new requests'));
      // A balancer retries a 503 elsewhere; a connection accepted now would only get model_loading errors.
      if (this.holder.status === 'loading') return reject(new RequestError('model_loading', 'the model is still loading; retry when GET /health answers 200'));
      this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit('connection', ws, req));
    });
  }

  /** Closes each connection with DRAIN_CLOSE_CODE once its running requests have finished; new upgrades are refused. */
  drain(): void {
    this.draining = true;
    for (const leave of this.leaveIfIdle) leave();
  }

  /** Closes every connection (their requests are cancelled) and stops the heartbeat. */
  close(code = 1001, reason = 'server shutting down'): void {
    clearInterval(this.heartbeat);
    for (const ws of this.wss.clients) ws.close(code, reason);
    this.wss.close();
  }

  private connection(ws: WebSocket): void {
    const live = new Map<string, Live>();
    let paused = false;
    const { highWaterMark, hardLimit } = this.opts;
    const maxRequests = this.opts.maxRequestsPerConnection;
    let leaving = false;
    const leaveIfIdle = () => {
      if (!this.draining || leaving || live.size > 0) return;
      leaving = true;
      ws.close(DRAIN_CLOSE_CODE, 'server restarting: reconnect and resend');
    };
    this.leaveIfIdle.add(leaveIfIdle);
    leaveIfIdle();

    // While paused nothing is sent, so no send callback will report the drain: poll.
    let poll: NodeJS.Timeout | undefined;
    let pausedAt = 0;
    const setPaused = (p: boolean) => {
      if (p === paused) return;
      paused = p;
      for (const l of live.values()) l.run.setPaused(p);
      if (p) {
        pausedAt = Date.now();
        poll = setInterval(() => {
          if (ws.bufferedAmount <= highWaterMark / 2) setPaused(false);
          else if (Date.now() - pausedAt > this.opts.stallTimeoutMs) ws.terminate(); // a reader that stopped reading
        }, 20);
        poll.unref();
      } else if (poll) {
        clearInterval(poll);
        poll = undefined;
      }
    };
    const afterFlush = () => {
      if (paused && ws.bufferedAmount <= highWaterMark / 2) setPaused(false);
    };
    const send = (ev: ServerEvent, binary: boolean) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(binary ? encodeBinary(ev) : encodeText(ev), { binary }, afterFlush);
      const buffered = ws.bufferedAmount;
      if (buffered > hardLimit) {
        ws.terminate(); // a reader this slow would hold unbounded memory
      } else if (buffered > highWaterMark) {
        setPaused(true);
      }
    };
    const sendError = (e: unknown, binary: boolean, id?: string) => {
      const err = toRequestError(e);
      if (err.code === 'server_error' && !(e instanceof RequestError)) {
        process.stderr.write(`roost: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
      }
      send({ type: 'error', id, message: err.message, code: err.code, param: err.param }, binary);
    };

    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (leaving) return; // sent before our close arrived: not started, the client resends it
      let msg: unknown;
      try {
        msg = isBinary ? decodeBinary(data) : decodeText(data);
      } catch (e) {
        return sendError(e, isBinary);
      }
      const id = messageId(msg);
      try {
        const rt = this.holder.require();
        // A chat message (type "chat"): messages rendered with the chat template, then the same stream as a request.
        if (isChat(msg)) {
          const c = parseChatStreamMessage(msg);
          // Retrieval as for a request, known once the messages are rendered and tokenized
          // (novelty is a legacy completions field, refused on chat as on HTTP).
          const extras: LaunchExtras = {};
          const prepare = (p: CompletionParams) => {
            const r = completionRetrieval(rt, this.opts.datastores, p, retrievalQuery(c.chat.messages));
            extras.passages = r.retrieved?.[0];
            extras.retro = r.retro;
            return r.params;
          };
          launch(c.id, (events) => startChatStream(rt, c.chat, events, prepare), c.chat.logprobs !== null && c.chat.logprobs > 0, extras);
          return;
        }
        const m = parseStreamMessage(msg, { vocabSize: rt.info.vocabSize });
        if (m.type === 'cancel') {
          const l = live.get(m.id);
          if (!l) throw new RequestError('invalid_parameter', `no running request with id ${JSON.stringify(m.id)}`, 'id');
          l.run.cancel();
          return;
        }
        // The same retrieval as POST /v1/completions: a retro model retrieves per
        // chunk as the sequence runs, others get passages before the prompt.
        const { params, retro, retrieved } = completionRetrieval(rt, this.opts.datastores, m.request.params);
        const measure = noveltyMeasurer(this.opts.corpora, params);
        launch(m.request.id, (events) => startCompletion(rt, params, events), !!params.logprobs, { passages: retrieved?.[0], retro, measure });
      } catch (e) {
        sendError(e, isBinary, id);
      }

      /** Starts a request under the client's id: one token event per token, then done (or error). */
      function launch(rid: string, start: (events: CompletionEvents) => CompletionRun, withTop: boolean, extras: LaunchExtras = {}): void {
        // The chunks retrieved since the previous event of this request (one choice: index 0).
        const fresh = () => {
          const r = extras.retro?.fresh(0);
          return r && r.length > 0 ? { retrieved: r } : {};
        };
        if (live.has(rid)) throw new RequestError('invalid_parameter', `id ${JSON.stringify(rid)} is already in use by a running request on this connection`, 'id');
        if (live.size >= maxRequests) {
          throw new RequestError('overloaded', `at most ${maxRequests} concurrent requests per connection`, null, 1);
        }
        let finish = 'cancelled';
        let generated = '';
        const run = start({
          onDelta(_index, text, logprobs, token, logprob) {
            if (token === undefined) return;
            if (extras.measure) generated += text;
            const ev: ServerEvent = { type: 'token', id: rid, text, token, logprob: logprob ?? NaN, ...fresh() };
            const top = logprobs?.top_logprobs[logprobs.top_logprobs.length - 1];
            if (withTop && top) ev.top_logprobs = top;
            send(ev, isBinary);
          },
          onChoiceEnd(_index, reason) {
            finish = reason;
          },
        });
        live.set(rid, { run, binary: isBinary });
        if (paused) run.setPaused(true);
        run.result.then(
          (r) => {
            // A cancelled request has no novelty: its text is whatever was cut.
            const { measure, retro, passages } = extras;
            const novelty = measure && finish !== 'cancelled' ? { novelty: measure(generated) } : {};
            const retrieved = retro ? fresh() : passages ? { retrieved: passages } : {};
            send({ type: 'done', id: rid, finish_reason: finish, usage: r.usage, ...retrieved, ...novelty }, isBinary);
          },
          (e) => sendError(e, isBinary, rid),
        ).finally(() => {
          live.delete(rid);
          leaveIfIdle();
        });
      }
    });

    ws.on('close', () => {
      this.leaveIfIdle.delete(leaveIfIdle);
      if (poll) clearInterval(poll);
      for (const l of live.values()) l.run.cancel();
      live.clear();
    });
    ws.on('error', () => {
      // 'close' follows; nothing else to do (a protocol error from the peer).
    });
  }
}

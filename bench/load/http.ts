// HTTP transport: POST {base}/v1/completions with stream: true, read the
// server-sent events. Works with any OpenAI-compatible Completions server:
// token events are chunks whose choices carry text (or logprobs tokens, or a
// chat delta); the usage chunk, when the server sends one, gives the token
// count, else the stream's tokens are counted.
import * as http from 'node:http';
import * as https from 'node:https';

import { apiErrorOf, ClassifiedError, classifyError, LoadError } from './errors';
import { SseReader } from './sse';
import { RequestOptions, RequestResult, StreamClock, Transport } from './transport';
import type { RequestSpec } from './workload';

const MAX_ERROR_BODY = 64 * 1024;

/** Tokens an SSE chunk carries: per choice, its logprobs tokens when present, else 1 when it has text. */
export function chunkTokens(chunk: unknown): number {
  const choices = (chunk as { choices?: unknown } | null)?.choices;
  if (!Array.isArray(choices)) return 0;
  let n = 0;
  for (const c of choices) {
    if (!c || typeof c !== 'object') continue;
    const lp = (c as { logprobs?: { tokens?: unknown; content?: unknown } | null }).logprobs;
    if (lp && Array.isArray(lp.tokens)) {
      n += lp.tokens.length;
      continue;
    }
    if (lp && Array.isArray(lp.content)) {
      n += lp.content.length; // chat completions' logprobs
      continue;
    }
    const text = (c as { text?: unknown }).text ?? (c as { delta?: { content?: unknown } }).delta?.content;
    if (typeof text === 'string' && text.length > 0) n += 1;
  }
  return n;
}

export class HttpTransport implements Transport {
  readonly name = 'http';
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;

  constructor(
    base: string,
    private readonly opts: RequestOptions,
  ) {
    this.url = new URL(`${base}/v1/completions`);
    this.mod = this.url.protocol === 'https:' ? https : http;
    const AgentClass = this.url.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new AgentClass({ keepAlive: true, maxSockets: Infinity, keepAliveMsecs: 1000 });
  }

  async prepare(): Promise<void> {}

  async close(): Promise<void> {
    this.agent.destroy();
  }

  body(spec: RequestSpec): string {
    const o = this.opts;
    const body: Record<string, unknown> = {};
    if (o.modelName !== undefined) body.model = o.modelName;
    body.prompt = spec.prompt;
    body.max_tokens = spec.maxTokens;
    body.temperature = o.temperature;
    body.seed = spec.seed;
    if (o.logitBias && Object.keys(o.logitBias).length) body.logit_bias = o.logitBias;
    if (o.logprobs !== undefined) body.logprobs = o.logprobs;
    body.stream = true;
    if (o.includeUsage) body.stream_options = { include_usage: true };
    return JSON.stringify({ ...body, ...o.extraBody });
  }

  send(spec: RequestSpec, _slot: number, levelStart: number): Promise<RequestResult> {
    const payload = this.body(spec);
    return new Promise((resolve) => {
      const clock = new StreamClock();
      let usage: { completion_tokens?: unknown; prompt_tokens?: unknown } | null = null;
      let finishReason: string | null = null;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        const error: ClassifiedError | undefined = err === undefined ? undefined : classifyError(err);
        resolve(clock.result(spec, levelStart, { usage, finishReason, error }));
      };
      const headers: Record<string, string | number> = {
        'Content-Type': 'application/json',
        Accept: 'text/event-stream',
        'Content-Length': Buffer.byteLength(payload),
      };
      if (this.opts.apiKey) headers.Authorization = `Bearer ${this.opts.apiKey}`;
      const req = this.mod.request(this.url, { method: 'POST', agent: this.agent, headers }, (res) => {
        res.setEncoding('utf8');
        res.on('error', (e) => finish(e));
        res.on('aborted', () => finish(new LoadError('connection_reset', 'the server aborted the response', 'aborted')));
        const status = res.statusCode ?? 0;
        const type = String(res.headers['content-type'] ?? '');
        if (status !== 200 || !type.includes('text/event-stream')) {
          let text = '';
          res.on('data', (c: string) => {
            if (text.length < MAX_ERROR_BODY) text += c;
          });
          res.on('end', () => {
            let parsed: unknown;
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = undefined;
            }
            const api = apiErrorOf(parsed);
            if (status !== 200) {
              finish(new LoadError('http_status', `HTTP ${status}${api?.message ? `: ${api.message}` : text ? `: ${text.slice(0, 200)}` : ''}`, api?.code, status));
            } else {
              finish(new LoadError('protocol', `HTTP 200 with Content-Type ${JSON.stringify(type)}, not text/event-stream`, 'not_event_stream'));
            }
          });
          return;
        }
        let done = false;
        const reader = new SseReader((data) => {
          if (settled) return;
          const now = performance.now();
          if (data.trim() === '[DONE]') {
            done = true;
            finish();
            return;
          }
          let chunk: unknown;
          try {
            chunk = JSON.parse(data);
          } catch {
            finish(new LoadError('protocol', `an event's data is not JSON: ${data.slice(0, 120)}`, 'invalid_json'));
            return;
          }
          if (chunk && typeof chunk === 'object' && 'error' in chunk && (chunk as { error: unknown }).error) {
            const api = apiErrorOf(chunk);
            finish(new LoadError('server_error', `error event: ${api?.message ?? data.slice(0, 200)}`, api?.code ?? 'error_event'));
            return;
          }
          const n = chunkTokens(chunk);
          if (n > 0) clock.mark(n, now);
          const choices = (chunk as { choices?: unknown }).choices;
          if (Array.isArray(choices)) {
            for (const c of choices) {
              const fr = (c as { finish_reason?: unknown } | null)?.finish_reason;
              if (typeof fr === 'string') finishReason = fr;
            }
          } else if (!(chunk as { usage?: unknown }).usage) {
            finish(new LoadError('protocol', `an event is neither a completion chunk nor an error: ${data.slice(0, 120)}`, 'unexpected_event'));
            return;
          }
          const u = (chunk as { usage?: unknown }).usage;
          if (u && typeof u === 'object') usage = u as typeof usage;
        });
        res.on('data', (c: string) => reader.push(c));
        res.on('end', () => {
          reader.end();
          if (!done) finish(new LoadError('protocol', 'the event stream ended without data: [DONE]', 'no_done'));
        });
      });
      req.on('error', (e) => finish(e));
      if (this.opts.timeoutMs > 0) {
        timer = setTimeout(() => {
          finish(new LoadError('timeout', `no complete answer within ${this.opts.timeoutMs / 1000} s`, 'client_timeout'));
          req.destroy();
        }, this.opts.timeoutMs);
      }
      req.end(payload);
    });
  }
}

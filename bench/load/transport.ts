// What a transport does with one request, and what it measures. Times are
// taken with performance.now() in this process: TTFT from just before the
// request is written to the arrival of the first event that carries a token;
// ITL the gaps between successive token-carrying events of the request; E2E
// from the same start to the end of the request's stream.
import type { ClassifiedError } from './errors';
import type { RequestSpec } from './workload';

export interface RequestOptions {
  temperature: number;
  /** The body's `model` field (omitted when undefined). */
  modelName?: string;
  /** Sent as logit_bias (e.g. {"256": -100} keeps a byte model from stopping at eos). */
  logitBias?: Record<string, number>;
  /** Sent as logprobs (then each token carries its own chunk on Roost, text or not). */
  logprobs?: number;
  /** Ask for the usage chunk (stream_options.include_usage); off for servers that refuse the field. */
  includeUsage: boolean;
  /** Merged into every request body / message (server-specific fields, e.g. {"ignore_eos": true}). */
  extraBody?: Record<string, unknown>;
  apiKey?: string;
  /** Per-request limit, ms (0 = none). */
  timeoutMs: number;
}

export interface RequestResult {
  index: number;
  /** When the request was sent, ms from the level's start. */
  sentAtMs: number;
  ok: boolean;
  /** Request sent -> first token event; null when no token arrived. */
  ttftMs: number | null;
  /** Request sent -> end of stream (or the failure). */
  e2eMs: number;
  /** Gaps between successive token events. */
  itlMs: number[];
  /** Output tokens: the usage's completion_tokens when the server sent usage, else counted from the stream. */
  outputTokens: number;
  tokenSource: 'usage' | 'stream';
  /** Token-carrying events (SSE chunks with text or logprobs tokens; WebSocket token events). */
  tokenEvents: number;
  /** The usage's prompt_tokens, when sent. */
  promptTokens: number | null;
  finishReason: string | null;
  error?: ClassifiedError;
}

export interface Transport {
  readonly name: string;
  /** Called before a level with the number of slots (closed loop: workers) it will use. */
  prepare(slots: number): Promise<void>;
  /** Sends one request on a slot; never rejects (failures come back as results with an error). */
  send(spec: RequestSpec, slot: number, levelStart: number): Promise<RequestResult>;
  close(): Promise<void>;
}

/** Timestamps of one request's stream. */
export class StreamClock {
  readonly t0 = performance.now();
  private first: number | null = null;
  private last = 0;
  readonly itl: number[] = [];
  events = 0;
  tokens = 0;

  /** An event carrying `tokens` (>= 1) tokens arrived now. */
  mark(tokens: number, now = performance.now()): void {
    if (this.first === null) this.first = now;
    else this.itl.push(now - this.last);
    this.last = now;
    this.events++;
    this.tokens += tokens;
  }

  result(
    spec: RequestSpec,
    levelStart: number,
    o: { usage: { completion_tokens?: unknown; prompt_tokens?: unknown } | null; finishReason: string | null; error?: ClassifiedError },
  ): RequestResult {
    const end = performance.now();
    const usageTokens = typeof o.usage?.completion_tokens === 'number' ? o.usage.completion_tokens : null;
    const r: RequestResult = {
      index: spec.index,
      sentAtMs: this.t0 - levelStart,
      ok: !o.error,
      ttftMs: this.first === null ? null : this.first - this.t0,
      e2eMs: end - this.t0,
      itlMs: this.itl,
      outputTokens: usageTokens ?? this.tokens,
      tokenSource: usageTokens === null ? 'stream' : 'usage',
      tokenEvents: this.events,
      promptTokens: typeof o.usage?.prompt_tokens === 'number' ? o.usage.prompt_tokens : null,
      finishReason: o.finishReason,
    };
    if (o.error) r.error = o.error;
    return r;
  }
}

/** `http://host:port[/prefix]` without a trailing slash or `/v1`. */
export function normalizeBaseUrl(base: string): string {
  const u = new URL(base);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--base-url must be http:// or https:// (got ${base})`);
  let p = u.pathname.replace(/\/+$/, '');
  if (p.endsWith('/v1')) p = p.slice(0, -3);
  return `${u.protocol}//${u.host}${p}`;
}

// A completion request as the engine layer sees it, and its validation from a
// client's JSON (HTTP body or WebSocket message). JSON stops here: the HTTP and
// WebSocket edges call parseCompletionBody / parseStreamMessage and pass the
// typed result on. Every refusal is a RequestError naming the field.
import { describe, invalidParam, RequestError } from './errors';
import type { SequenceSpec } from './scheduler';

/** One prompt: text, or token ids. */
export type Prompt = string | number[];

export interface CompletionParams {
  /** The `model` field as sent (the served model, "model:adapter" or an adapter's name; resolved by src/engine/adapters.ts), or null. */
  model: string | null;
  /** The `adapter` field: a served adapter's name, or null. */
  adapter: string | null;
  /** Each prompt gets its own `n` choices: choice index = prompt_index * n + i. */
  prompts: Prompt[];
  /** Fill-in-the-middle: text after the insertion point (null = plain completion). */
  suffix: string | null;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  n: number;
  /** Sequences generated per prompt; the n best by cumulative log-prob are returned. */
  bestOf: number;
  stop: string[];
  /** Seed of choice i of a prompt is seed + i; null = a random seed per sequence. */
  seed: number | null;
  echo: boolean;
  /** Top alternatives per token in the response; null = no logprobs at all. */
  logprobs: number | null;
  logitBias: Array<[number, number]>;
  /** OpenAI's penalties over the tokens sampled so far in the choice, -2..2 (0 = off). */
  presencePenalty: number;
  frequencyPenalty: number;
  /** vLLM's / HF's penalty of prompt and output tokens, (0, 2] (1 = off). */
  repetitionPenalty: number;
  /** 0..1: drop tokens with p < minP * p_max after temperature (0 = off). */
  minP: number;
  /** No eos / stop token id / stop string ends a choice before this many tokens. */
  minTokens: number;
  /** The model's end-of-sequence ids neither end a choice nor are masked by minTokens. */
  ignoreEos: boolean;
  /** Token ids that end a choice (as eos does). */
  stopTokenIds: number[];
  /** Keep the matched stop string (or the stop token's text) at the end of the text. */
  includeStopStrInOutput: boolean;
  stream: boolean;
  includeUsage: boolean;
  /** In-context retrieval (src/retrieval/in-context.ts); absent or null = none. */
  retrieval?: RetrievalParams | null;
  /** RAVEN novelty of each choice against a served corpus (src/novelty); absent or null = none. */
  novelty?: NoveltyParams | null;
  /** kNN memory at decode time (cpp/knn_memory.h); absent or null = none. */
  memory?: MemoryRequest | null;
  /** retro: fixed neighbours per chunk (k * 2m tokens, null: none); set by roost score, not by HTTP. */
  neighbours?: Array<number[] | null>;
  /** retro: live retrieval per chunk of each choice (src/retrieval/retro.ts); set by the route, not by the body. */
  retroLive?: { forChoice(index: number): NonNullable<SequenceSpec['retro']> };
}

/** The `novelty` field (docs/api.md). */
export interface NoveltyParams {
  corpus: string;
}

/** The `memory` field (docs/api.md "kNN memory"). */
export interface MemoryRequest {
  /** A served datastore built with --knn; null = local memory only. */
  datastore: string | null;
  k: number;
  lambda: number;
  temperature: number;
  local: boolean;
}

/** The `retrieval` field (docs/api.md). */
export interface RetrievalParams {
  datastore: string;
  /** null: not given (in-context retrieval takes DEFAULT_RETRIEVAL_K, a retro model its num_neighbours). */
  k: number | null;
  mode: 'dense' | 'bm25' | 'hybrid';
  returnPassages: boolean;
}

/** What validation needs to know about the served model. */
export interface ModelLimits {
  vocabSize: number;
}

// Bounds that keep one request from monopolising the server; documented in docs/api.md.
export const LIMITS = {
  maxTokens: 1 << 24,
  n: 128,
  bestOf: 128,
  sequencesPerRequest: 256,
  prompts: 256,
  stopStrings: 16,
  stopLength: 256,
  logprobs: 20,
  logitBiasEntries: 1024,
  stopTokenIds: 1024,
  idLength: 256,
  retrievalK: 64,
  memoryK: 1024, // cpp/knn_memory.h kMaxMemoryK
} as const;

export const DEFAULT_MAX_TOKENS = 16; // OpenAI's legacy Completions default

/** Sampling fields of OpenAI (penalties) and vLLM (the rest), on both surfaces (docs/api.md "Sampling"). */
const SAMPLING_EXTRA_FIELDS = [
  'presence_penalty', 'frequency_penalty', 'repetition_penalty', 'min_p', 'min_tokens', 'ignore_eos', 'stop_token_ids',
  'include_stop_str_in_output',
];

/** Fields of POST /v1/completions. */
const COMPLETION_FIELDS = new Set([
  'model', 'adapter', 'prompt', 'suffix', 'max_tokens', 'temperature', 'top_p', 'top_k', 'n', 'best_of', 'stop', 'seed',
  'echo', 'logprobs', 'logit_bias', 'stream', 'stream_options', 'user', ...SAMPLING_EXTRA_FIELDS, 'retrieval', 'novelty', 'memory',
]);

/** Fields of a WebSocket request message (one sequence per request; src/engine/chat-params.ts derives the chat message's). */
export const STREAM_FIELDS = new Set([
  'type', 'id', 'model', 'adapter', 'prompt', 'suffix', 'max_tokens', 'temperature', 'top_p', 'top_k', 'stop', 'seed', 'logprobs',
  'logit_bias', ...SAMPLING_EXTRA_FIELDS, 'retrieval', 'novelty', 'memory',
]);

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function present(o: Obj, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k) && o[k] !== null && o[k] !== undefined;
}

function rejectUnknown(o: Obj, known: Set<string>): void {
  for (const k of Object.keys(o)) {
    if (!known.has(k)) {
      throw new RequestError('unknown_parameter', `Unrecognized request argument supplied: ${describeKey(k)}`, k);
    }
  }
}

function describeKey(k: string): string {
  return k.length > 64 ? `${JSON.stringify(k.slice(0, 64))}... (${k.length} characters)` : JSON.stringify(k);
}

function int(o: Obj, k: string, min: number, max: number, dflt: number): number {
  if (!present(o, k)) return dflt;
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidParam(k, `an integer from ${min} to ${max}`, v);
  }
  return v;
}

function num(o: Obj, k: string, min: number, max: number, dflt: number, minExclusive = false): number {
  if (!present(o, k)) return dflt;
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v > max || (minExclusive ? v <= min : v < min)) {
    throw invalidParam(k, `a number ${minExclusive ? 'greater than' : 'from'} ${min} ${minExclusive ? 'and at most' : 'to'} ${max}`, v);
  }
  return v;
}

function bool(o: Obj, k: string, dflt: boolean): boolean {
  if (!present(o, k)) return dflt;
  const v = o[k];
  if (typeof v !== 'boolean') throw invalidParam(k, 'a boolean', v);
  return v;
}

function optString(o: Obj, k: string, maxLength = Infinity): string | null {
  if (!present(o, k)) return null;
  const v = o[k];
  if (typeof v !== 'string') throw invalidParam(k, 'a string', v);
  if (v.length > maxLength) throw invalidParam(k, `a string of at most ${maxLength} characters`, v);
  return v;
}

function tokenIds(v: unknown[], param: string, limits: ModelLimits): number[] {
  if (v.length === 0) throw new RequestError('invalid_parameter', `${param} must not be empty`, 'prompt');
  for (let i = 0; i < v.length; i++) {
    const t = v[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= limits.vocabSize) {
      throw invalidParam(`${param}[${i}]`, `a token id from 0 to ${limits.vocabSize - 1}`, t);
    }
  }
  return v as number[];
}

/** prompt: string | string[] | int[] | int[][] (OpenAI legacy Completions). */
function prompts(o: Obj, limits: ModelLimits, allowBatch: boolean): Prompt[] {
  if (!present(o, 'prompt')) throw new RequestError('invalid_parameter', 'prompt is required', 'prompt');
  const v = o.prompt;
  if (typeof v === 'string') return [v];
  const shapes = allowBatch ? 'a string, an array of strings, an array of token ids or an array of token-id arrays' : 'a string or an array of token ids';
  if (!Array.isArray(v)) throw invalidParam('prompt', shapes, v);
  if (v.length === 0) throw new RequestError('invalid_parameter', 'prompt must not be an empty array', 'prompt');
  if (typeof v[0] === 'number') return [tokenIds(v, 'prompt', limits)];
  if (!allowBatch) throw invalidParam('prompt', shapes, v);
  if (v.length > LIMITS.prompts) throw invalidParam('prompt', `at most ${LIMITS.prompts} prompts`, v);
  if (typeof v[0] === 'string') {
    v.forEach((p, i) => {
      if (typeof p !== 'string') throw invalidParam(`prompt[${i}]`, 'a string like the other prompts', p);
    });
    return v as string[];
  }
  if (Array.isArray(v[0])) {
    return v.map((p, i) => {
      if (!Array.isArray(p)) throw invalidParam(`prompt[${i}]`, 'an array of token ids like the other prompts', p);
      return tokenIds(p, `prompt[${i}]`, limits);
    });
  }
  throw invalidParam('prompt[0]', 'a string, a token id or an array of token ids', v[0]);
}

function stop(o: Obj): string[] {
  if (!present(o, 'stop')) return [];
  const v = o.stop;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list)) throw invalidParam('stop', 'a string or an array of strings', v);
  if (list.length > LIMITS.stopStrings) throw invalidParam('stop', `at most ${LIMITS.stopStrings} strings`, v);
  list.forEach((s, i) => {
    const name = typeof v === 'string' ? 'stop' : `stop[${i}]`;
    if (typeof s !== 'string') throw invalidParam(name, 'a string', s);
    if (s.length === 0 || s.length > LIMITS.stopLength) throw invalidParam(name, `a string of 1 to ${LIMITS.stopLength} characters`, s);
  });
  return list as string[];
}

function logitBias(o: Obj, limits: ModelLimits): Array<[number, number]> {
  if (!present(o, 'logit_bias')) return [];
  const v = o.logit_bias;
  if (!isObject(v)) throw invalidParam('logit_bias', 'an object mapping token ids (as strings) to biases', v);
  const entries = Object.entries(v);
  if (entries.length > LIMITS.logitBiasEntries) throw invalidParam('logit_bias', `at most ${LIMITS.logitBiasEntries} entries`, v);
  return entries.map(([key, bias]) => {
    const id = /^(0|[1-9][0-9]{0,9})$/.test(key) ? Number(key) : NaN;
    if (!(id >= 0 && id < limits.vocabSize)) {
      throw new RequestError('invalid_parameter', `logit_bias key ${describeKey(key)} must be a token id from 0 to ${limits.vocabSize - 1}`, 'logit_bias');
    }
    if (typeof bias !== 'number' || !Number.isFinite(bias) || bias < -100 || bias > 100) {
      throw invalidParam(`logit_bias[${key}]`, 'a number from -100 to 100', bias);
    }
    return [id, bias] as [number, number];
  });
}

function stopTokenIds(o: Obj, limits: ModelLimits): number[] {
  if (!present(o, 'stop_token_ids')) return [];
  const v = o.stop_token_ids;
  if (!Array.isArray(v)) throw invalidParam('stop_token_ids', 'an array of token ids', v);
  if (v.length > LIMITS.stopTokenIds) throw invalidParam('stop_token_ids', `at most ${LIMITS.stopTokenIds} token ids`, v);
  v.forEach((t, i) => {
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= limits.vocabSize) {
      throw invalidParam(`stop_token_ids[${i}]`, `a token id from 0 to ${limits.vocabSize - 1}`, t);
    }
  });
  return v as number[];
}

function seed(o: Obj): number | null {
  if (!present(o, 'seed')) return null;
  const v = o.seed;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    throw invalidParam('seed', `an integer from ${Number.MIN_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER}`, v);
  }
  return v;
}

function logprobs(o: Obj): number | null {
  if (!present(o, 'logprobs')) return null;
  const v = o.logprobs;
  // The chat API's boolean form, met in clients that share code between the two.
  if (typeof v === 'boolean') throw invalidParam('logprobs', `an integer from 0 to ${LIMITS.logprobs} (legacy Completions take a count, not a boolean)`, v);
  return int(o, 'logprobs', 0, LIMITS.logprobs, 0);
}

/** The passages in-context retrieval lays before a prompt when the request gives no `retrieval.k`. */
export const DEFAULT_RETRIEVAL_K = 4;

/** retrieval: {datastore, k (default: DEFAULT_RETRIEVAL_K, a retro model's num_neighbours), mode = "hybrid", return_passages = true} (src/retrieval/in-context.ts, retro.ts). */
function retrieval(o: Obj): RetrievalParams | null {
  if (!present(o, 'retrieval')) return null;
  const r = o.retrieval;
  if (!isObject(r)) throw invalidParam('retrieval', 'an object {datastore, k, mode, return_passages}', r);
  for (const k of Object.keys(r)) {
    if (!['datastore', 'k', 'mode', 'return_passages'].includes(k)) {
      throw new RequestError('unknown_parameter', `Unrecognized request argument supplied: retrieval.${describeKey(k)}`, `retrieval.${k}`);
    }
  }
  const datastore = r.datastore;
  if (typeof datastore !== 'string' || datastore === '' || datastore.length > LIMITS.idLength) {
    throw invalidParam('retrieval.datastore', `a datastore name of 1 to ${LIMITS.idLength} characters`, datastore);
  }
  const k = r.k ?? null;
  if (k !== null && (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > LIMITS.retrievalK)) throw invalidParam('retrieval.k', `an integer from 1 to ${LIMITS.retrievalK}`, k);
  const mode = r.mode ?? 'hybrid';
  if (mode !== 'dense' && mode !== 'bm25' && mode !== 'hybrid') throw invalidParam('retrieval.mode', '"dense", "bm25" or "hybrid"', mode);
  const returnPassages = r.return_passages ?? true;
  if (typeof returnPassages !== 'boolean') throw invalidParam('retrieval.return_passages', 'a boolean', returnPassages);
  return { datastore, k, mode, returnPassages };
}

/** novelty: {corpus} (src/novelty). */
function novelty(o: Obj): NoveltyParams | null {
  if (!present(o, 'novelty')) return null;
  const v = o.novelty;
  if (!isObject(v)) throw invalidParam('novelty', 'an object {corpus}', v);
  for (const k of Object.keys(v)) {
    if (k !== 'corpus') throw new RequestError('unknown_parameter', `Unrecognized request argument supplied: novelty.${describeKey(k)}`, `novelty.${k}`);
  }
  const corpus = v.corpus;
  if (typeof corpus !== 'string' || corpus === '' || corpus.length > LIMITS.idLength) {
    throw invalidParam('novelty.corpus', `a corpus name of 1 to ${LIMITS.idLength} characters`, corpus);
  }
  return { corpus };
}

/** memory: {datastore?, k = 16, lambda = 0.25, temperature = 1, local = false}; a datastore, local or both. */
function memory(o: Obj): MemoryRequest | null {
  if (!present(o, 'memory')) return null;
  const m = o.memory;
  if (!isObject(m)) throw invalidParam('memory', 'an object {datastore, k, lambda, temperature, local}', m);
  for (const k of Object.keys(m)) {
    if (!['datastore', 'k', 'lambda', 'temperature', 'local'].includes(k)) {
      throw new RequestError('unknown_parameter', `Unrecognized request argument supplied: memory.${describeKey(k)}`, `memory.${k}`);
    }
  }
  const datastore = m.datastore ?? null;
  if (datastore !== null && (typeof datastore !== 'string' || datastore === '' || datastore.length > LIMITS.idLength)) {
    throw invalidParam('memory.datastore', `a datastore name of 1 to ${LIMITS.idLength} characters`, datastore);
  }
  const k = m.k ?? 16;
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > LIMITS.memoryK) throw invalidParam('memory.k', `an integer from 1 to ${LIMITS.memoryK}`, k);
  const lambda = m.lambda ?? 0.25;
  if (typeof lambda !== 'number' || !(lambda >= 0 && lambda <= 1)) throw invalidParam('memory.lambda', 'a number from 0 to 1', lambda);
  const temperature = m.temperature ?? 1;
  if (typeof temperature !== 'number' || !(temperature > 0) || !Number.isFinite(temperature)) {
    throw invalidParam('memory.temperature', 'a finite number > 0', temperature);
  }
  const local = m.local ?? false;
  if (typeof local !== 'boolean') throw invalidParam('memory.local', 'a boolean', local);
  if (datastore === null && !local) throw new RequestError('invalid_parameter', 'memory needs a datastore, local: true, or both', 'memory');
  return { datastore, k, lambda, temperature, local };
}

/** Shared sampling fields of both surfaces. */
function sampling(o: Obj, limits: ModelLimits) {
  const maxTokens = int(o, 'max_tokens', 0, LIMITS.maxTokens, DEFAULT_MAX_TOKENS);
  return {
    suffix: optString(o, 'suffix'),
    model: optString(o, 'model', LIMITS.idLength),
    adapter: optString(o, 'adapter', LIMITS.idLength),
    maxTokens,
    temperature: num(o, 'temperature', 0, 2, 1),
    topP: num(o, 'top_p', 0, 1, 1, true),
    // -1 is vLLM's "off"; 0 is Roost's.
    topK: Math.max(0, int(o, 'top_k', -1, 1 << 30, 0)),
    stop: stop(o),
    seed: seed(o),
    logprobs: logprobs(o),
    logitBias: logitBias(o, limits),
    ...penaltiesAndStops(o, limits, maxTokens),
    retrieval: retrieval(o),
    novelty: novelty(o),
    memory: memory(o),
  };
}

/** The OpenAI penalties and vLLM's extra sampling fields, with vLLM's ranges. */
function penaltiesAndStops(o: Obj, limits: ModelLimits, maxTokens: number) {
  const minTokens = int(o, 'min_tokens', 0, LIMITS.maxTokens, 0);
  if (minTokens > maxTokens) {
    throw new RequestError('invalid_parameter', `min_tokens must be at most max_tokens (got min_tokens ${minTokens}, max_tokens ${maxTokens})`, 'min_tokens');
  }
  return {
    presencePenalty: num(o, 'presence_penalty', -2, 2, 0),
    frequencyPenalty: num(o, 'frequency_penalty', -2, 2, 0),
    repetitionPenalty: num(o, 'repetition_penalty', 0, 2, 1, true),
    minP: num(o, 'min_p', 0, 1, 0),
    minTokens,
    ignoreEos: bool(o, 'ignore_eos', false),
    stopTokenIds: stopTokenIds(o, limits),
    includeStopStrInOutput: bool(o, 'include_stop_str_in_output', false),
  };
}

/** Validates a POST /v1/completions body. */
export function parseCompletionBody(body: unknown, limits: ModelLimits): CompletionParams {
  if (!isObject(body)) throw new RequestError('invalid_parameter', `the request body must be a JSON object (got ${describe(body)})`, null);
  rejectUnknown(body, COMPLETION_FIELDS);
  optString(body, 'user');
  const ps = prompts(body, limits, true);
  const s = sampling(body, limits);
  const n = int(body, 'n', 1, LIMITS.n, 1);
  const bestOf = int(body, 'best_of', 1, LIMITS.bestOf, n);
  if (bestOf < n) throw new RequestError('invalid_parameter', `best_of must be at least n (got best_of ${bestOf}, n ${n})`, 'best_of');
  if (ps.length * bestOf > LIMITS.sequencesPerRequest) {
    throw new RequestError(
      'invalid_parameter',
      `a request may run at most ${LIMITS.sequencesPerRequest} sequences (got ${ps.length} prompts x ${bestOf} ${present(body, 'best_of') ? 'best_of' : 'n'})`,
      present(body, 'best_of') ? 'best_of' : 'n',
    );
  }
  const stream = bool(body, 'stream', false);
  if (stream && bestOf > n) {
    throw new RequestError('invalid_parameter', 'best_of cannot be used with stream (best_of must equal n when streaming)', 'best_of');
  }
  let includeUsage = false;
  if (present(body, 'stream_options')) {
    const so = body.stream_options;
    if (!isObject(so)) throw invalidParam('stream_options', 'an object', so);
    if (!stream) throw new RequestError('invalid_parameter', 'stream_options is only allowed when stream is true', 'stream_options');
    for (const k of Object.keys(so)) {
      if (k !== 'include_usage') throw new RequestError('unknown_parameter', `Unrecognized request argument supplied: stream_options.${k}`, `stream_options.${k}`);
    }
    includeUsage = bool(so, 'include_usage', false);
  }
  const echo = bool(body, 'echo', false);
  if (s.suffix !== null && echo) throw new RequestError('invalid_parameter', 'echo cannot be used with suffix', 'echo');
  return { prompts: ps, ...s, n, bestOf, stream, includeUsage, echo };
}

/** A WebSocket request message: one sequence, streamed token by token. */
export interface StreamRequest {
  id: string;
  params: CompletionParams;
}

export type StreamMessage = { type: 'request'; request: StreamRequest } | { type: 'cancel'; id: string };

/**
 * Validates a WebSocket client message (already decoded from JSON or
 * protobuf into a plain object with the JSON field names). Errors carry the
 * client id when it could be read, so the gateway can address them.
 */
export function parseStreamMessage(msg: unknown, limits: ModelLimits): StreamMessage {
  if (!isObject(msg)) throw new RequestError('invalid_parameter', `a message must be a JSON object (got ${describe(msg)})`, null);
  const type = msg.type;
  if (type !== 'request' && type !== 'cancel') throw invalidParam('type', '"request", "chat" or "cancel"', type);
  const id = msg.id;
  if (typeof id !== 'string' || id.length === 0 || id.length > LIMITS.idLength) {
    throw invalidParam('id', `a string of 1 to ${LIMITS.idLength} characters`, id);
  }
  if (type === 'cancel') {
    for (const k of Object.keys(msg)) {
      if (k !== 'type' && k !== 'id') throw new RequestError('unknown_parameter', `Unrecognized cancel argument supplied: ${describeKey(k)}`, k);
    }
    return { type, id };
  }
  rejectUnknown(msg, STREAM_FIELDS);
  const ps = prompts(msg, limits, false);
  const s = sampling(msg, limits);
  return {
    type,
    request: {
      id,
      params: { prompts: ps, ...s, n: 1, bestOf: 1, stream: true, includeUsage: true, echo: false },
    },
  };
}

/** The id a malformed message meant, when it can be read (for addressing its error). */
export function messageId(msg: unknown): string | undefined {
  if (isObject(msg) && typeof msg.id === 'string' && msg.id.length > 0 && msg.id.length <= LIMITS.idLength) return msg.id;
  return undefined;
}

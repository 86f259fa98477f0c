// One completion request from typed params to text: tokenization (with the
// fill-in-the-middle layout of docs/spec.md), the context check,
// one engine sequence per choice (best_of of them per prompt), incremental
// detokenization, stop strings, log-probs in OpenAI's legacy shape, best_of
// ranking and usage. HTTP and WebSocket both run requests through here.
import { randomInt } from 'node:crypto';

import type { AdapterInfo, EngineInfo, NativeEngine, SequenceParams, TokenLogprob } from '../native';
import type { AdapterLeases } from './adapter-leases';
import type { ChatTemplate } from './chat-template';
import { resolveTarget } from './adapters';
import { Detokenizer } from './detokenizer';
import { checkLogprobCost, minTokens } from './request-cost';
import { RequestError } from './errors';
import type { CompletionParams, Prompt } from './params';
import { FinishReason, ScheduledRequest, Scheduler, SequenceSpec } from './scheduler';
import { StopMatcher } from './stop';
import { OFF_THREAD_PROMPT_BYTES, type TokenizerWorker } from './tokenize-offthread';
import type { Tokenizer } from './tokenizer';
import { isEncoderDecoder, refuseEncoderDecoderFields } from './encoder-decoder';

/** The loaded model and what serves it. */
export interface ModelRuntime {
  engine: NativeEngine;
  info: EngineInfo;
  tokenizer: Tokenizer;
  /** Tokenizes large prompts off the event loop (absent: every prompt is tokenized on it). */
  tokenizeWorker?: TokenizerWorker;
  scheduler: Scheduler;
  /** The name clients use in `model` (GET /v1/models). */
  modelId: string;
  /** The checkpoint folder (adapters loaded at run time are checked against its weights). */
  modelDir?: string;
  /** sha256 of the served weight files, once computed (src/engine/adapters.ts weightsSha256). */
  weightsSha256?: string;
  /** Adapters loaded into the engine, by name. */
  adapters: Map<string, AdapterInfo>;
  /** Keeps an unloaded adapter in the engine while submitted requests use it (absent: unload at once). */
  leases?: AdapterLeases;
  observer?: CompletionObserver;
  /** Renders chat messages to a prompt (src/engine/chat-template.ts); absent: the model has none. */
  chatTemplate?: ChatTemplate | null;
}

/** Per-request timings and counts for metrics (src/http/metrics.ts). */
export interface CompletionObserver {
  onAccepted?(promptTokens: number): void;
  onFirstToken?(seconds: number): void;
  onInterToken?(seconds: number): void;
  onGenerated?(tokens: number): void;
  onFinished?(outcome: 'stop' | 'length' | 'cancelled' | 'error'): void;
}

/** OpenAI legacy Completions `logprobs` object (arrays parallel over tokens). */
export interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

export type ChoiceFinish = 'stop' | 'length';

export interface Choice {
  index: number;
  text: string;
  logprobs: LegacyLogprobs | null;
  finish_reason: ChoiceFinish | null;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface CompletionResult {
  choices: Choice[];
  usage: Usage;
}

/** Callbacks: called for stream requests only (which have best_of == n), but onFirstToken. */
export interface CompletionEvents {
  /** Admitted to the engine (left the queue). */
  onStarted?(): void;
  /**
   * New output for a choice: released text (may be '' while text is held back
   * for a stop string or an incomplete character) and, with logprobs, the
   * entries of the tokens it came with. `token` is the sampled id (undefined
   * for the echoed prompt).
   */
  onDelta?(index: number, text: string, logprobs: LegacyLogprobs | null, token?: number, logprob?: number): void;
  onChoiceEnd?(index: number, reason: ChoiceFinish): void;
  /** The request's first token was sampled (every request, streamed or not: the access log's TTFT). */
  onFirstToken?(): void;
  /**
   * Each sampled token that gets a log-prob entry (logprobs asked, not an
   * end-of-sequence id), with its top alternatives as the engine gave them:
   * called streamed or not, before that token's onDelta; index as in onDelta
   * (a choice's when best_of == n). For responses that need the ids (the chat
   * shape, src/engine/chat-logprobs.ts).
   */
  onTokenLogprob?(index: number, token: number, logprob: number, top: readonly TokenLogprob[]): void;
}

export interface CompletionRun {
  /**
   * Resolves once the request is tokenized, validated and queued: at once,
   * unless a large prompt is being tokenized off the event loop. Rejects
   * with the RequestError that refused it (as `result` does).
   */
  accepted: Promise<void>;
  /**
   * Resolves when every sequence ended (choices ranked, usage); rejects with a
   * RequestError when refused, on timeout / engine failure / shutdown. A
   * request cancelled before it was queued is never submitted: no choices.
   */
  result: Promise<CompletionResult>;
  cancel(): void;
  setPaused(paused: boolean): void;
}

/** The FIM special tokens of a model, or null if it has not all of them. */
export function fimTokens(info: EngineInfo, tokenizer: Tokenizer): { prefix: number; middle: number; suffix: number; eos: number } | null {
  const find = (name: string) => info.specialTokens[name] ?? tokenizer.specialTokens[name];
  const prefix = find('fim_prefix');
  const middle = find('fim_middle');
  const suffix = find('fim_suffix');
  const eos = find('eos') ?? (info.eosTokenId >= 0 ? info.eosTokenId : undefined);
  if (prefix === undefined || middle === undefined || suffix === undefined || eos === undefined) return null;
  return { prefix, middle, suffix, eos };
}

/**
 * Token ids of each prompt (FIM layout when suffix is set); validates against
 * the context, of which a soft prompt takes `reserved` positions. Throws the
 * checks that need no tokens at once; the ids come at once, or as a promise
 * when the prompts are large and the runtime has a tokenizer worker.
 */
export function tokenizePrompts(rt: ModelRuntime, p: CompletionParams, reserved = 0): number[][] | Promise<number[][]> {
  if (isEncoderDecoder(rt.info)) refuseEncoderDecoderFields(rt.modelId, p);
  let fim: ReturnType<typeof fimTokens> = null;
  if (p.suffix !== null) {
    fim = fimTokens(rt.info, rt.tokenizer);
    if (!fim) {
      throw new RequestError(
        'invalid_parameter',
        `suffix is not supported by model ${rt.modelId}: it has no fim_prefix / fim_middle / fim_suffix / eos special tokens`,
        'suffix',
      );
    }
  }
  const max = rt.info.maxContext;
  const name = (i: number) => (p.prompts.length > 1 ? `prompt[${i}]` : 'prompt');
  const checkContext = (i: number, tokens: number, atLeast: boolean) => {
    if (max > 0 && reserved + tokens + p.maxTokens > max) {
      const soft = reserved > 0 ? `${reserved} for the adapter's soft prompt, ` : '';
      const least = atLeast ? 'at least ' : '';
      throw new RequestError(
        'context_length_exceeded',
        `This model's maximum context length is ${max} tokens, however you requested ${least}${reserved + tokens + p.maxTokens} tokens ` +
          `(${soft}${least}${tokens} in ${name(i)}, ${p.maxTokens} for max_tokens). Please reduce the prompt or max_tokens.`,
        reserved + tokens >= max ? 'prompt' : 'max_tokens',
      );
    }
  };
  // Before any tokenizing: the fewest tokens each prompt can be, from its length (src/engine/request-cost.ts).
  const fimExtra = fim ? 3 + minTokens(rt.tokenizer, p.suffix!) : 0;
  const least = p.prompts.map((x, i) => {
    const n = fimExtra + minTokens(rt.tokenizer, x);
    checkContext(i, n, typeof x === 'string' || fim !== null);
    return n;
  });
  checkLogprobCost(p, least, true);

  // The texts to encode: the string prompts, then the suffix.
  const texts = p.prompts.filter((x): x is string => typeof x === 'string');
  if (fim) texts.push(p.suffix!);
  const withIds = (encoded: number[][]): number[][] => {
    let next = 0;
    const enc = (x: Prompt) => (typeof x === 'string' ? encoded[next++] : x);
    const prompts = p.prompts.map(enc);
    const suffixIds = fim ? encoded[next] : [];
    const ids = prompts.map((x, i) => {
      const t = fim ? [fim.prefix, ...x, fim.suffix, ...suffixIds, fim.middle] : x;
      if (t.length === 0) throw new RequestError('invalid_parameter', `${name(i)} must not be empty: it encodes to no tokens`, 'prompt');
      checkContext(i, t.length, false);
      return t;
    });
    checkLogprobCost(p, ids.map((t) => t.length), false);
    return ids;
  };
  const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t, 'utf8'), 0);
  if (rt.tokenizeWorker && bytes >= OFF_THREAD_PROMPT_BYTES) return rt.tokenizeWorker.encode(texts).then(withIds);
  return withIds(texts.map((t) => rt.tokenizer.encode(t)));
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A token's text for logprobs: its bytes as text, or OpenAI's "bytes:\xNN" form for a partial character. */
export function tokenString(tokenizer: Tokenizer, id: number): string {
  if (tokenizer.tokenBytes) {
    const b = tokenizer.tokenBytes(id);
    try {
      return utf8.decode(b);
    } catch {
      return 'bytes:' + Array.from(b, (x) => '\\x' + x.toString(16).padStart(2, '0')).join('');
    }
  }
  return tokenizer.decode([id]);
}

function emptyLogprobs(): LegacyLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/** One sequence's output as it grows. */
class SequenceOutput {
  readonly detok: Detokenizer;
  readonly stops: StopMatcher;
  text = '';
  echo = '';
  logprobs: LegacyLogprobs | null;
  /** Token entries not yet sent with a delta (streaming). */
  pending: LegacyLogprobs | null;
  offset = 0;
  cumLogprob = 0;
  generated = 0;
  finish: FinishReason | null = null;
  lastTokenAt = 0;

  constructor(tokenizer: Tokenizer, stops: string[], includeStop: boolean, withLogprobs: boolean, streaming: boolean) {
    this.detok = new Detokenizer(tokenizer);
    this.stops = new StopMatcher(stops, includeStop);
    this.logprobs = withLogprobs ? emptyLogprobs() : null;
    this.pending = withLogprobs && streaming ? emptyLogprobs() : null;
  }

  addEntry(token: string, logprob: number | null, top: Record<string, number> | null): void {
    for (const lp of this.pending ? [this.logprobs!, this.pending] : [this.logprobs!]) {
      lp.tokens.push(token);
      lp.token_logprobs.push(logprob);
      lp.top_logprobs.push(top);
      lp.text_offset.push(this.offset);
    }
    this.offset += token.length;
  }

  takePending(): LegacyLogprobs | null {
    if (!this.pending) return null;
    const p = this.pending;
    this.pending = emptyLogprobs();
    return p;
  }
}

/**
 * Validates, tokenizes and submits. Throws a RequestError synchronously (400 /
 * 429 / 503 cases) unless a large prompt goes to the tokenizer worker: then
 * the run's `accepted` and `result` reject with it, and a run cancelled while
 * its prompt is tokenized is never submitted.
 */
export function startCompletion(rt: ModelRuntime, p: CompletionParams, events: CompletionEvents = {}): CompletionRun {
  const { adapter } = resolveTarget(rt.modelId, rt.adapters, p.model, p.adapter);
  const tokenized = tokenizePrompts(rt, p, adapter?.promptTokens ?? 0);
  if (!(tokenized instanceof Promise)) return submitCompletion(rt, p, adapter, tokenized, events);
  return deferredRun(
    tokenized.then((promptIds) => () => {
      // Not queued yet, so it holds no lease: an adapter unloaded meanwhile is refused by name (404) here.
      const target = resolveTarget(rt.modelId, rt.adapters, p.model, p.adapter);
      return submitCompletion(rt, p, target.adapter, promptIds, events);
    }),
  );
}

/**
 * A run that starts once `ready` resolves (a prompt tokenized off the event
 * loop): `ready` gives the function that starts it, which is not called if
 * the run was cancelled meanwhile. A rejection of `ready`, or a throw of the
 * start, rejects `accepted` and `result` (unless cancelled: nobody to tell).
 */
export function deferredRun(ready: Promise<() => CompletionRun>): CompletionRun {
  let run: CompletionRun | undefined;
  let cancelled = false;
  let paused = false;
  const submitted = ready.then(
    (start) => {
      if (cancelled) return undefined;
      run = start();
      if (paused) run.setPaused(true);
      return run;
    },
    (e) => {
      if (cancelled) return undefined; // its client is gone: nobody to tell
      throw e;
    },
  );
  const accepted = submitted.then((r) => r?.accepted);
  const result = submitted.then((r) => r?.result ?? { choices: [], usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } });
  // A caller may read only one of them; keep the other's rejection from going unhandled.
  accepted.catch(() => undefined);
  result.catch(() => undefined);
  return {
    accepted,
    result,
    cancel: () => {
      cancelled = true;
      run?.cancel();
    },
    setPaused: (value) => {
      paused = value;
      run?.setPaused(value);
    },
  };
}

/** Submits tokenized prompts to the scheduler; throws RequestError synchronously (400 / 429 / 503 cases). */
function submitCompletion(
  rt: ModelRuntime,
  p: CompletionParams,
  adapter: AdapterInfo | null,
  promptIds: number[][],
  events: CompletionEvents,
): CompletionRun {
  const tok = rt.tokenizer;
  // Ids that end a sequence: the request's stop_token_ids, and unless ignore_eos FIM's eos, else the
  // model's eos and the checkpoint's eos_token_id lists.
  const eosIds = p.suffix !== null ? [fimTokens(rt.info, tok)!.eos] : [rt.info.eosTokenId >= 0 ? rt.info.eosTokenId : tok.eosId, ...tok.stopIds];
  const stops = new Set([...(p.ignoreEos ? [] : eosIds), ...p.stopTokenIds].filter((id) => id !== undefined && id >= 0));
  const requestStops = new Set(p.stopTokenIds);
  const withLogprobs = p.logprobs !== null;
  const k = p.logprobs ?? 0;
  // Events only for streamed requests, where every sequence is a returned choice (best_of == n).
  const streaming = p.stream && p.bestOf === p.n;
  const outputs: SequenceOutput[] = [];
  const specs: SequenceSpec[] = [];
  const submittedAt = performance.now();
  let firstToken = true;
  let started = false;
  const obs = rt.observer;
  let failure: RequestError | undefined;

  const topDict = (top: TokenLogprob[] | undefined, chosen: number, chosenLp: number): Record<string, number> => {
    const d: Record<string, number> = {};
    for (const [id, lp] of top ?? []) {
      const s = tokenString(tok, id);
      if (!(s in d) || d[s] < lp) d[s] = lp;
    }
    const s = tokenString(tok, chosen);
    if (!(s in d)) d[s] = chosenLp; // OpenAI always includes the sampled token
    return d;
  };

  promptIds.forEach((ids, pi) => {
    const promptText = typeof p.prompts[pi] === 'string' ? (p.prompts[pi] as string) : tok.decode(ids);
    for (let i = 0; i < p.bestOf; i++) {
      const out = new SequenceOutput(tok, p.stop, p.includeStopStrInOutput, withLogprobs, streaming);
      const index = pi * p.n + i; // meaningful for streaming (best_of == n)
      outputs.push(out);
      const params: SequenceParams = {
        temperature: p.temperature,
        topK: p.topK,
        topP: p.topP,
        seed: BigInt.asUintN(64, BigInt(p.seed ?? randomInt(0, 2 ** 47)) + BigInt(p.seed !== null ? i : 0)),
        logitBias: p.logitBias,
        logprobs: k,
        presencePenalty: p.presencePenalty,
        frequencyPenalty: p.frequencyPenalty,
        repetitionPenalty: p.repetitionPenalty,
        minP: p.minP,
        // The engine masks the ids that would end the sequence until min_tokens are sampled.
        ...(p.minTokens > 0 ? { minTokens: p.minTokens, stopTokenIds: [...stops] } : {}),
        ...(adapter ? { adapter: adapter.name } : {}),
        // kNN memory: the engine's store of a datastore is named as the datastore (src/retrieval/registry.ts).
        ...(p.memory
          ? {
              memory: {
                ...(p.memory.datastore !== null ? { datastore: p.memory.datastore } : {}),
                k: p.memory.k,
                lambda: p.memory.lambda,
                temperature: p.memory.temperature,
                local: p.memory.local,
              },
            }
          : {}),
      };
      const emit = (text: string, token?: number, logprob?: number) => {
        if (streaming) events.onDelta?.(index, text, out.takePending(), token, logprob);
      };
      specs.push({
        prompt: ids,
        params,
        maxTokens: p.maxTokens,
        promptLogprobs: p.echo && withLogprobs,
        ...(p.neighbours ? { retro: { chunkSize: rt.info.retroChunkSize, neighbours: (u: number) => p.neighbours![u] ?? null } } : {}),
        ...(p.retroLive ? { retro: p.retroLive.forChoice(index) } : {}), // (the choice index when best_of == n)
        listener: {
          onAdmitted() {
            if (!started) {
              started = true;
              if (streaming) events.onStarted?.();
            }
          },
          onPromptLogprobs(start, lps, tops) {
            for (let j = 0; j < lps.length; j++) {
              const id = ids[start + j];
              const first = start + j === 0;
              const lp = lps[j];
              out.addEntry(
                tokenString(tok, id),
                first || Number.isNaN(lp) ? null : lp,
                first || Number.isNaN(lp) ? null : topDict(tops?.[j], id, lp),
              );
            }
          },
          onPrefilled() {
            if (!p.echo) return;
            out.echo = promptText;
            if (withLogprobs) out.offset = promptText.length;
            emit(promptText);
          },
          onToken(token, logprob, top, last) {
            const now = performance.now();
            if (firstToken) {
              firstToken = false;
              obs?.onFirstToken?.((now - submittedAt) / 1000);
              events.onFirstToken?.();
            } else if (out.lastTokenAt > 0) {
              obs?.onInterToken?.((now - out.lastTokenAt) / 1000);
            }
            out.lastTokenAt = now;
            out.generated++;
            out.cumLogprob += logprob;
            if (stops.has(token)) {
              // End of sequence: no text (but a stop_token_ids token's own with
              // include_stop_str_in_output); release what a stop string held back.
              const keep = p.includeStopStrInOutput && requestStops.has(token);
              if (keep && withLogprobs) out.addEntry(tokenString(tok, token), logprob, topDict(top, token, logprob));
              const tail = (keep ? out.detok.push(token) : '') + out.detok.flush();
              const r = out.stops.push(tail);
              const text = r.emit + (r.stopped ? '' : out.stops.flush());
              out.text += text;
              emit(text, token, logprob);
              return true;
            }
            if (withLogprobs) {
              out.addEntry(tokenString(tok, token), logprob, topDict(top, token, logprob));
              events.onTokenLogprob?.(index, token, logprob, top ?? []);
            }
            let piece = out.detok.push(token);
            if (last) piece += out.detok.flush();
            // Before min_tokens, no stop string ends the choice (vLLM).
            const r = out.stops.push(piece, out.generated >= p.minTokens);
            let text = r.emit;
            if (last && !r.stopped) text += out.stops.flush();
            out.text += text;
            emit(text, token, logprob);
            return r.stopped;
          },
          onFinish(reason, error) {
            out.finish = reason;
            obs?.onGenerated?.(out.generated);
            if (reason === 'error' && !failure) failure = error;
            if (streaming && (reason === 'stop' || reason === 'length')) events.onChoiceEnd?.(index, reason);
          },
        },
      });
    }
  });

  const { maxBatch, maxQueue } = rt.scheduler.options;
  if (maxQueue === 0 && specs.length > maxBatch) {
    // It could never start: without a queue a request must fit the batch at once.
    const param = p.bestOf > p.n ? 'best_of' : p.prompts.length > 1 && p.n === 1 ? 'prompt' : 'n';
    throw new RequestError(
      'invalid_parameter',
      `this request runs ${specs.length} sequences (${p.prompts.length} prompt(s) x ${param === 'best_of' ? `best_of ${p.bestOf}` : `n ${p.n}`}) but the server ` +
        `runs at most ${maxBatch} at once and queues none (--max-batch ${maxBatch}, --max-queue 0): it can never start; lower ${param}`,
      param,
    );
  }
  const req: ScheduledRequest = rt.scheduler.submit(specs);
  if (adapter && rt.leases) req.done.then(rt.leases.acquire(adapter.name));
  const promptTokens = promptIds.reduce((a, ids) => a + ids.length, 0);
  obs?.onAccepted?.(promptTokens);

  const result = req.done.then((): CompletionResult => {
    const reasons = outputs.map((o) => o.finish);
    const outcome = failure ? 'error' : reasons.includes('cancelled') ? 'cancelled' : reasons.includes('stop') ? 'stop' : 'length';
    obs?.onFinished?.(outcome);
    if (failure) throw failure;
    const choices: Choice[] = [];
    for (let pi = 0; pi < promptIds.length; pi++) {
      let group = outputs.slice(pi * p.bestOf, (pi + 1) * p.bestOf);
      if (p.bestOf > p.n) {
        // best_of: the n sequences with the highest cumulative log-prob, best first (OpenAI).
        group = [...group].sort((a, b) => b.cumLogprob - a.cumLogprob).slice(0, p.n);
      }
      group.forEach((o, i) => {
        const f = o.finish;
        choices.push({
          index: pi * p.n + i,
          text: o.echo + o.text,
          logprobs: o.logprobs,
          finish_reason: f === 'stop' || f === 'length' ? f : null,
        });
      });
    }
    const completion = outputs.reduce((a, o) => a + o.generated, 0);
    return { choices, usage: { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion } };
  });
  // A caller that only streams may never read the result; keep its rejection from going unhandled.
  result.catch(() => undefined);

  return {
    accepted: Promise.resolve(),
    result,
    cancel: () => req.cancel(),
    setPaused: (paused) => req.setPaused(paused),
  };
}

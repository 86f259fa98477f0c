// A minimal single-sequence loop over the native engine, used by the CLI:
// generate (prefill in chunks, then one token per step), score (prompt
// log-probs) and windowed scoring of long texts (roost eval). The
// continuously batched scheduler of the server is separate; this stays small.
import { NativeEngine, SequenceParams, TokenLogprob } from '../native';
import { Detokenizer } from './detokenizer';
import { Tokenizer } from './tokenizer';

/** Tokens per prefill step (the engine's own pass size). */
export const PREFILL_CHUNK = 512;

export type FinishReason = 'stop' | 'length';

export interface GenerateOptions extends SequenceParams {
  /** Most tokens to generate (>= 1). */
  maxTokens: number;
  /** Stop (without emitting it) when this token is sampled; default the model's eos, -1 for none. */
  eosId?: number;
}

export interface GeneratedToken {
  token: number;
  /** Raw log p(token). */
  logprob: number;
  top?: TokenLogprob[];
}

function chunks(tokens: ArrayLike<number>, size: number): Int32Array[] {
  const all = Int32Array.from(tokens as ArrayLike<number>);
  const out: Int32Array[] = [];
  for (let start = 0; start < all.length; start += size) out.push(all.subarray(start, Math.min(start + size, all.length)));
  return out;
}

function checkContext(engine: NativeEngine, n: number, what: string): void {
  const max = engine.info().maxContext;
  if (max > 0 && n > max) throw new RangeError(`${what} has ${n} tokens; the model's context holds ${max}`);
}

/**
 * Generates up to maxTokens tokens after `prompt` (at least one token). The
 * prompt is prefilled in chunks of PREFILL_CHUNK without sampling except the
 * last. Stops at eos (not yielded), after maxTokens, or once prompt +
 * generated tokens fill the model's context (as the reference's greedy does).
 * Returns the finish reason. The sequence is freed however the loop ends.
 */
export async function* generateTokens(
  engine: NativeEngine,
  prompt: ArrayLike<number>,
  options: GenerateOptions,
): AsyncGenerator<GeneratedToken, FinishReason, void> {
  const { maxTokens, eosId, ...params } = options;
  if (prompt.length === 0) throw new RangeError('the prompt must hold at least one token');
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer (got ${maxTokens})`);
  checkContext(engine, prompt.length, 'the prompt');
  const info = engine.info();
  const eos = eosId ?? info.eosTokenId;

  const seq = engine.createSequence(params);
  try {
    const parts = chunks(prompt, PREFILL_CHUNK);
    let last;
    for (let i = 0; i < parts.length; i++) {
      [last] = await engine.step([{ seq, tokens: parts[i], sample: i === parts.length - 1 }]);
    }
    for (let produced = 0; ; ) {
      const token = last!.token!;
      if (token === eos) return 'stop';
      produced++;
      yield { token, logprob: last!.logprob!, top: last!.top };
      if (produced >= maxTokens) return 'length';
      if (info.maxContext > 0 && prompt.length + produced >= info.maxContext) return 'length';
      [last] = await engine.step([{ seq, tokens: [token], sample: true }]);
    }
  } finally {
    engine.freeSequence(seq);
  }
}

/** generateTokens, detokenized: yields text pieces (complete UTF-8 characters only). */
export async function* generateText(
  engine: NativeEngine,
  tokenizer: Tokenizer,
  prompt: ArrayLike<number>,
  options: GenerateOptions,
): AsyncGenerator<string, FinishReason, void> {
  const detok = new Detokenizer(tokenizer);
  const tokens = generateTokens(engine, prompt, options);
  try {
    for (;;) {
      const r = await tokens.next();
      if (r.done) {
        const tail = detok.flush();
        if (tail) yield tail;
        return r.value;
      }
      const piece = detok.push(r.value.token);
      if (piece) yield piece;
    }
  } finally {
    await tokens.return(undefined as never); // frees the sequence when the consumer stops early
  }
}

/**
 * [null, log p(t1 | t0), ..., log p(t_{n-1} | t_0..t_{n-2})] in one sequence
 * (natural log). Throws RangeError beyond the model's context.
 */
export async function score(engine: NativeEngine, tokens: ArrayLike<number>): Promise<Array<number | null>> {
  if (tokens.length === 0) return [];
  checkContext(engine, tokens.length, 'the text');
  const seq = engine.createSequence({ temperature: 0 });
  try {
    const out: Array<number | null> = [];
    for (const part of chunks(tokens, PREFILL_CHUNK)) {
      const [r] = await engine.step([{ seq, tokens: part, sample: false, promptLogprobs: true }]);
      for (const lp of r.promptLogprobs!) out.push(Number.isNaN(lp) ? null : lp);
    }
    return out;
  } finally {
    engine.freeSequence(seq);
  }
}

export interface LongScore {
  /** log p of every token, null for the first (index = position in the text). */
  logprobs: Array<number | null>;
  /** Tokens per window (the model's context, or the whole text when unbounded). */
  window: number;
  /** New tokens per window after the first. */
  stride: number;
  windows: number;
}

/**
 * Scores every token after the first exactly once, for texts longer than the
 * model's context (roost eval):
 *
 *  - window W = the model's max context (0 = unbounded: one window holds the
 *    whole text), stride S = floor(W / 2);
 *  - the first window is tokens [0, min(W, T)) and scores tokens 1 .. min(W, T)-1;
 *  - each next window ends S tokens further, at b = min(end + S, T), starts at
 *    b - W (so it overlaps the previous one by W - S tokens), and scores only
 *    its new tokens [end, b): each of them sees at least W - S tokens before it.
 *
 * A window is an ordinary fresh sequence (same numbers as `roost score` on it).
 */
export async function scoreLong(engine: NativeEngine, tokens: ArrayLike<number>): Promise<LongScore> {
  const T = tokens.length;
  const max = engine.info().maxContext;
  const W = max > 0 ? max : Math.max(T, 1);
  if (W < 2) throw new RangeError(`the model's context (${W}) is too short to score anything`);
  const S = Math.max(1, Math.floor(W / 2));
  const all = Array.from(tokens as ArrayLike<number>);
  const logprobs: Array<number | null> = new Array(T).fill(null);
  let end = Math.min(W, T);
  let windows = 1;
  const first = await score(engine, all.slice(0, end));
  for (let t = 1; t < end; t++) logprobs[t] = need(first[t], t, 0);
  while (end < T) {
    const b = Math.min(end + S, T);
    const a = b - W;
    const lp = await score(engine, all.slice(a, b));
    for (let t = end; t < b; t++) logprobs[t] = need(lp[t - a], t, a);
    end = b;
    windows++;
  }
  return { logprobs, window: W, stride: S, windows };

  function need(v: number | null, t: number, start: number): number {
    if (v === null) {
      throw new Error(`the model gave no log-prob for token ${t} (window from ${start}): windowed scoring of ` +
        `${engine.info().modelType} is not supported yet`);
    }
    return v;
  }
}

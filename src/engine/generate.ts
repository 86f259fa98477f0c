// A minimal single-sequence loop over the native engine, used by the CLI:
// generate (prefill in chunks, then one token per step), score (prompt
// log-probs) and windowed scoring of long texts (roost eval). The
// continuously batched scheduler of the server is separate; this stays small.
import { prefillTake } from './chunking';
import { AdapterInfo, NativeEngine, SequenceParams, TokenLogprob } from '../native';
import { Detokenizer } from './detokenizer';
import { Tokenizer } from './tokenizer';

/** Tokens per prefill step (the engine's own pass size). */
export const PREFILL_CHUNK = 512;

export type FinishReason = 'stop' | 'length';

export interface GenerateOptions extends SequenceParams {
  /** Most tokens to generate (>= 1). */
  maxTokens: number;
  /** Stop (without emitting it) when this token is sampled; default the model's eos and stopIds, -1 for none. */
  eosId?: number;
  /** More ids that stop like eos when eosId is not given (Tokenizer.stopIds). */
  stopIds?: readonly number[];
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
  for (let start = 0; start < all.length; ) {
    const n = prefillTake(all.length - start, size);
    out.push(all.subarray(start, start + n));
    start += n;
  }
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
  const { maxTokens, eosId, stopIds, ...params } = options;
  if (prompt.length === 0) throw new RangeError('the prompt must hold at least one token');
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer (got ${maxTokens})`);
  const reserved = params.adapter ? (engine.adapters().find((a) => a.name === params.adapter)?.promptTokens ?? 0) : 0;
  checkContext(engine, reserved + prompt.length, 'the prompt');
  const info = engine.info();
  const stops = new Set(eosId !== undefined ? [eosId] : [info.eosTokenId, ...(stopIds ?? [])]);

  const seq = engine.createSequence(params);
  try {
    const parts = chunks(prompt, PREFILL_CHUNK);
    let last;
    for (let i = 0; i < parts.length; i++) {
      [last] = await engine.step([{ seq, tokens: parts[i], sample: i === parts.length - 1 }]);
    }
    for (let produced = 0; ; ) {
      const token = last!.token!;
      if (stops.has(token)) return 'stop';
      produced++;
      yield { token, logprob: last!.logprob!, top: last!.top };
      if (produced >= maxTokens) return 'length';
      if (info.maxContext > 0 && reserved + prompt.length + produced >= info.maxContext) return 'length';
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
  const tokens = generateTokens(engine, prompt, { stopIds: tokenizer.stopIds, ...options });
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
export async function score(engine: NativeEngine, tokens: ArrayLike<number>, adapter?: AdapterInfo): Promise<Array<number | null>> {
  if (tokens.length === 0) return [];
  checkContext(engine, tokens.length + (adapter?.promptTokens ?? 0), 'the text' + (adapter?.promptTokens ? ` with the soft prompt of adapter ${adapter.name}` : ''));
  // With a soft prompt, entry 0 is defined too: log p(token 0 | soft prompt).
  const seq = engine.createSequence(adapter ? { temperature: 0, adapter: adapter.name } : { temperature: 0 });
  try {
    // One step: the engine splits it into passes itself, and keeps a
    // perceiver_ar prompt in one pass so its echo log-probs are exact.
    const [r] = await engine.step([{ seq, tokens: Int32Array.from(tokens), sample: false, promptLogprobs: true }]);
    return Array.from(r.promptLogprobs!, (lp) => (Number.isNaN(lp) ? null : lp));
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
 * Scores every token after the first exactly once, for texts longer than one
 * window (roost eval):
 *
 *  - each window holds at most W tokens and is scored from a fresh sequence;
 *  - R = how many of a full window's last positions get log-probs: W - 1 for
 *    models with logits everywhere, N - 1 for perceiver_ar with N latents
 *    (only latents have logits), read off the first window;
 *  - the first window ends at min(T, R + 1), so it scores tokens 1 .. R;
 *    each next window ends S = min(R, W / 2) tokens further and scores only
 *    its S new tokens, with up to W - S tokens of context before them.
 */
export async function scoreLong(engine: NativeEngine, tokens: ArrayLike<number>, window: number, adapter?: AdapterInfo): Promise<LongScore> {
  const T = tokens.length;
  const W = window;
  if (W < 2) throw new RangeError(`the window (${W}) is too short to score anything`);
  const all = Array.from(tokens as ArrayLike<number>);
  const logprobs: Array<number | null> = new Array(T).fill(null);
  let windows = 0;
  const scoreWindow = async (b: number) => {
    windows++;
    const a = Math.max(0, b - W);
    return { a, lp: await score(engine, all.slice(a, b), adapter) };
  };
  // Probe R on the first full window: its trailing run of log-probs.
  let first = await scoreWindow(Math.min(T, W));
  let R = 0;
  while (R < first.lp.length - 1 && first.lp[first.lp.length - 1 - R] !== null) R++;
  if (R === 0) throw new Error(`the model gave no log-prob in a window of ${first.lp.length} tokens`);
  let end = Math.min(T, R + 1);
  if (end !== first.lp.length) first = await scoreWindow(end);
  for (let t = 1; t < end; t++) logprobs[t] = need(first.lp[t], t);
  const S = Math.max(1, Math.min(R, Math.floor(W / 2)));
  while (end < T) {
    const b = Math.min(end + S, T);
    const { a, lp } = await scoreWindow(b);
    for (let t = end; t < b; t++) logprobs[t] = need(lp[t - a], t);
    end = b;
  }
  return { logprobs, window: W, stride: S, windows };

  function need(v: number | null, t: number): number {
    if (v === null) throw new Error(`internal: no log-prob for token ${t} in its window`);
    return v;
  }
}

// roost score and roost eval on the server's path: a text (or a window of
// one) is an echo request with logprobs 0 and max_tokens 0, validated,
// context-checked and scheduled exactly as POST /v1/completions runs it.
import { startCompletion, type ModelRuntime } from './completion';
import { parseCompletionBody } from './params';

/**
 * [null, log p(t1 | t0), ..., log p(t_{n-1} | t_0..t_{n-2})] (natural log),
 * or a RequestError naming what is wrong (a token id out of range, a text
 * over the context). The runtime's scheduler must take the text in one step
 * (stepTokens >= its length): perceiver_ar's echo log-probs are exact only for
 * a prompt's last step (docs/models.md), and the engine keeps one step's
 * prompt in one pass.
 */
export async function scoreTokens(
  rt: ModelRuntime,
  tokens: number[],
  adapter?: string,
  neighbours?: Array<number[] | null>,
): Promise<Array<number | null>> {
  const stepTokens = rt.scheduler.options.stepTokens;
  if (tokens.length > stepTokens) throw new Error(`internal: scoring ${tokens.length} tokens needs a scheduler of stepTokens >= ${tokens.length} (has ${stepTokens})`);
  const body = { prompt: tokens, max_tokens: 0, echo: true, logprobs: 0, temperature: 0, ...(adapter === undefined ? {} : { adapter }) };
  const params = parseCompletionBody(body, { vocabSize: rt.info.vocabSize });
  if (neighbours) params.neighbours = neighbours; // retro's fixed neighbours (roost score --neighbours)
  const { choices } = await startCompletion(rt, params).result;
  return choices[0].logprobs!.token_logprobs;
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
 *  - each window holds at most W tokens and is scored from a fresh sequence
 *    by scoreText (scoreTokens);
 *  - R = how many of a full window's last positions get log-probs: W - 1 for
 *    models with logits everywhere, N - 1 for perceiver_ar with N latents
 *    (only latents have logits), read off the first window;
 *  - the first window ends at min(T, R + 1), so it scores tokens 1 .. R;
 *    each next window ends S = min(R, W / 2) tokens further and scores only
 *    its S new tokens, with up to W - S tokens of context before them.
 */
export async function scoreLong(
  scoreText: (tokens: number[]) => Promise<Array<number | null>>,
  tokens: ArrayLike<number>,
  window: number,
): Promise<LongScore> {
  const T = tokens.length;
  const W = window;
  if (W < 2) throw new RangeError(`the window (${W}) is too short to score anything`);
  const all = Array.from(tokens as ArrayLike<number>);
  const logprobs: Array<number | null> = new Array(T).fill(null);
  let windows = 0;
  const scoreWindow = async (b: number) => {
    windows++;
    const a = Math.max(0, b - W);
    return { a, lp: await scoreText(all.slice(a, b)) };
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

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
/** One scoring window: tokens [a, b) of the text, of which it scores [from, b). */
export interface ScoreWindow {
  a: number;
  b: number;
  from: number;
}

/**
 * scoreLong's windows over a text of T tokens for a model that gives log-probs
 * to the last R positions of a window of W (W - 1 for models with logits
 * everywhere): the first window scores 1 .. min(T, R + 1) - 1, each next one
 * ends S = min(R, W / 2) further (or `stride`) and scores its S new tokens.
 * Also the windows of eval with memory and (stride 7W/8) of kNN memory keys
 * (src/retrieval/knn.ts).
 */
export function windowPlan(T: number, W: number, R: number, stride = Math.min(R, Math.floor(W / 2))): ScoreWindow[] {
  let end = Math.min(T, R + 1);
  const plan: ScoreWindow[] = [{ a: 0, b: end, from: 1 }];
  const S = Math.max(1, Math.min(R, stride));
  while (end < T) {
    const b = Math.min(end + S, T);
    plan.push({ a: Math.max(0, b - W), b, from: end });
    end = b;
  }
  return plan;
}

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
  const scoreWindow = async (a: number, b: number) => {
    windows++;
    return scoreText(all.slice(a, b));
  };
  // Probe R on the first full window: its trailing run of log-probs.
  const probe = await scoreWindow(0, Math.min(T, W));
  let R = 0;
  while (R < probe.length - 1 && probe[probe.length - 1 - R] !== null) R++;
  if (R === 0) throw new Error(`the model gave no log-prob in a window of ${probe.length} tokens`);
  const plan = windowPlan(T, W, R);
  for (const [i, w] of plan.entries()) {
    const lp = i === 0 && w.b === probe.length ? probe : await scoreWindow(w.a, w.b);
    for (let t = w.from; t < w.b; t++) logprobs[t] = need(lp[t - w.a], t);
  }
  const S = Math.max(1, Math.min(R, Math.floor(W / 2)));
  return { logprobs, window: W, stride: S, windows };

  function need(v: number | null, t: number): number {
    if (v === null) throw new Error(`internal: no log-prob for token ${t} in its window`);
    return v;
  }
}

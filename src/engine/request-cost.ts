// Cheap bounds checked before expensive work, so a request that cannot be
// served is refused in microseconds instead of after tokenizing megabytes or
// building a response of hundreds of megabytes (docs/api.md, "Limits"):
//  - the fewest tokens a text can encode to, from its UTF-8 length and the
//    tokenizer's maxInputBytesPerToken, against the model's context before the
//    text is tokenized;
//  - the log-prob entries a request returns (prompts x tokens x (1 + logprobs)
//    x best_of), against MAX_LOGPROB_ENTRIES.
import { RequestError } from './errors';
import type { CompletionParams, Prompt } from './params';
import type { Tokenizer } from './tokenizer';

/** Token entries (the token plus its `logprobs` alternatives each) one request may return. */
export const MAX_LOGPROB_ENTRIES = 1 << 20;

/** The fewest tokens `x` can encode to, without encoding it (exact for token ids). */
export function minTokens(tok: Tokenizer, x: Prompt): number {
  if (typeof x !== 'string') return x.length;
  if (x.length === 0) return 0;
  const bound = tok.maxInputBytesPerToken;
  return bound === undefined ? 1 : Math.ceil(Buffer.byteLength(x, 'utf8') / bound);
}

/** Log-prob entries the request returns, for prompt token counts `promptTokens` (0 without logprobs). */
export function logprobEntries(p: CompletionParams, promptTokens: number[]): number {
  if (p.logprobs === null) return 0;
  const perPrompt = (n: number) => ((p.echo ? n : 0) + p.maxTokens) * p.bestOf * (1 + p.logprobs!);
  return promptTokens.reduce((a, n) => a + perPrompt(n), 0);
}

/** Refuses a request whose log-prob entries (at least `promptTokens` per prompt) pass MAX_LOGPROB_ENTRIES. */
export function checkLogprobCost(p: CompletionParams, promptTokens: number[], atLeast: boolean): void {
  const entries = logprobEntries(p, promptTokens);
  if (entries <= MAX_LOGPROB_ENTRIES) return;
  const tokens = promptTokens.reduce((a, n) => a + n, 0);
  throw new RequestError(
    'cost_limit_exceeded',
    `this request would return ${atLeast ? 'at least ' : ''}${entries} log-prob entries ` +
      `(${promptTokens.length} prompt(s) of ${atLeast ? 'at least ' : ''}${tokens} tokens${p.echo ? ' echoed' : ''}, ` +
      `max_tokens ${p.maxTokens}, best_of ${p.bestOf}, 1 + logprobs ${p.logprobs}); the limit per request is ${MAX_LOGPROB_ENTRIES}: ` +
      'ask for fewer prompts, tokens, choices or logprobs',
    'logprobs',
  );
}

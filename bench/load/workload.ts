// Requests to send: prompts cut from a text corpus (real text, so tokenizers
// and stop-string scanning see what they see in use) with lengths drawn from
// the prompt-length distribution, and max_tokens from the output-length one.
import * as fs from 'node:fs';

import { Distribution, formatDistribution, sample } from './distributions';
import { rng } from './random';

export interface RequestSpec {
  /** Sequence number within the level (also the WebSocket request id's suffix). */
  index: number;
  prompt: string;
  /** The drawn prompt length, tokens (the prompt has round(this * charsPerToken) characters). */
  promptTokens: number;
  maxTokens: number;
  /** Sent as the request's `seed` (reproducible sampling where the server supports it). */
  seed: number;
}

export interface WorkloadOptions {
  corpus: string;
  promptLength: Distribution;
  outputLength: Distribution;
  /** Characters per token of the served model's tokenizer: 1 for byte tokenizers, about 4 for GPT-2 BPE on English. */
  charsPerToken: number;
  seed: number;
}

export function readCorpus(file: string): string {
  const text = fs.readFileSync(file, 'utf8');
  if (text.length < 16) throw new Error(`corpus ${file}: too short (${text.length} characters)`);
  return text;
}

/** A deterministic stream of requests: request i of a workload with a given seed is always the same. */
export class Workload {
  private readonly u: () => number;
  private readonly text: string;
  private next_ = 0;

  constructor(readonly opts: WorkloadOptions) {
    this.u = rng(opts.seed);
    this.text = opts.corpus;
  }

  next(): RequestSpec {
    const index = this.next_++;
    const promptTokens = sample(this.opts.promptLength, this.u);
    const maxTokens = sample(this.opts.outputLength, this.u);
    const chars = Math.max(1, Math.round(promptTokens * this.opts.charsPerToken));
    const prompt = this.cut(Math.floor(this.u() * this.text.length), chars);
    const seed = Math.floor(this.u() * 2 ** 31);
    return { index, prompt, promptTokens, maxTokens, seed };
  }

  /** `chars` characters of the corpus from the first line start at or after `at` (wrapping around). */
  private cut(at: number, chars: number): string {
    const t = this.text;
    const nl = t.indexOf('\n', at);
    let start = nl >= 0 && nl + 1 < t.length && nl - at < 200 ? nl + 1 : at;
    let out = '';
    while (out.length < chars) {
      out += t.slice(start, start + (chars - out.length));
      start = 0;
    }
    // Never end on half a surrogate pair.
    const last = out.charCodeAt(out.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) out = out.slice(0, -1) + ' ';
    return out;
  }

  describe(): Record<string, unknown> {
    return {
      promptLength: formatDistribution(this.opts.promptLength),
      outputLength: formatDistribution(this.opts.outputLength),
      charsPerToken: this.opts.charsPerToken,
      seed: this.opts.seed,
    };
  }
}

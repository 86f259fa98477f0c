// Log-probs in the Chat Completions shape: `choices[i].logprobs.content`, one
// entry per sampled token with its text, log-prob, UTF-8 bytes and exactly
// top_logprobs alternatives (the engine's top k, best first).
import type { TokenLogprob } from '../native';
import { tokenString } from './completion';
import type { Tokenizer } from './tokenizer';

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

function top(tok: Tokenizer, id: number, logprob: number): ChatTopLogprob {
  // A token's own bytes where the tokenizer has them (a partial character has no text of its own).
  const bytes = tok.tokenBytes ? Array.from(tok.tokenBytes(id)) : Array.from(Buffer.from(tok.decode([id]), 'utf8'));
  return { token: tokenString(tok, id), logprob, bytes };
}

export function chatLogprobEntry(tok: Tokenizer, id: number, logprob: number, alternatives: readonly TokenLogprob[]): ChatTokenLogprob {
  return { ...top(tok, id, logprob), top_logprobs: alternatives.map(([t, lp]) => top(tok, t, lp)) };
}

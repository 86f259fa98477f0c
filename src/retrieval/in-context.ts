// In-context retrieval (Ram et al. 2023, in-context RALM; Atlas without
// retraining): for each prompt, the k best chunks of a datastore for the
// prompt's last QUERY_CHARS characters are laid before it, worst first so the
// best passage is nearest the prompt (docs/retrieval.md "Prompt layout"):
//   <passage k>\n\n ... <passage 2>\n\n<passage 1>\n\n<prompt>
// The passages count against the context like the prompt; a request they push
// past it is refused naming both.
import type { ModelRuntime } from '../engine/completion';
import { RequestError } from '../engine/errors';
import { DEFAULT_RETRIEVAL_K, type CompletionParams, type Prompt } from '../engine/params';
import type { Passage } from './datastore';
import type { Datastores } from './registry';

/** How much of the prompt's end is the query (a bag-of-words embedding of a long prompt would blur). */
export const QUERY_CHARS = 512;
export const PASSAGE_SEPARATOR = '\n\n';

/** What a choice reports of the passages its prompt was given (docs/api.md). */
export type RetrievedEntry = { id: string; score: number; text?: string };

export interface Retrieval {
  /** The params with every prompt preceded by its passages. */
  params: CompletionParams;
  /** Per prompt, best first; null when the request asked for no retrieval. */
  retrieved: RetrievedEntry[][] | null;
}

/** The passages block laid before a prompt. */
export function passageBlock(passages: Passage[]): string {
  return [...passages].reverse().map((x) => x.text + PASSAGE_SEPARATOR).join('');
}

/**
 * `query`: the text to search for instead of each prompt's end (a chat request's last
 * user message: its rendered prompt ends in the template's markup, not the question).
 */
export function applyRetrieval(rt: ModelRuntime, stores: Datastores | undefined, p: CompletionParams, query?: string): Retrieval {
  checkMemory(stores, p);
  const r = p.retrieval;
  if (!r) return { params: p, retrieved: null };
  if (!stores || stores.size === 0) {
    throw new RequestError('datastore_not_found', `no datastore named ${JSON.stringify(r.datastore)}: this server serves none (start it with --datastore NAME=DIR)`, 'retrieval.datastore');
  }
  const store = stores.get(r.datastore, 'retrieval.datastore');
  const max = rt.info.maxContext;
  const retrieved: RetrievedEntry[][] = [];
  const prompts: Prompt[] = p.prompts.map((prompt, i) => {
    const text = typeof prompt === 'string' ? prompt : rt.tokenizer.decode(prompt);
    const passages = store.search((query ?? text).slice(-QUERY_CHARS), r.k ?? DEFAULT_RETRIEVAL_K, r.mode);
    retrieved.push(passages.map((x) => (r.returnPassages ? { id: x.id, score: x.score, text: x.text } : { id: x.id, score: x.score })));
    const block = passageBlock(passages);
    const blockIds = rt.tokenizer.encode(block);
    const promptTokens = typeof prompt === 'string' ? rt.tokenizer.encode(prompt).length : prompt.length;
    const total = blockIds.length + promptTokens + p.maxTokens;
    if (max > 0 && total > max) {
      const name = p.prompts.length > 1 ? `prompt[${i}]` : 'prompt';
      throw new RequestError(
        'context_length_exceeded',
        `This model's maximum context length is ${max} tokens, however you requested ${total} tokens ` +
          `(${blockIds.length} in the ${passages.length} retrieved passages, ${promptTokens} in ${name}, ${p.maxTokens} for max_tokens). ` +
          'Please reduce retrieval.k, the prompt or max_tokens.',
        'retrieval.k',
      );
    }
    return typeof prompt === 'string' ? block + prompt : [...blockIds, ...prompt];
  });
  return { params: { ...p, prompts }, retrieved };
}

/** The `memory` field's datastore (kNN memory, cpp/knn_memory.h) must be served with its memory loaded. */
function checkMemory(stores: Datastores | undefined, p: CompletionParams): void {
  const name = p.memory?.datastore;
  if (name === undefined || name === null) return;
  if (!stores || stores.size === 0) {
    throw new RequestError('datastore_not_found', `no datastore named ${JSON.stringify(name)}: this server serves none (start it with --datastore NAME=DIR)`, 'memory.datastore');
  }
  stores.memory(name, 'memory.datastore');
}

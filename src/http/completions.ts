// POST /v1/completions: OpenAI legacy Completions, whole or streamed (SSE).
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';

import { resolveTarget } from '../engine/adapters';
import { startCompletion, Choice } from '../engine/completion';
import { parseCompletionBody } from '../engine/params';
import type { RuntimeHolder } from '../engine/runtime';
import { noteFirstToken } from './access-log';
import { measureEach, noveltyMeasurer, type Corpora } from '../novelty/registry';
import { completionRetrieval, retrievalEvidence } from '../retrieval/retro';
import type { Datastores } from '../retrieval/registry';
import { awaitRun, streamRun } from './run-response';
import type { SseStream } from './sse';
import { writeJsonList } from './write-json';

export interface CompletionsOptions {
  /** Period of `: keep-alive` comments on an idle stream, ms (0 = none). */
  keepAliveMs: number;
  /** A stream whose client reads nothing for this long is ended, ms. */
  stallTimeoutMs: number;
  /** Datastores for the `retrieval` field (src/retrieval). */
  datastores?: Datastores;
  /** Corpora for the `novelty` field (src/novelty). */
  corpora?: Corpora;
}

export function completionsHandler(holder: RuntimeHolder, opts: CompletionsOptions) {
  return async (req: Request, res: Response): Promise<void> => {
    const rt = holder.require();
    const parsed = parseCompletionBody(req.body, { vocabSize: rt.info.vocabSize });
    const { model } = resolveTarget(rt.modelId, rt.adapters, parsed.model, parsed.adapter);
    // retro retrieves per chunk as each sequence runs (src/retrieval/retro.ts); other
    // models get passages before each prompt, and each choice reports those of its prompt.
    const retrieval = completionRetrieval(rt, opts.datastores, parsed);
    const p = retrieval.params;
    const evidence = retrievalEvidence(retrieval, p.n);
    // Checked before the run: an unknown corpus is refused, not reported after the tokens.
    const measure = noveltyMeasurer(opts.corpora, p);
    const head = { id: `cmpl-${randomUUID().replace(/-/g, '')}`, object: 'text_completion', created: Math.floor(Date.now() / 1000), model };

    if (!p.stream) {
      const run = startCompletion(rt, p, { onFirstToken: () => noteFirstToken(res) });
      const result = await awaitRun(req, res, run);
      if (!result) return;
      // Novelty is of the generated text: an echoed prompt is not part of it.
      const echoed = (index: number) => {
        const prompt = p.prompts[Math.floor(index / p.n)];
        return p.echo ? (typeof prompt === 'string' ? prompt : rt.tokenizer.decode(prompt)).length : 0;
      };
      const novelty = measure ? await measureEach(result.choices.map((c) => c.text.slice(echoed(c.index))), measure) : undefined;
      if (res.destroyed) return;
      // Log-probs can make the body tens of megabytes: write it choice by choice.
      const choices =
        evidence.any || novelty
          ? result.choices.map((c, i) => ({ ...c, ...evidence.whole(c.index), ...(novelty ? { novelty: novelty[i] } : {}) }))
          : result.choices;
      if (p.logprobs !== null) await writeJsonList(res, head, 'choices', choices, { usage: result.usage });
      else res.json({ ...head, choices, usage: result.usage });
      return;
    }

    let sse: SseStream | undefined;
    const usageField = p.includeUsage ? { usage: null } : {};
    // With novelty: each choice's generated text, measured on its last chunk.
    const generated = new Map<number, string>();
    const chunk = (choice: Choice & { novelty?: unknown }) => ({ ...head, choices: [{ ...choice, ...evidence.streamed(choice.index) }], ...usageField });
    const run = startCompletion(rt, p, {
      onDelta(index, text, logprobs, token) {
        if (measure && token !== undefined) generated.set(index, (generated.get(index) ?? '') + text);
        if (text === '' && (logprobs === null || logprobs.tokens.length === 0)) return;
        sse?.send(chunk({ index, text, logprobs, finish_reason: null }));
      },
      onChoiceEnd(index, reason) {
        const novelty = measure ? { novelty: measure(generated.get(index) ?? '') } : {};
        sse?.send(chunk({ index, text: '', logprobs: null, finish_reason: reason, ...novelty }));
      },
      onFirstToken: () => noteFirstToken(res),
    });
    await streamRun(req, res, run, opts, (s) => (sse = s), (usage) => (p.includeUsage ? { ...head, choices: [], usage } : null));
  };
}

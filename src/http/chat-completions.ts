// POST /v1/chat/completions: OpenAI Chat Completions, whole or streamed (SSE).
// The messages are rendered with the chat template and tokenized
// (src/engine/chat-params.ts); generation is the completion path's
// (src/engine/completion.ts), whose results are reshaped here: the text as
// the assistant's message, log-probs as `logprobs.content`, streamed chunks as
// `delta`s (the role first, then content, then finish_reason). `retrieval`
// works as on /v1/completions (src/retrieval), searching for the last user
// message; each choice reports what it retrieved as `retrieved`.
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';

import { resolveTarget } from '../engine/adapters';
import { ChatTokenLogprob, chatLogprobEntry } from '../engine/chat-logprobs';
import { chatCompletionParams, encodeRendered, parseChatFields, renderChat, retrievalQuery } from '../engine/chat-params';
import { startCompletion } from '../engine/completion';
import type { RuntimeHolder } from '../engine/runtime';
import { completionRetrieval, retrievalEvidence } from '../retrieval/retro';
import { noteFirstToken } from './access-log';
import type { CompletionsOptions } from './completions';
import { awaitRun, streamRun } from './run-response';
import type { SseStream } from './sse';
import { writeJsonList } from './write-json';

export function chatCompletionsHandler(holder: RuntimeHolder, opts: CompletionsOptions) {
  return async (req: Request, res: Response): Promise<void> => {
    const rt = holder.require();
    const chat = parseChatFields(req.body);
    const { text, template } = renderChat(rt, chat.messages);
    const encoded = encodeRendered(rt, text);
    const ids = encoded instanceof Promise ? await encoded : encoded;
    if (res.destroyed) return;
    const retrieval = completionRetrieval(rt, opts.datastores, chatCompletionParams(rt, chat, ids, template), retrievalQuery(chat.messages));
    const p = retrieval.params;
    const evidence = retrievalEvidence(retrieval, p.n);
    const { model } = resolveTarget(rt.modelId, rt.adapters, p.model, p.adapter);
    const head = { id: `chatcmpl-${randomUUID().replace(/-/g, '')}`, object: p.stream ? 'chat.completion.chunk' : 'chat.completion', created: Math.floor(Date.now() / 1000), model };
    const tok = rt.tokenizer;
    // Per choice: the chat-shaped entries not yet sent (streaming) or all of them (whole).
    const entries: ChatTokenLogprob[][] = Array.from({ length: p.n }, () => []);
    const onTokenLogprob = (index: number, token: number, logprob: number, top: readonly [number, number][]) => {
      entries[index].push(chatLogprobEntry(tok, token, logprob, top));
    };

    if (!p.stream) {
      const run = startCompletion(rt, p, { onTokenLogprob, onFirstToken: () => noteFirstToken(res) });
      const result = await awaitRun(req, res, run);
      if (!result) return;
      const choices = result.choices.map((c) => ({
        index: c.index,
        message: { role: 'assistant', content: c.text },
        logprobs: p.logprobs !== null ? { content: entries[c.index] } : null,
        finish_reason: c.finish_reason,
        ...evidence.whole(c.index),
      }));
      // Log-probs can make the body tens of megabytes: write it choice by choice.
      if (p.logprobs !== null) await writeJsonList(res, head, 'choices', choices, { usage: result.usage });
      else res.json({ ...head, choices, usage: result.usage });
      return;
    }

    let sse: SseStream | undefined;
    const usageField = p.includeUsage ? { usage: null } : {};
    const chunk = (choice: { index: number; [field: string]: unknown }) => ({ ...head, choices: [{ ...choice, ...evidence.streamed(choice.index) }], ...usageField });
    const run = startCompletion(rt, p, {
      onTokenLogprob,
      onFirstToken: () => noteFirstToken(res),
      onDelta(index, text) {
        const lps = entries[index];
        if (text === '' && lps.length === 0) return;
        entries[index] = [];
        sse?.send(chunk({ index, delta: { content: text }, logprobs: p.logprobs !== null ? { content: lps } : null, finish_reason: null }));
      },
      onChoiceEnd(index, reason) {
        sse?.send(chunk({ index, delta: {}, logprobs: null, finish_reason: reason }));
      },
    });
    await streamRun(
      req,
      res,
      run,
      opts,
      (stream) => {
        sse = stream;
        // Each choice opens with its role.
        for (let c = 0; c < p.n; c++) stream.send(chunk({ index: c, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }));
      },
      (usage) => (p.includeUsage ? { ...head, choices: [], usage } : null),
    );
  };
}

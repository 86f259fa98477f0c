// vLLM's utility routes: POST /tokenize (a prompt, or chat messages rendered
// with the chat template), POST /detokenize, GET /version. Shapes as vLLM's
// (docs/api.md, "Tokenize"); errors through the catalogue.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Express, Request, RequestHandler, Response } from 'express';

import { encodeRendered, parseMessages, renderChat } from '../engine/chat-params';
import { describe, invalidParam, RequestError } from '../engine/errors';
import type { RuntimeHolder } from '../engine/runtime';
import type { ModelRuntime } from '../engine/completion';
import { resolveTarget } from '../engine/adapters';
import { packageRoot } from '../package-root';

type Obj = Record<string, unknown>;

function object(body: unknown): Obj {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new RequestError('invalid_parameter', `the request body must be a JSON object (got ${describe(body)})`, null);
  }
  return body as Obj;
}

function rejectUnknown(o: Obj, known: string[]): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw new RequestError('unknown_parameter', `Unrecognized request argument supplied: ${JSON.stringify(k.slice(0, 64))}`, k);
  }
}

function flag(o: Obj, k: string, dflt: boolean): boolean {
  const v = o[k];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw invalidParam(k, 'a boolean', v);
  return v;
}

/** `model`, when given, must name the served model or one of its adapters (which share its tokenizer). */
function checkModel(o: Obj, rt: ModelRuntime): void {
  if (o.model === undefined || o.model === null) return;
  if (typeof o.model !== 'string') throw invalidParam('model', 'a string', o.model);
  resolveTarget(rt.modelId, rt.adapters, o.model, null);
}

let version: string | undefined;
function packageVersion(): string {
  version ??= String(JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version);
  return version;
}

export function tokenizeRoutes(app: Express, holder: RuntimeHolder, body: RequestHandler[]): void {
  // {"prompt": TEXT, "add_special_tokens": true} or {"messages": [...], "add_generation_prompt": true, "add_special_tokens": false}.
  app.post('/tokenize', ...body, async (req: Request, res: Response) => {
    const rt = holder.require();
    const o = object(req.body);
    checkModel(o, rt);
    let ids: number[];
    if ('messages' in o) {
      rejectUnknown(o, ['model', 'messages', 'add_generation_prompt', 'add_special_tokens']);
      if ('prompt' in o) throw new RequestError('invalid_parameter', 'give either prompt or messages, not both', 'prompt');
      const { text } = renderChat(rt, parseMessages(o.messages), flag(o, 'add_generation_prompt', true));
      const r = encodeRendered(rt, text, flag(o, 'add_special_tokens', false));
      ids = r instanceof Promise ? await r : r;
    } else {
      rejectUnknown(o, ['model', 'prompt', 'add_special_tokens']);
      if (typeof o.prompt !== 'string') {
        if (o.prompt === undefined) throw new RequestError('invalid_parameter', 'prompt (a string) or messages (an array) is required', 'prompt');
        throw invalidParam('prompt', 'a string', o.prompt);
      }
      const r = encodeRendered(rt, o.prompt, flag(o, 'add_special_tokens', true));
      ids = r instanceof Promise ? await r : r;
    }
    if (res.destroyed) return;
    res.json({ count: ids.length, max_model_len: rt.info.maxContext > 0 ? rt.info.maxContext : null, tokens: ids });
  });

  // {"tokens": [ids]} -> {"prompt": TEXT}; special tokens are kept as their text (vLLM's default).
  app.post('/detokenize', ...body, (req: Request, res: Response) => {
    const rt = holder.require();
    const o = object(req.body);
    rejectUnknown(o, ['model', 'tokens']);
    checkModel(o, rt);
    const tokens = o.tokens;
    if (!Array.isArray(tokens)) {
      if (tokens === undefined) throw new RequestError('invalid_parameter', 'tokens is required', 'tokens');
      throw invalidParam('tokens', 'an array of token ids', tokens);
    }
    const vocab = rt.tokenizer.vocabSize;
    tokens.forEach((t, i) => {
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= vocab) {
        throw invalidParam(`tokens[${i}]`, `a token id from 0 to ${vocab - 1} (the tokenizer's vocabulary)`, t);
      }
    });
    res.json({ prompt: rt.tokenizer.decode(tokens as number[]) });
  });

  app.get('/version', (_req: Request, res: Response) => {
    res.json({ version: packageVersion() });
  });
}

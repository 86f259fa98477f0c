// Runtime adapter loading, with vLLM's routes and fields:
//   POST /v1/load_lora_adapter   {"lora_name": "x", "lora_path": "/dir"}
//   POST /v1/unload_lora_adapter {"lora_name": "x"}
// Off unless the server runs with --allow-adapter-loading (they read server
// paths named by the client; vLLM gates them the same way). A bad folder is a
// 400 naming what is wrong; the server and its running requests carry on, and
// a request already using an unloaded adapter keeps it until it ends.
import type { Express, Request, Response } from 'express';

import { RequestError } from '../engine/errors';
import { loadServedAdapter, RuntimeHolder, unloadServedAdapter } from '../engine/runtime';
import { jsonBody } from './body';

function field(body: unknown, name: string): string {
  const v = (body as Record<string, unknown> | null)?.[name];
  if (typeof v !== 'string' || v === '') throw new RequestError('invalid_parameter', `${name} must be a non-empty string`, name);
  return v;
}

export function adapterRoutes(app: Express, holder: RuntimeHolder, enabled: boolean): void {
  const guard = () => {
    if (!enabled) throw new RequestError('not_found', 'runtime adapter loading is off: start the server with --allow-adapter-loading');
    return holder.require();
  };
  app.post('/v1/load_lora_adapter', jsonBody(64 << 10), async (req: Request, res: Response) => {
    const rt = guard();
    const a = await loadServedAdapter(rt, field(req.body, 'lora_name'), field(req.body, 'lora_path'));
    res.json({ object: 'adapter', id: `${rt.modelId}:${a.name}`, name: a.name, type: a.type, prompt_tokens: a.promptTokens });
  });
  app.post('/v1/unload_lora_adapter', jsonBody(64 << 10), (req: Request, res: Response) => {
    const rt = guard();
    const name = field(req.body, 'lora_name');
    unloadServedAdapter(rt, name);
    res.json({ object: 'adapter', name, deleted: true });
  });
}

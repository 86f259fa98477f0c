// Runtime adapter loading, with vLLM's routes and fields:
//   POST /v1/load_lora_adapter   {"lora_name": "x", "lora_path": "/dir"}
//   POST /v1/unload_lora_adapter {"lora_name": "x"}
// Off unless the server runs with --allow-adapter-loading (they read server
// paths named by the client; vLLM gates them the same way). A bad folder is a
// 400 naming what is wrong; the server and its running requests carry on, and
// a request already using an unloaded adapter keeps it until it ends.
import type { Express, Request, Response } from 'express';

import { AdapterLoadError, loadAdapter, weightsSha256Async } from '../engine/adapters';
import type { RuntimeHolder } from '../engine/runtime';
import { jsonBody } from './body';
import { ApiError } from './errors';

function field(body: unknown, name: string): string {
  const v = (body as Record<string, unknown> | null)?.[name];
  if (typeof v !== 'string' || v === '') throw new ApiError('invalid_parameter', `${name} must be a non-empty string`, name);
  return v;
}

export function adapterRoutes(app: Express, holder: RuntimeHolder, enabled: boolean): void {
  const guard = () => {
    if (!enabled) throw new ApiError('not_found', 'runtime adapter loading is off: start the server with --allow-adapter-loading');
    const rt = holder.require();
    if (!rt.modelDir) throw new ApiError('not_found', 'runtime adapter loading needs the model folder');
    return rt;
  };
  app.post('/v1/load_lora_adapter', jsonBody(64 << 10), async (req: Request, res: Response) => {
    const rt = guard();
    const name = field(req.body, 'lora_name');
    const dir = field(req.body, 'lora_path');
    if (rt.adapters.has(name)) throw new ApiError('invalid_parameter', `an adapter named ${JSON.stringify(name)} is already loaded`, 'lora_name');
    const inUse = rt.leases?.retiringUses(name) ?? 0;
    if (inUse > 0) {
      throw new ApiError('invalid_parameter', `adapter ${JSON.stringify(name)} was unloaded but ${inUse} request(s) still use it; load it again once they finish`, 'lora_name');
    }
    try {
      // The served weights never change: hash them once (off the event loop), not on every load.
      rt.weightsSha256 ??= await weightsSha256Async(rt.modelDir!);
      if (rt.adapters.has(name)) throw new ApiError('invalid_parameter', `an adapter named ${JSON.stringify(name)} is already loaded`, 'lora_name');
      const a = loadAdapter(rt.engine, name, dir, rt.modelDir!, () => rt.weightsSha256!);
      rt.adapters.set(a.name, a);
      res.json({ object: 'adapter', id: `${rt.modelId}:${a.name}`, name: a.name, type: a.type, prompt_tokens: a.promptTokens });
    } catch (e) {
      if (e instanceof AdapterLoadError) throw new ApiError('invalid_parameter', e.message, 'lora_path');
      throw e;
    }
  });
  app.post('/v1/unload_lora_adapter', jsonBody(64 << 10), (req: Request, res: Response) => {
    const rt = guard();
    const name = field(req.body, 'lora_name');
    if (!rt.adapters.delete(name)) throw new ApiError('model_not_found', `no adapter named ${JSON.stringify(name)} is loaded`, 'lora_name');
    // New requests can no longer name it; queued ones keep it (src/engine/adapter-leases.ts).
    if (rt.leases) rt.leases.retire(name);
    else rt.engine.unloadAdapter(name);
    res.json({ object: 'adapter', name, deleted: true });
  });
}

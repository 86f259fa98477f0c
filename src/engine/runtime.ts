// The served model's lifecycle, shared by the HTTP and WebSocket edges:
// loading (health 503), ready, leaving (SIGTERM's first --drain-seconds: health
// 503 so balancers stop sending, everything else still served), draining (no
// new requests; running ones finish); and what
// the edges may do to the served engine (statistics, adapters at run time),
// so they never hold the engine themselves.
import type { AdapterInfo, EngineStats, NativeEngine } from '../native';
import { AdapterLeases } from './adapter-leases';
import { AdapterLoadError, loadAdapter, weightsSha256Async } from './adapters';
import type { CompletionObserver, ModelRuntime } from './completion';
import { RequestError } from './errors';
import { Scheduler, SchedulerObserver, SchedulerOptions } from './scheduler';
import { TokenizerWorker } from './tokenize-offthread';
import type { Tokenizer } from './tokenizer';

export type ServerStatus = 'loading' | 'ready' | 'leaving' | 'draining';

export class RuntimeHolder {
  runtime: ModelRuntime | null = null;
  status: ServerStatus = 'loading';

  /** The runtime, or the RequestError a client should get now. */
  require(): ModelRuntime {
    if (this.status === 'draining') throw new RequestError('shutting_down', 'the server is shutting down and accepts no new requests');
    if (!this.runtime) throw new RequestError('model_loading', 'the model is still loading; retry when GET /health answers 200');
    return this.runtime;
  }

  /** Makes a loaded engine servable. */
  attach(
    engine: NativeEngine,
    tokenizer: Tokenizer,
    modelId: string,
    options: Partial<SchedulerOptions> = {},
    observers: { scheduler?: SchedulerObserver; completion?: CompletionObserver } = {},
  ): ModelRuntime {
    const scheduler = new Scheduler(engine, options, observers.scheduler);
    const adapters = new Map(engine.adapters().map((a) => [a.name, a]));
    this.runtime = {
      engine,
      info: engine.info(),
      tokenizer,
      // Started on the first large prompt; loads the tokenizer from the folder it came from (src/engine/tokenizer.ts loadTokenizer).
      tokenizeWorker: new TokenizerWorker(tokenizer.dir),
      scheduler,
      modelId,
      adapters,
      leases: new AdapterLeases(engine),
      observer: observers.completion,
    };
    if (this.status === 'loading') this.status = 'ready';
    return this.runtime;
  }
}

/** Sequences alive and bytes in use in the served engine (GET /metrics). */
export function engineStats(rt: ModelRuntime): EngineStats {
  return rt.engine.stats();
}

/**
 * Loads an adapter folder into the served engine at run time, checked
 * against the served weights (hashed once). `lora_name` / `lora_path` are the
 * request fields a refusal names (vLLM's names).
 */
export async function loadServedAdapter(rt: ModelRuntime, name: string, dir: string): Promise<AdapterInfo> {
  const modelDir = rt.modelDir;
  if (!modelDir) throw new RequestError('not_found', 'runtime adapter loading needs the model folder');
  const refuseTaken = () => {
    if (rt.adapters.has(name)) throw new RequestError('invalid_parameter', `an adapter named ${JSON.stringify(name)} is already loaded`, 'lora_name');
    const inUse = rt.leases?.retiringUses(name) ?? 0;
    if (inUse > 0) {
      throw new RequestError('invalid_parameter', `adapter ${JSON.stringify(name)} was unloaded but ${inUse} request(s) still use it; load it again once they finish`, 'lora_name');
    }
  };
  refuseTaken();
  try {
    // The served weights never change: hash them once (off the event loop), not on every load.
    rt.weightsSha256 ??= await weightsSha256Async(modelDir);
    refuseTaken(); // another load of the same name may have finished while this one hashed
    const a = loadAdapter(rt.engine, name, dir, modelDir, () => rt.weightsSha256!);
    rt.adapters.set(a.name, a);
    return a;
  } catch (e) {
    if (e instanceof AdapterLoadError) throw new RequestError('invalid_parameter', e.message, 'lora_path');
    throw e;
  }
}

/** Unloads a served adapter; requests already using it keep it until they end (src/engine/adapter-leases.ts). */
export function unloadServedAdapter(rt: ModelRuntime, name: string): void {
  if (!rt.adapters.delete(name)) throw new RequestError('model_not_found', `no adapter named ${JSON.stringify(name)} is loaded`, 'lora_name');
  if (rt.leases) rt.leases.retire(name);
  else rt.engine.unloadAdapter(name);
}

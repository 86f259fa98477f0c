// The served model's lifecycle, shared by the HTTP and WebSocket edges:
// loading (health 503), ready, draining (SIGTERM: no new requests).
import type { NativeEngine } from '../native';
import { AdapterLeases } from './adapter-leases';
import type { CompletionObserver, ModelRuntime } from './completion';
import { RequestError } from './errors';
import { Scheduler, SchedulerObserver, SchedulerOptions } from './scheduler';
import type { Tokenizer } from './tokenizer';

export type ServerStatus = 'loading' | 'ready' | 'draining';

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
    this.runtime = { engine, info: engine.info(), tokenizer, scheduler, modelId, adapters, leases: new AdapterLeases(engine), observer: observers.completion };
    if (this.status === 'loading') this.status = 'ready';
    return this.runtime;
  }
}

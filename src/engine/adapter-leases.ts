// Adapters in use by requests that have no engine sequence yet. The engine
// keeps an unloaded adapter alive for the sequences already using it, but a
// request still waiting in the queue creates its sequences later, by name: so
// an adapter is unloaded from the engine only once no submitted request holds
// a lease on it (docs/adapters.md: requests keep their adapter).
import type { NativeEngine } from '../native';

export class AdapterLeases {
  private readonly uses = new Map<string, number>();
  /** Unloaded by a client, still in use: unloaded from the engine when the last lease ends. */
  private readonly retiring = new Set<string>();

  constructor(private readonly engine: Pick<NativeEngine, 'unloadAdapter'>) {}

  /** Takes a lease on a loaded adapter; the returned function ends it (once). */
  acquire(name: string): () => void {
    this.uses.set(name, (this.uses.get(name) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const left = this.uses.get(name)! - 1;
      if (left > 0) {
        this.uses.set(name, left);
        return;
      }
      this.uses.delete(name);
      if (this.retiring.delete(name)) this.engine.unloadAdapter(name);
    };
  }

  /** Unloads from the engine now, or once the requests holding it end. */
  retire(name: string): void {
    if (this.uses.has(name)) this.retiring.add(name);
    else this.engine.unloadAdapter(name);
  }

  /** Requests still holding an adapter a client unloaded (its name cannot be reused until they end). */
  retiringUses(name: string): number {
    return this.retiring.has(name) ? (this.uses.get(name) ?? 0) : 0;
  }
}

// The datastores a server serves (`roost serve --datastore NAME=DIR`), by name.
// A datastore that cannot be opened (missing folder, corrupted file) does not
// stop the server: requests naming it get datastore_unavailable with the
// reason, and each such request tries to open it again (so a repaired folder
// is picked up without a restart).
import { RequestError } from '../engine/errors';
import type { Tokenizer } from '../engine/tokenizer';
import { Datastore, DatastoreError } from './datastore';
import { Embedder } from './embedder';
import { knnFolder } from './knn';

interface Entry {
  dir: string;
  store: Datastore | null;
  error: string | null;
  /** The kNN memory loaded into the engine under the datastore's name: its entries, or why not (null: none built). */
  memory: { entries: number } | { error: string } | null;
}

/** What loads a datastore's kNN memory into the served engine (NativeEngine.loadMemory). */
export type MemoryLoader = (name: string, dir: string) => number;

export class Datastores {
  private readonly entries = new Map<string, Entry>();
  private embedder: Embedder | undefined;
  private tokenizer: Tokenizer | undefined;

  /** Names the datastores; they open once the served model's tokenizer is known (open()). */
  constructor(
    dirs: Record<string, string> = {},
    private readonly loadEmbedder: () => Embedder = () => Embedder.load(),
  ) {
    for (const [name, dir] of Object.entries(dirs)) this.entries.set(name, { dir, store: null, error: 'the model is still loading', memory: null });
  }

  /** Opens every datastore with the served model's tokenizer (which cuts added documents into chunks). */
  open(tokenizer: Tokenizer): void {
    this.tokenizer = tokenizer;
    for (const e of this.entries.values()) this.tryOpen(e);
  }

  /** Loads the kNN memory (knn/) of each datastore built with --knn into the engine, under the datastore's name. */
  loadMemories(loadMemory: MemoryLoader): void {
    for (const [name, e] of this.entries) {
      const dir = knnFolder(e.dir);
      if (dir === null || e.dir === dir) continue;
      try {
        e.memory = { entries: loadMemory(name, dir) };
      } catch (err) {
        e.memory = { error: (err as Error).message };
      }
    }
  }

  /** The datastore name `memory.datastore` names, checked: served, and its kNN memory loaded. */
  memory(name: string, param: string): string {
    const e = this.entries.get(name);
    if (!e) {
      const served = [...this.entries.keys()].map((n) => JSON.stringify(n)).join(', ') || 'none (start the server with --datastore NAME=DIR)';
      throw new RequestError('datastore_not_found', `no datastore named ${JSON.stringify(name)}; served: ${served}`, param);
    }
    if (e.memory === null) {
      throw new RequestError('memory_not_built', `datastore ${JSON.stringify(name)} has no kNN memory (build it with \`roost datastore build --knn\`)`, param);
    }
    if ('error' in e.memory) throw new RequestError('datastore_unavailable', `the kNN memory of datastore ${JSON.stringify(name)} cannot be used: ${e.memory.error}`, param);
    return name;
  }

  get size(): number {
    return this.entries.size;
  }

  private tryOpen(e: Entry): void {
    if (!this.tokenizer) return;
    try {
      this.embedder ??= this.loadEmbedder();
      e.store = Datastore.open(e.dir, this.tokenizer, this.embedder);
      e.error = null;
    } catch (err) {
      e.store = null;
      e.error = err instanceof DatastoreError ? err.message : `${e.dir}: ${(err as Error).message}`;
    }
  }

  /** The opened datastore `name`, or the RequestError the client gets (param: the field that named it). */
  get(name: string, param: string | null = null): Datastore {
    const e = this.entries.get(name);
    if (!e) {
      const served = [...this.entries.keys()].map((n) => JSON.stringify(n)).join(', ') || 'none (start the server with --datastore NAME=DIR)';
      throw new RequestError('datastore_not_found', `no datastore named ${JSON.stringify(name)}; served: ${served}`, param);
    }
    if (!e.store) this.tryOpen(e);
    if (!e.store) throw new RequestError('datastore_unavailable', `datastore ${JSON.stringify(name)} cannot be used: ${e.error}`, param);
    return e.store;
  }

  /** Errors at open, by name (for the server's start-up log). */
  errors(): Array<[string, string]> {
    return [...this.entries].filter(([, e]) => e.error !== null).map(([n, e]) => [n, e.error!]);
  }

  /** GET /v1/datastores */
  list(): Array<Record<string, unknown>> {
    return [...this.entries].map(([name, e]) => ({
      object: 'datastore',
      name,
      status: e.store ? 'ready' : 'unavailable',
      ...(e.store ? e.store.describe() : { error: e.error }),
      ...(e.memory ? { knn_memory: 'entries' in e.memory ? { entries: e.memory.entries } : { error: e.memory.error } } : {}),
    }));
  }
}

// RETRO's live retrieval (docs/retro.md): with a `retrieval` field, a retro
// model is not given passages before its prompt (src/retrieval/in-context.ts);
// instead each sequence's chunks, as they complete in prefill or decode, are
// the queries, and the k best datastore chunks with their continuations
// (2m tokens each) are the neighbours the engine encodes for that chunk. What
// each chunk retrieved is recorded for the response's `retrieved`.
//
// A chunk's search runs on a later turn of the event loop than the scheduler
// asks for it (the scheduler parks the sequence meanwhile): by then the
// scheduler has started the step of the other sequences, whose compute runs
// on the engine's threads while the search runs here.
import type { ModelRuntime } from '../engine/completion';
import { RequestError } from '../engine/errors';
import type { CompletionParams, RetrievalParams } from '../engine/params';
import type { RetroNeighbours, SequenceSpec } from '../engine/scheduler';
import type { Datastore } from './datastore';
import { applyRetrieval, type RetrievedEntry } from './in-context';
import type { Datastores } from './registry';

/** The neighbours of one chunk of a choice, best first. */
export interface ChunkRetrieval {
  chunk: number;
  passages: RetrievedEntry[];
}

/** Live retrieval of one request: the datastore and, per choice index, what its chunks retrieved. */
export class RetroRetrieval {
  readonly records = new Map<number, ChunkRetrieval[]>();
  /** Per choice index: how many of its records a stream has sent (fresh()). */
  private readonly sent = new Map<number, number>();

  constructor(private readonly rt: ModelRuntime, private readonly store: Datastore, private readonly r: RetrievalParams) {}

  /**
   * The records of choice `index` not yet taken by an earlier call: what a
   * streamed event carries (HTTP's chunks and the WebSocket's events alike).
   */
  fresh(index: number): ChunkRetrieval[] {
    const all = this.records.get(index) ?? [];
    const from = this.sent.get(index) ?? 0;
    this.sent.set(index, all.length);
    return all.slice(from);
  }

  /** The scheduler's per-chunk hook for the sequence of choice `index`. */
  forChoice(index: number): NonNullable<SequenceSpec['retro']> {
    const m = this.rt.info.retroChunkSize;
    const k = this.rt.info.retroNeighbours;
    const list: ChunkRetrieval[] = [];
    this.records.set(index, list);
    const search = (chunk: number, tokens: number[]): RetroNeighbours => {
      const passages = this.store.search(this.rt.tokenizer.decode(tokens), k, this.r.mode);
      list.push({ chunk, passages: passages.map((x) => (this.r.returnPassages ? { id: x.id, score: x.score, text: x.text } : { id: x.id, score: x.score })) });
      if (passages.length < k) return null; // too small a datastore: this chunk gets no CCA term
      return passages.flatMap((x) => this.store.neighbourTokens(x.id, 2 * m));
    };
    // A preempted sequence (Scheduler.preemptNewest) asks its chunks again as it
    // is recomputed: the same tokens, so the same answer, searched and recorded
    // once (a datastore updated meanwhile must not change what a recomputed
    // chunk reads, and `retrieved` lists each chunk once).
    const asked = new Map<number, Promise<RetroNeighbours>>();
    return {
      chunkSize: m,
      neighbours: (chunk, tokens) => {
        let nb = asked.get(chunk);
        if (!nb) {
          // setImmediate callbacks run in the order they were set: a choice's chunks are recorded in order.
          nb = new Promise<RetroNeighbours>((resolve, reject) =>
            setImmediate(() => {
              try {
                resolve(search(chunk, tokens));
              } catch (e) {
                reject(e);
              }
            }),
          );
          asked.set(chunk, nb);
        }
        return nb;
      },
    };
  }
}

/**
 * A retro model's retrieval for a request with a `retrieval` field, or null.
 * The model's CCA was trained on a fixed number of neighbours per chunk
 * (config num_neighbours; cpp/models/retro.cpp takes exactly that many), so
 * `retrieval.k`, when given, must be that number.
 */
export function retroRetrieval(rt: ModelRuntime, stores: Datastores | undefined, r: RetrievalParams | null | undefined): RetroRetrieval | null {
  if (!r || rt.info.modelType !== 'retro') return null;
  const k = rt.info.retroNeighbours;
  if (r.k !== null && r.k !== k) {
    throw new RequestError(
      'invalid_parameter',
      `retrieval.k must be ${k} for model ${rt.modelId} (got ${r.k}): a retro model reads exactly its num_neighbours neighbours per chunk; leave k out to use it`,
      'retrieval.k',
    );
  }
  if (!stores || stores.size === 0) {
    throw new RequestError('datastore_not_found', `no datastore named ${JSON.stringify(r.datastore)}: this server serves none (start it with --datastore NAME=DIR)`, 'retrieval.datastore');
  }
  const store = stores.get(r.datastore, 'retrieval.datastore');
  if (store.chunkTokens !== rt.info.retroChunkSize) {
    throw new RequestError(
      'invalid_parameter',
      `datastore ${JSON.stringify(r.datastore)} has chunks of ${store.chunkTokens} tokens; this retro model's chunk size is ${rt.info.retroChunkSize} (build it with that chunk size)`,
      'retrieval.datastore',
    );
  }
  return new RetroRetrieval(rt, store, r);
}

/** A completion request's retrieval, as the server and `roost generate` run it. */
export interface CompletionRetrieval {
  /** The params to run: with passages before each prompt (in-context), or with live retrieval per chunk (retro). */
  params: CompletionParams;
  /** retro: what each choice's chunks retrieved, as they are retrieved. */
  retro: RetroRetrieval | null;
  /** In-context: per prompt, the passages laid before it; null without. */
  retrieved: RetrievedEntry[][] | null;
}

/**
 * The `retrieval` (and `memory`) field of a completion or chat request: a retro model
 * retrieves per chunk, others before the prompt (`query`: applyRetrieval's).
 */
export function completionRetrieval(rt: ModelRuntime, stores: Datastores | undefined, parsed: CompletionParams, query?: string): CompletionRetrieval {
  const retro = retroRetrieval(rt, stores, parsed.retrieval);
  if (retro) return { params: { ...parsed, retroLive: retro }, retro, retrieved: null };
  return { ...applyRetrieval(rt, stores, parsed, query), retro: null };
}

/**
 * What each choice of a response reports of its retrieval: `whole(index)` for a whole
 * answer (all it retrieved), `streamed(index)` for the next chunk of a stream
 * (in-context passages on a choice's first chunk; retro, the chunks retrieved since
 * its previous one). `n`: choices per prompt. Empty objects without retrieval.
 */
export function retrievalEvidence(r: Pick<CompletionRetrieval, 'retro' | 'retrieved'>, n: number) {
  const { retro, retrieved } = r;
  const told = new Set<number>();
  const passages = (index: number) => ({ retrieved: retrieved![Math.floor(index / n)] });
  return {
    any: retro !== null || retrieved !== null,
    whole: (index: number) => (retro ? { retrieved: retro.records.get(index) ?? [] } : retrieved ? passages(index) : {}),
    streamed: (index: number) =>
      retro ? { retrieved: retro.fresh(index) } : retrieved && !told.has(index) ? (told.add(index), passages(index)) : {},
  };
}

// RETRO's live retrieval (docs/retro.md): with a `retrieval` field, a retro
// model is not given passages before its prompt (src/retrieval/in-context.ts);
// instead each sequence's chunks, as they complete in prefill or decode, are
// the queries, and the k best datastore chunks with their continuations
// (2m tokens each) are the neighbours the engine encodes for that chunk. What
// each chunk retrieved is recorded for the response's `retrieved`.
import type { ModelRuntime } from '../engine/completion';
import { RequestError } from '../engine/errors';
import type { RetrievalParams } from '../engine/params';
import type { SequenceSpec } from '../engine/scheduler';
import type { Datastore } from './datastore';
import type { RetrievedEntry } from './in-context';
import type { Datastores } from './registry';

/** The neighbours of one chunk of a choice, best first. */
export interface ChunkRetrieval {
  chunk: number;
  passages: RetrievedEntry[];
}

/** Live retrieval of one request: the datastore and, per choice index, what its chunks retrieved. */
export class RetroRetrieval {
  readonly records = new Map<number, ChunkRetrieval[]>();

  constructor(private readonly rt: ModelRuntime, private readonly store: Datastore, private readonly r: RetrievalParams) {}

  /** The scheduler's per-chunk hook for the sequence of choice `index`. */
  forChoice(index: number): NonNullable<SequenceSpec['retro']> {
    const m = this.rt.info.retroChunkSize;
    const k = this.rt.info.retroNeighbours;
    const list: ChunkRetrieval[] = [];
    this.records.set(index, list);
    return {
      chunkSize: m,
      neighbours: (chunk, tokens) => {
        const passages = this.store.search(this.rt.tokenizer.decode(tokens), k, this.r.mode);
        list.push({ chunk, passages: passages.map((x) => (this.r.returnPassages ? { id: x.id, score: x.score, text: x.text } : { id: x.id, score: x.score })) });
        if (passages.length < k) return null; // too small a datastore: this chunk gets no CCA term
        return passages.flatMap((x) => this.store.neighbourTokens(x.id, 2 * m));
      },
    };
  }
}

/** A retro model's retrieval for a request with a `retrieval` field, or null. */
export function retroRetrieval(rt: ModelRuntime, stores: Datastores | undefined, r: RetrievalParams | null | undefined): RetroRetrieval | null {
  if (!r || rt.info.modelType !== 'retro') return null;
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

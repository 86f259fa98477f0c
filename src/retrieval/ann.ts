// The dense index of a datastore: an HNSW graph from usearch (chosen against
// hnswlib-node, faiss-node and LanceDB: docs/retrieval.md "ANN library",
// bench/results/ann-compare.json), cosine distance over unit embeddings.
// usearch ships prebuilt binaries inside its npm package (no download, no
// compiler at install). Its types come with the package; only what Roost
// uses is declared here so the import stays a plain require('usearch').

/** expansion_search: candidates kept per query (recall@10 0.989 on the KJV chunk embeddings, bench/results/ann-compare.json). */
export const ANN_EF_SEARCH = 256;
export const ANN_CONNECTIVITY = 16;
export const ANN_EF_ADD = 128;

interface UsearchIndex {
  add(keys: BigUint64Array, vectors: Float32Array): void;
  search(vector: Float32Array, k: number, threads: number): { keys: BigUint64Array; distances: Float32Array };
  remove(keys: bigint): number;
  size(): number;
  save(path: string): void;
  load(path: string): void;
}
interface Usearch {
  Index: new (cfg: { dimensions: number; metric: string; connectivity: number; expansion_add: number; expansion_search: number }) => UsearchIndex;
}

let usearch: Usearch | undefined;
function lib(): Usearch {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return (usearch ??= require('usearch') as Usearch);
}

export class DenseIndex {
  private readonly index: UsearchIndex;

  constructor(readonly dim: number) {
    this.index = new (lib().Index)({ dimensions: dim, metric: 'cos', connectivity: ANN_CONNECTIVITY, expansion_add: ANN_EF_ADD, expansion_search: ANN_EF_SEARCH });
  }

  /** vectors: keys.length rows of dim floats. */
  add(keys: number[], vectors: Float32Array): void {
    if (keys.length === 0) return;
    this.index.add(BigUint64Array.from(keys, (k) => BigInt(k)), vectors);
  }

  remove(key: number): void {
    this.index.remove(BigInt(key));
  }

  get size(): number {
    return this.index.size();
  }

  /** The k nearest keys with cosine similarity (1 - cosine distance), best first. */
  search(vector: Float32Array, k: number): Array<{ key: number; score: number }> {
    if (this.index.size() === 0) return [];
    const m = this.index.search(vector, Math.min(k, this.index.size()), 1);
    return Array.from(m.keys, (key, i) => ({ key: Number(key), score: 1 - m.distances[i] }));
  }

  save(file: string): void {
    this.index.save(file);
  }

  load(file: string): void {
    this.index.load(file);
  }
}

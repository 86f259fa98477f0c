// A small BM25 index (Robertson & Zaragoza 2009, the Lucene form of idf) that
// supports removal, over the chunks of a datastore: score(q, d) =
//   sum over query words t of idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl)),
//   idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)),  k1 = 1.2, b = 0.75.
// Why not a package: wink-bm25-text-search cannot add a document once the
// index is consolidated; minisearch (maintained; discard() removes) would do,
// with its BM25+ delta set to 0, but brings prefix/fuzzy/field machinery and
// its own tokenizer that retrieval does not use. This is ~60 lines, plain
// BM25 with removal, and checked against hand-computed scores
// (test/retrieval/bm25.test.ts). The datastore rebuilds it from chunk text at open.
import { words } from './text';

export const BM25_K1 = 1.2;
export const BM25_B = 0.75;

export class Bm25Index {
  private readonly postings = new Map<string, Map<number, number>>();
  // Per chunk key (keys are small dense integers): its length in words, -1 when absent.
  // Typed arrays, not Maps: a query touches every posting of its words (tens of thousands).
  private lengths = new Int32Array(1024).fill(-1);
  private scores = new Float64Array(1024);
  private count = 0;
  private totalLength = 0;

  get size(): number {
    return this.count;
  }

  private grow(key: number): void {
    if (key < this.lengths.length) return;
    let cap = this.lengths.length;
    while (cap <= key) cap *= 2;
    const lengths = new Int32Array(cap).fill(-1);
    lengths.set(this.lengths);
    this.lengths = lengths;
    this.scores = new Float64Array(cap);
  }

  add(key: number, text: string): void {
    if (this.lengths[key] >= 0) this.remove(key, text);
    this.grow(key);
    const ws = words(text);
    for (const w of ws) {
      let p = this.postings.get(w);
      if (!p) this.postings.set(w, (p = new Map()));
      p.set(key, (p.get(key) ?? 0) + 1);
    }
    this.lengths[key] = ws.length;
    this.count++;
    this.totalLength += ws.length;
  }

  /** Forgets chunk `key` (whose text was `text`). */
  remove(key: number, text: string): void {
    const len = key < this.lengths.length ? this.lengths[key] : -1;
    if (len < 0) return;
    for (const w of new Set(words(text))) {
      const p = this.postings.get(w);
      p?.delete(key);
      if (p && p.size === 0) this.postings.delete(w);
    }
    this.lengths[key] = -1;
    this.count--;
    this.totalLength -= len;
  }

  /** The k best chunks for `query`, best first (ties: smaller key first); chunks sharing no word are never returned. */
  search(query: string, k: number): Array<{ key: number; score: number }> {
    const N = this.count;
    if (N === 0) return [];
    const avgdl = this.totalLength / N || 1;
    const scores = this.scores;
    const touched: number[] = [];
    for (const w of new Set(words(query))) {
      const p = this.postings.get(w);
      if (!p) continue;
      const idf = Math.log(1 + (N - p.size + 0.5) / (p.size + 0.5));
      for (const [key, tf] of p) {
        const s = (idf * tf * (BM25_K1 + 1)) / (tf + BM25_K1 * (1 - BM25_B + (BM25_B * this.lengths[key]) / avgdl));
        if (scores[key] === 0) touched.push(key);
        scores[key] += s;
      }
    }
    // The k best in one pass (a full sort of every scored chunk is the slow part on large stores).
    const top: Array<{ key: number; score: number }> = [];
    const worse = (a: { key: number; score: number }, score: number, key: number) => a.score < score || (a.score === score && a.key > key);
    for (const key of touched) {
      const score = scores[key];
      scores[key] = 0;
      if (top.length === k && !worse(top[k - 1], score, key)) continue;
      let i = top.length < k ? top.length : k - 1;
      while (i > 0 && worse(top[i - 1], score, key)) {
        if (i < k) top[i] = top[i - 1];
        i--;
      }
      top[i] = { key, score };
    }
    return top;
  }
}

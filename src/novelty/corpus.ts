// A novelty corpus (RAVEN, McCoy et al. 2021): a training text and its suffix
// array, for exact substring search. Its unit is bytes (the text's UTF-8
// bytes: byte-level models) or tokens (the ids of one model's tokenizer:
// subword models). A folder holds:
//   corpus.json  {format, unit, length, bytes, sha256, source, tokenizer?}
//   text.txt     the text as given
//   tokens.i32   (unit tokens) the ids, int32 little-endian
//   sa.i32       the suffix array over the units, int32 little-endian
// `roost corpus build` writes it (src/cli/corpus.ts); docs/novelty.md.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Tokenizer } from '../engine/tokenizer';
import { buildSuffixArray, Symbols } from './suffix-array';

export const CORPUS_FORMAT = 'roost-corpus-1';
export const MAX_NGRAM = 10;

export type CorpusUnit = 'bytes' | 'tokens';

export interface CorpusMeta {
  format: typeof CORPUS_FORMAT;
  unit: CorpusUnit;
  /** Units (bytes or tokens) indexed. */
  length: number;
  bytes: number;
  sha256: string;
  source: string;
  /** Unit tokens: the tokenizer's fingerprint (tokenizerFingerprint). */
  tokenizer?: { model: string; vocab_size: number; fingerprint: string };
}

/** What a request gets per choice (docs/api.md "novelty"). */
export interface Novelty {
  unit: CorpusUnit;
  /** n = 1..10: the share of the text's n-grams found nowhere in the corpus (null: the text has no n-gram of that size). */
  ngrams: Array<{ n: number; novel: number | null }>;
  /** The longest span of the text found in the corpus: its first corpus offset (in units), length (units) and text; null for an empty text. */
  longest_copy: { offset: number; length: number; text: string } | null;
}

export class CorpusError extends Error {}

/** A probe whose ids identify a tokenizer well enough to refuse a corpus built with another. */
const PROBE = 'The quick brown fox, 1234 {"jumps"}: \u00e9t\u00e9 \u4e2d\u6587\n\tover the lazy dog.';

export function tokenizerFingerprint(t: Tokenizer): string {
  return createHash('sha256').update(JSON.stringify([t.vocabSize, t.encode(PROBE)])).digest('hex').slice(0, 16);
}

function writeInt32(file: string, a: Int32Array): void {
  fs.writeFileSync(file, Buffer.from(a.buffer, a.byteOffset, a.byteLength));
}

function readInt32(file: string, count: number): Int32Array {
  const b = fs.readFileSync(file);
  if (b.byteLength !== count * 4) throw new CorpusError(`${file}: ${b.byteLength} bytes, expected ${count * 4} (4 per unit): rebuild the corpus`);
  // A view needs 4-byte alignment; a small pooled Buffer may not have it.
  return b.byteOffset % 4 === 0 ? new Int32Array(b.buffer, b.byteOffset, count) : new Int32Array(new Uint8Array(b).buffer);
}

export class Corpus {
  private constructor(
    readonly dir: string,
    readonly meta: CorpusMeta,
    readonly text: Buffer,
    /** The indexed units: the text's bytes, or its token ids. */
    readonly symbols: Symbols,
    readonly sa: Int32Array,
  ) {}

  /** Indexes `text` into the new folder `dir` (over its bytes, or with `tokenizer` over its tokens). */
  static build(dir: string, text: Buffer, source: string, tokenizer?: { tokenizer: Tokenizer; model: string }): Corpus {
    let symbols: Symbols;
    let alphabet: number;
    let tok: CorpusMeta['tokenizer'];
    if (tokenizer) {
      symbols = Int32Array.from(tokenizer.tokenizer.encode(text.toString('utf8')));
      alphabet = tokenizer.tokenizer.vocabSize;
      tok = { model: tokenizer.model, vocab_size: alphabet, fingerprint: tokenizerFingerprint(tokenizer.tokenizer) };
    } else {
      symbols = new Uint8Array(text.buffer, text.byteOffset, text.byteLength);
      alphabet = 256;
    }
    const sa = buildSuffixArray(symbols, alphabet);
    const meta: CorpusMeta = {
      format: CORPUS_FORMAT,
      unit: tokenizer ? 'tokens' : 'bytes',
      length: symbols.length,
      bytes: text.byteLength,
      sha256: createHash('sha256').update(text).digest('hex'),
      source,
      ...(tok ? { tokenizer: tok } : {}),
    };
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'text.txt'), text);
    if (tokenizer) writeInt32(path.join(dir, 'tokens.i32'), symbols as Int32Array);
    writeInt32(path.join(dir, 'sa.i32'), sa);
    fs.writeFileSync(path.join(dir, 'corpus.json'), JSON.stringify(meta, null, 2) + '\n');
    return new Corpus(dir, meta, text, symbols, sa);
  }

  /** Opens a built folder; CorpusError names the file at fault. */
  static open(dir: string): Corpus {
    const metaFile = path.join(dir, 'corpus.json');
    if (!fs.existsSync(metaFile)) throw new CorpusError(`${dir}: not a corpus folder (no corpus.json; build one with \`roost corpus build\`)`);
    let meta: CorpusMeta;
    try {
      meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    } catch (e) {
      throw new CorpusError(`${metaFile}: ${(e as Error).message}`);
    }
    if (meta?.format !== CORPUS_FORMAT) throw new CorpusError(`${metaFile}: format must be ${CORPUS_FORMAT} (got ${JSON.stringify(meta?.format)})`);
    if (meta.unit !== 'bytes' && meta.unit !== 'tokens') throw new CorpusError(`${metaFile}: unit must be "bytes" or "tokens"`);
    if (!Number.isInteger(meta.length) || meta.length < 0) throw new CorpusError(`${metaFile}: length must be a non-negative integer`);
    const textFile = path.join(dir, 'text.txt');
    if (!fs.existsSync(textFile)) throw new CorpusError(`${textFile}: missing: rebuild the corpus`);
    const text = fs.readFileSync(textFile);
    if (createHash('sha256').update(text).digest('hex') !== meta.sha256) throw new CorpusError(`${textFile}: its sha256 differs from corpus.json's: rebuild the corpus`);
    const symbols = meta.unit === 'bytes' ? new Uint8Array(text.buffer, text.byteOffset, text.byteLength) : readInt32(path.join(dir, 'tokens.i32'), meta.length);
    if (symbols.length !== meta.length) throw new CorpusError(`${metaFile}: length ${meta.length} but the text has ${symbols.length} ${meta.unit}`);
    const saFile = path.join(dir, 'sa.i32');
    if (!fs.existsSync(saFile)) throw new CorpusError(`${saFile}: missing: rebuild the corpus`);
    const sa = readInt32(saFile, meta.length);
    return new Corpus(dir, meta, text, symbols, sa);
  }

  get unit(): CorpusUnit {
    return this.meta.unit;
  }

  /** The inverse suffix array (rank of each suffix), made on first use (or by prepare()): 4 bytes per unit. */
  private isaCache: Int32Array | undefined;

  /** Makes what queries use now (a server opening its corpora), not on the first request. */
  prepare(): this {
    void this.isa;
    return this;
  }

  private get isa(): Int32Array {
    if (!this.isaCache) {
      const isa = new Int32Array(this.sa.length);
      for (let x = 0; x < this.sa.length; x++) isa[this.sa[x]] = x;
      this.isaCache = isa;
    }
    return this.isaCache;
  }

  /**
   * Matching statistics of `q`: for each start i, the length of the longest
   * prefix of q[i..] found in the corpus, and the suffix-array range of its
   * occurrences ([lo, hi)). A match of length l from i at corpus position p
   * gives one of l - 1 from i + 1 at p + 1, whose rank (the inverse suffix
   * array) lies in that shorter match's range: the range is found by
   * galloping out from it, so the cost grows with the log of the number of
   * occurrences, not of the corpus. Each further unit narrows the range by two
   * binary searches (units past a suffix's end sort first).
   */
  matches(q: ArrayLike<number>): { length: Int32Array; lo: Int32Array; hi: Int32Array } {
    const { symbols: s, sa } = this;
    const n = s.length;
    const m = q.length;
    const length = new Int32Array(m);
    const los = new Int32Array(m);
    const his = new Int32Array(m);
    // Whether suffix sa[x] starts with q[i..i+k).
    const starts = (x: number, i: number, k: number) => {
      const p = sa[x];
      if (p + k > n) return false;
      for (let d = 0; d < k; d++) if (s[p + d] !== q[i + d]) return false;
      return true;
    };
    for (let i = 0; i < m; i++) {
      let lo = 0;
      let hi = n;
      let l = 0;
      if (i > 0 && length[i - 1] > 1) {
        l = length[i - 1] - 1;
        const r = this.isa[sa[los[i - 1]] + 1];
        // Down from r: the first rank whose suffix starts with q[i..i+l).
        let good = r;
        let bad = -1;
        for (let step = 1; ; step *= 2) {
          const x = good - step;
          if (x < 0) break;
          if (!starts(x, i, l)) {
            bad = x;
            break;
          }
          good = x;
        }
        let a = bad + 1;
        let b = good;
        while (a < b) {
          const mid = (a + b) >>> 1;
          if (starts(mid, i, l)) b = mid;
          else a = mid + 1;
        }
        lo = a;
        // Up from r: one past the last.
        good = r;
        bad = n;
        for (let step = 1; ; step *= 2) {
          const x = good + step;
          if (x >= n) break;
          if (!starts(x, i, l)) {
            bad = x;
            break;
          }
          good = x;
        }
        a = good + 1;
        b = bad;
        while (a < b) {
          const mid = (a + b) >>> 1;
          if (starts(mid, i, l)) a = mid + 1;
          else b = mid;
        }
        hi = a;
      }
      while (i + l < m) {
        const c = q[i + l];
        // First x in [lo, hi) whose unit l is >= c, then the first whose unit l is > c.
        let a = lo;
        let b = hi;
        while (a < b) {
          const mid = (a + b) >>> 1;
          const p = sa[mid] + l;
          if ((p < n ? s[p] : -1) < c) a = mid + 1;
          else b = mid;
        }
        const start = a;
        b = hi;
        while (a < b) {
          const mid = (a + b) >>> 1;
          const p = sa[mid] + l;
          if ((p < n ? s[p] : -1) <= c) a = mid + 1;
          else b = mid;
        }
        if (a === start) break;
        lo = start;
        hi = a;
        l++;
      }
      length[i] = l;
      los[i] = lo;
      his[i] = hi;
    }
    return { length, lo: los, hi: his };
  }

  /** RAVEN's measures of a text's units `q` (`render` turns a span of q back into text). */
  novelty(q: ArrayLike<number>, render: (start: number, end: number) => string): Novelty {
    const { length, lo, hi } = this.matches(q);
    const m = q.length;
    const ngrams: Novelty['ngrams'] = [];
    for (let n = 1; n <= MAX_NGRAM; n++) {
      const total = m - n + 1;
      if (total <= 0) {
        ngrams.push({ n, novel: null });
        continue;
      }
      let novel = 0;
      for (let i = 0; i < total; i++) if (length[i] < n) novel++;
      ngrams.push({ n, novel: novel / total });
    }
    let best = -1;
    for (let i = 0; i < m; i++) if (best < 0 || length[i] > length[best]) best = i;
    let longest: Novelty['longest_copy'] = null;
    if (best >= 0) {
      // The first occurrence in the corpus: the least start in the range.
      let offset = -1;
      if (length[best] > 0) {
        offset = this.sa[lo[best]];
        for (let x = lo[best] + 1; x < hi[best]; x++) if (this.sa[x] < offset) offset = this.sa[x];
      }
      longest = { offset, length: length[best], text: length[best] > 0 ? render(best, best + length[best]) : '' };
    }
    return { unit: this.unit, ngrams, longest_copy: longest };
  }

  /** The measures of a generated text: over its UTF-8 bytes, or its ids by `tokenizer` (which must be the corpus's). */
  noveltyOfText(text: string, tokenizer?: Tokenizer): Novelty {
    if (this.unit === 'bytes') {
      const b = Buffer.from(text, 'utf8');
      return this.novelty(b, (s, e) => b.subarray(s, e).toString('utf8'));
    }
    if (!tokenizer) throw new CorpusError(`corpus ${this.dir} is over tokens: a tokenizer is needed`);
    const ids = tokenizer.encode(text);
    return this.novelty(ids, (s, e) => tokenizer.decode(ids.slice(s, e)));
  }

  /** GET-style summary. */
  describe(): Record<string, unknown> {
    return { unit: this.meta.unit, length: this.meta.length, bytes: this.meta.bytes, source: this.meta.source, ...(this.meta.tokenizer ? { tokenizer: this.meta.tokenizer.model } : {}) };
  }
}

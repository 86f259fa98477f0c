// The passage embedder trained on the KJV training text by
// tools/train/embedder.py (docs/retrieval.md "The embedder"): a text's
// embedding is the L2-normalised mean of the table rows of its in-vocabulary
// words and of the space-padded character trigrams of every word (32-bit
// FNV-1a, modulo trigram_buckets). Same features, same order as the trainer.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { packageRoot } from '../package-root';
import { words } from './text';

interface EmbedderConfig {
  kind: 'bag_of_words_trigrams';
  dim: number;
  trigram_buckets: number;
  vocab_size: number;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export class Embedder {
  readonly dim: number;
  private readonly vocab: Map<string, number>;
  private readonly featureCache = new Map<string, number[]>();

  private constructor(
    readonly dir: string,
    private readonly cfg: EmbedderConfig,
    vocab: string[],
    private readonly table: Float32Array,
  ) {
    this.dim = cfg.dim;
    this.vocab = new Map(vocab.map((w, i) => [w, i]));
  }

  /** The shipped embedder (models/embedder), or the one in `dir`. */
  static load(dir = path.join(packageRoot(), 'models', 'embedder')): Embedder {
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as EmbedderConfig;
    const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'vocab.json'), 'utf8')) as string[];
    const buf = fs.readFileSync(path.join(dir, 'weights.f32'));
    const rows = cfg.vocab_size + cfg.trigram_buckets;
    if (cfg.kind !== 'bag_of_words_trigrams' || vocab.length !== cfg.vocab_size || buf.length !== rows * cfg.dim * 4) {
      throw new Error(`${dir}: the embedder files disagree (config ${JSON.stringify(cfg)}, ${vocab.length} words, ${buf.length} weight bytes)`);
    }
    const table = new Float32Array(rows * cfg.dim);
    for (let i = 0; i < table.length; i++) table[i] = buf.readFloatLE(i * 4);
    return new Embedder(dir, cfg, vocab, table);
  }

  private features(word: string): number[] {
    let f = this.featureCache.get(word);
    if (f) return f;
    const V = this.cfg.vocab_size;
    const id = this.vocab.get(word);
    f = id === undefined ? [] : [id];
    const p = ` ${word} `;
    for (let i = 0; i + 3 <= p.length; i++) f.push(V + (fnv1a(p.slice(i, i + 3)) % this.cfg.trigram_buckets));
    if (this.featureCache.size < 1 << 16) this.featureCache.set(word, f);
    return f;
  }

  /** Unit-length embedding of `text` (a text with no word embeds as the first trigram row, as in training). */
  embed(text: string): Float32Array {
    const D = this.dim;
    const out = new Float32Array(D);
    let n = 0;
    for (const w of words(text)) {
      for (const r of this.features(w)) {
        for (let j = 0, o = r * D; j < D; j++) out[j] += this.table[o + j];
        n++;
      }
    }
    if (n === 0) out.set(this.table.subarray(this.cfg.vocab_size * D, (this.cfg.vocab_size + 1) * D));
    let norm = 0;
    for (let j = 0; j < D; j++) norm += out[j] * out[j];
    norm = Math.sqrt(norm) || 1;
    for (let j = 0; j < D; j++) out[j] /= norm;
    return out;
  }
}

// The novelty corpora a server serves (`roost serve --corpus NAME=DIR`), by
// name, as src/retrieval/registry.ts serves datastores: one that cannot be
// opened does not stop the server; requests naming it get corpus_unavailable
// with the reason, and each such request tries to open it again.
import { RequestError } from '../engine/errors';
import type { Tokenizer } from '../engine/tokenizer';
import { Corpus, CorpusError, Novelty, tokenizerFingerprint } from './corpus';

interface Entry {
  dir: string;
  corpus: Corpus | null;
  error: string | null;
}

export class Corpora {
  private readonly entries = new Map<string, Entry>();
  private tokenizer: Tokenizer | undefined;
  private fingerprint: string | undefined;

  constructor(dirs: Record<string, string> = {}) {
    for (const [name, dir] of Object.entries(dirs)) this.entries.set(name, { dir, corpus: null, error: 'the model is still loading' });
  }

  /** Opens every corpus once the served model's tokenizer is known (a token corpus must be of that tokenizer). */
  open(tokenizer: Tokenizer): void {
    this.tokenizer = tokenizer;
    this.fingerprint = tokenizerFingerprint(tokenizer);
    for (const e of this.entries.values()) this.tryOpen(e);
  }

  get size(): number {
    return this.entries.size;
  }

  private tryOpen(e: Entry): void {
    if (!this.tokenizer) return;
    try {
      const c = Corpus.open(e.dir).prepare();
      const tok = c.meta.tokenizer;
      if (c.unit === 'tokens' && tok?.fingerprint !== this.fingerprint) {
        throw new CorpusError(`it was tokenized by the tokenizer of ${tok?.model ?? 'another model'}, not the served model's: rebuild it with --model set to the served model, or without --model (over bytes)`);
      }
      e.corpus = c;
      e.error = null;
    } catch (err) {
      e.corpus = null;
      e.error = err instanceof CorpusError ? err.message : `${e.dir}: ${(err as Error).message}`;
    }
  }

  /** The opened corpus `name`, or the RequestError the client gets. */
  get(name: string, param: string | null = null): Corpus {
    const e = this.entries.get(name);
    if (!e) {
      const served = [...this.entries.keys()].map((n) => JSON.stringify(n)).join(', ') || 'none (start the server with --corpus NAME=DIR)';
      throw new RequestError('corpus_not_found', `no novelty corpus named ${JSON.stringify(name)}; served: ${served}`, param);
    }
    if (!e.corpus) this.tryOpen(e);
    if (!e.corpus) throw new RequestError('corpus_unavailable', `novelty corpus ${JSON.stringify(name)} cannot be used: ${e.error}`, param);
    return e.corpus;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  /** Errors at open, by name (for the server's start-up log). */
  errors(): Array<[string, string]> {
    return [...this.entries].filter(([, e]) => e.error !== null).map(([n, e]) => [n, e.error!]);
  }

  /** The measurer of a request's `novelty` field: checked now (unknown or unusable corpus: refused before the run). */
  measurer(name: string): (text: string) => Novelty {
    const corpus = this.get(name, 'novelty.corpus');
    const tokenizer = this.tokenizer;
    return (text) => corpus.noveltyOfText(text, tokenizer);
  }
}

/** The request's novelty measurer, or undefined when it asked for none. */
export function noveltyMeasurer(corpora: Corpora | undefined, p: { novelty?: { corpus: string } | null }): ((text: string) => Novelty) | undefined {
  if (!p.novelty) return undefined;
  if (!corpora || corpora.size === 0) {
    throw new RequestError('corpus_not_found', `no novelty corpus named ${JSON.stringify(p.novelty.corpus)}: this server serves none (start it with --corpus NAME=DIR)`, 'novelty.corpus');
  }
  return corpora.measurer(p.novelty.corpus);
}

/**
 * Measures each text in turn, yielding to the event loop between them: one
 * 256-unit text takes a few ms on the King James corpus, so a request of n =
 * 16 choices never holds the loop for the sum of them (docs/novelty.md).
 */
export async function measureEach(texts: string[], measure: (text: string) => Novelty): Promise<Novelty[]> {
  const out: Novelty[] = [];
  for (const t of texts) {
    if (out.length > 0) await new Promise((r) => setImmediate(r));
    out.push(measure(t));
  }
  return out;
}

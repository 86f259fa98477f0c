// A retrieval datastore (docs/retrieval.md): documents cut into chunks of
// `chunk_tokens` tokens of the served model's tokenizer (RETRO's 64), each
// chunk's text, token ids, a dense embedding in an ANN index (src/retrieval/ann.ts)
// and its words in a BM25 index (src/retrieval/bm25.ts).
//
// On disk, generation g (named by manifest.json, the one file replaced by
// rename):
//   manifest.json        format, settings, counts, the generation's file names and their sha256
//   documents-<g>.jsonl  one line per document: {id, metadata, chunks: [{key, text, tokens}]}
//   dense-<g>.usearch    the ANN graph of every chunk (keys = chunk keys)
//   wal-<g>.jsonl        updates since the snapshot (src/retrieval/wal.ts), replayed at open
// An update is appended to the log (fsync) before it is applied; compaction
// writes generation g+1's files, then renames the manifest over the old one,
// then removes generation g's files. A kill at any point leaves the manifest
// naming one complete generation plus the updates its log verifies.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Tokenizer } from '../engine/tokenizer';
import { ANN_CONNECTIVITY, ANN_EF_ADD, ANN_EF_SEARCH, DenseIndex } from './ann';
import { Bm25Index } from './bm25';
import type { Embedder } from './embedder';
import { appendWal, readWal, WalRecord } from './wal';

export const DEFAULT_CHUNK_TOKENS = 64;
/** Reciprocal-rank-fusion constant of hybrid mode (Cormack et al. 2009). */
export const RRF_K = 60;
/** Updates in the log past which the serving process writes a new generation. */
export const COMPACT_AFTER_UPDATES = 1024;

export type RetrievalMode = 'dense' | 'bm25' | 'hybrid';

export interface Passage {
  /** `<document id>#<chunk index>` */
  id: string;
  score: number;
  text: string;
}

export interface Manifest {
  format: 'roost-datastore';
  version: 1;
  generation: number;
  chunk_tokens: number;
  /** The model whose tokenizer cut the chunks (folder name) and its vocabulary size. */
  model: string;
  vocab_size: number;
  embedder: { dim: number };
  ann: { library: 'usearch'; metric: 'cos'; connectivity: number; expansion_add: number; expansion_search: number };
  next_key: number;
  documents: number;
  chunks: number;
  files: { documents: string; dense: string; wal: string };
  sha256: { documents: string; dense: string };
}

/** A datastore folder that cannot be used, with the reason naming the file. */
export class DatastoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatastoreError';
  }
}

interface Chunk {
  key: number;
  doc: string;
  index: number;
  text: string;
  tokens: number[];
}
interface Doc {
  id: string;
  metadata: Record<string, unknown> | null;
  keys: number[];
}

const MANIFEST = 'manifest.json';
const sha256File = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface CreateOptions {
  tokenizer: Tokenizer;
  embedder: Embedder;
  model: string;
  vocabSize: number;
  chunkTokens?: number;
}

export class Datastore {
  private readonly docs = new Map<string, Doc>();
  private readonly chunks = new Map<number, Chunk>();
  private readonly bm25 = new Bm25Index();
  private readonly dense: DenseIndex;
  private walRecords = 0;

  private constructor(
    readonly dir: string,
    private manifest: Manifest,
    private readonly tokenizer: Tokenizer,
    private readonly embedder: Embedder,
  ) {
    this.dense = new DenseIndex(manifest.embedder.dim);
  }

  /** A new, empty datastore in `dir` (which must not exist or be empty), generation 0 on disk. */
  static create(dir: string, o: CreateOptions): Datastore {
    if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) throw new DatastoreError(`${dir} already exists and is not empty`);
    fs.mkdirSync(dir, { recursive: true });
    const manifest: Manifest = {
      format: 'roost-datastore',
      version: 1,
      generation: -1,
      chunk_tokens: o.chunkTokens ?? DEFAULT_CHUNK_TOKENS,
      model: o.model,
      vocab_size: o.vocabSize,
      embedder: { dim: o.embedder.dim },
      ann: { library: 'usearch', metric: 'cos', connectivity: ANN_CONNECTIVITY, expansion_add: ANN_EF_ADD, expansion_search: ANN_EF_SEARCH },
      next_key: 0,
      documents: 0,
      chunks: 0,
      files: { documents: '', dense: '', wal: '' },
      sha256: { documents: '', dense: '' },
    };
    const ds = new Datastore(dir, manifest, o.tokenizer, o.embedder);
    ds.compact();
    return ds;
  }

  /** Opens `dir`: checks the manifest and the checksums, loads the snapshot, replays the log. */
  static open(dir: string, tokenizer: Tokenizer, embedder: Embedder): Datastore {
    if (!fs.existsSync(dir)) throw new DatastoreError(`datastore directory ${dir} does not exist`);
    const mfile = path.join(dir, MANIFEST);
    if (!fs.existsSync(mfile)) throw new DatastoreError(`${dir} is not a datastore: ${MANIFEST} is missing (build one with \`roost datastore build\`)`);
    let m: Manifest;
    try {
      m = JSON.parse(fs.readFileSync(mfile, 'utf8')) as Manifest;
    } catch (e) {
      throw new DatastoreError(`${mfile} is corrupted: ${(e as Error).message}`);
    }
    if (m.format !== 'roost-datastore' || m.version !== 1) throw new DatastoreError(`${mfile} is not a roost datastore manifest of version 1`);
    if (m.embedder.dim !== embedder.dim) {
      throw new DatastoreError(`${dir} was built with an embedder of dimension ${m.embedder.dim}, the served one has ${embedder.dim}`);
    }
    for (const which of ['documents', 'dense'] as const) {
      const file = path.join(dir, m.files[which]);
      if (!fs.existsSync(file)) throw new DatastoreError(`${file} is missing (named by ${mfile})`);
      if (sha256File(file) !== m.sha256[which]) throw new DatastoreError(`${file} is corrupted: its sha256 does not match ${mfile}`);
    }
    const ds = new Datastore(dir, m, tokenizer, embedder);
    ds.loadSnapshot();
    for (const r of readWal(path.join(dir, m.files.wal))) {
      ds.apply(r);
      ds.walRecords++;
    }
    ds.removeStrayFiles();
    return ds;
  }

  get documentCount(): number {
    return this.docs.size;
  }

  get chunkCount(): number {
    return this.chunks.size;
  }

  get chunkTokens(): number {
    return this.manifest.chunk_tokens;
  }

  has(id: string): boolean {
    return this.docs.has(id);
  }

  /** A document's text as its chunks hold it (their concatenation), or undefined. */
  text(id: string): string | undefined {
    return this.docs.get(id)?.keys.map((k) => this.chunks.get(k)!.text).join('');
  }

  /**
   * RETRO's neighbour (docs/retro.md): the tokens of chunk `id` ("doc#index")
   * and of the chunks after it in its document, `length` in all; a document
   * that ends first is padded by repeating its last token.
   */
  neighbourTokens(id: string, length: number): number[] {
    const hash = id.lastIndexOf('#');
    const doc = this.docs.get(id.slice(0, hash));
    if (!doc) throw new DatastoreError(`no chunk ${JSON.stringify(id)}`);
    const out: number[] = [];
    for (let i = Number(id.slice(hash + 1)); i < doc.keys.length && out.length < length; i++) out.push(...this.chunks.get(doc.keys[i])!.tokens);
    while (out.length < length) out.push(out[out.length - 1]);
    return out.slice(0, length);
  }

  /** Adds a document durably (logged before applied); returns its chunk count. */
  add(id: string, text: string, metadata: Record<string, unknown> | null = null): number {
    if (this.docs.has(id)) throw new DatastoreError(`a document with id ${JSON.stringify(id)} already exists (delete it first)`);
    if (this.tokenizer.encode(text).length === 0) throw new DatastoreError('the document text encodes to no tokens');
    const record: WalRecord = { op: 'add', id, text, metadata };
    appendWal(path.join(this.dir, this.manifest.files.wal), record);
    this.walRecords++;
    this.apply(record);
    return this.docs.get(id)!.keys.length;
  }

  /** Deletes a document durably; false when there is none with that id. */
  delete(id: string): boolean {
    if (!this.docs.has(id)) return false;
    const record: WalRecord = { op: 'delete', id };
    appendWal(path.join(this.dir, this.manifest.files.wal), record);
    this.walRecords++;
    this.apply(record);
    return true;
  }

  /** Writes a new generation when the log has grown long. */
  maybeCompact(): void {
    if (this.walRecords >= COMPACT_AFTER_UPDATES) this.compact();
  }

  /** The k best chunks for `query` by `mode`, best first. */
  search(query: string, k: number, mode: RetrievalMode): Passage[] {
    let ranked: Array<{ key: number; score: number }>;
    if (mode === 'bm25') ranked = this.bm25.search(query, k);
    else if (mode === 'dense') ranked = this.denseSearch(query, k);
    else {
      // Reciprocal rank fusion of both lists, each read to depth max(4k, 20).
      const depth = Math.max(4 * k, 20);
      const fused = new Map<number, number>();
      for (const list of [this.denseSearch(query, depth), this.bm25.search(query, depth)]) {
        list.forEach((r, i) => fused.set(r.key, (fused.get(r.key) ?? 0) + 1 / (RRF_K + i + 1)));
      }
      ranked = [...fused].map(([key, score]) => ({ key, score })).sort((a, b) => b.score - a.score || a.key - b.key).slice(0, k);
    }
    return ranked.map(({ key, score }) => {
      const c = this.chunks.get(key)!;
      return { id: `${c.doc}#${c.index}`, score, text: c.text };
    });
  }

  private denseSearch(query: string, k: number): Array<{ key: number; score: number }> {
    // Removed keys never come back from usearch; the filter is a second guard.
    return this.dense.search(this.embedder.embed(query), k).filter((r) => this.chunks.has(r.key));
  }

  /** Applies a logged (or snapshot) update in memory. */
  private apply(r: WalRecord): void {
    if (r.op === 'delete') {
      const doc = this.docs.get(r.id);
      if (!doc) return;
      for (const key of doc.keys) {
        const c = this.chunks.get(key)!;
        this.bm25.remove(key, c.text);
        this.dense.remove(key);
        this.chunks.delete(key);
      }
      this.docs.delete(r.id);
      return;
    }
    const ids = this.tokenizer.encode(r.text);
    const T = this.manifest.chunk_tokens;
    const added: Chunk[] = [];
    for (let i = 0; i * T < ids.length; i++) {
      const tokens = ids.slice(i * T, (i + 1) * T);
      added.push({ key: this.manifest.next_key++, doc: r.id, index: i, text: this.tokenizer.decode(tokens), tokens });
    }
    this.insert({ id: r.id, metadata: r.metadata, keys: added.map((c) => c.key) }, added, true);
  }

  private insert(doc: Doc, chunks: Chunk[], embed: boolean): void {
    this.docs.set(doc.id, doc);
    for (const c of chunks) {
      this.chunks.set(c.key, c);
      this.bm25.add(c.key, c.text);
    }
    if (embed) {
      const D = this.manifest.embedder.dim;
      const vectors = new Float32Array(chunks.length * D);
      chunks.forEach((c, i) => vectors.set(this.embedder.embed(c.text), i * D));
      this.dense.add(chunks.map((c) => c.key), vectors);
    }
  }

  private loadSnapshot(): void {
    const m = this.manifest;
    const text = fs.readFileSync(path.join(this.dir, m.files.documents), 'utf8');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const d = JSON.parse(line) as { id: string; metadata: Doc['metadata']; chunks: Array<{ key: number; text: string; tokens: number[] }> };
      const chunks = d.chunks.map((c, index) => ({ ...c, doc: d.id, index }));
      this.insert({ id: d.id, metadata: d.metadata, keys: chunks.map((c) => c.key) }, chunks, false);
    }
    this.dense.load(path.join(this.dir, m.files.dense));
  }

  /** Writes generation g+1 (documents, dense graph), then switches the manifest to it, then drops generation g. */
  compact(): void {
    const old = this.manifest;
    const g = old.generation + 1;
    const files = { documents: `documents-${g}.jsonl`, dense: `dense-${g}.usearch`, wal: `wal-${g}.jsonl` };
    const docFile = path.join(this.dir, files.documents);
    const fd = fs.openSync(docFile, 'w');
    try {
      for (const d of this.docs.values()) {
        const chunks = d.keys.map((k) => {
          const c = this.chunks.get(k)!;
          return { key: c.key, text: c.text, tokens: c.tokens };
        });
        fs.writeSync(fd, JSON.stringify({ id: d.id, metadata: d.metadata, chunks }) + '\n');
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    const denseFile = path.join(this.dir, files.dense);
    this.dense.save(denseFile);
    fsyncFile(denseFile);
    const next: Manifest = {
      ...old,
      generation: g,
      documents: this.docs.size,
      chunks: this.chunks.size,
      files,
      sha256: { documents: sha256File(docFile), dense: sha256File(denseFile) },
    };
    const tmp = path.join(this.dir, `${MANIFEST}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify(next, null, 2) + '\n');
    fsyncFile(tmp);
    fs.renameSync(tmp, path.join(this.dir, MANIFEST));
    fsyncDir(this.dir);
    this.manifest = next;
    this.walRecords = 0;
    this.removeStrayFiles();
  }

  /** Files of other generations (left by a kill during compaction) and a stale manifest.tmp. */
  private removeStrayFiles(): void {
    const keep = new Set([MANIFEST, ...Object.values(this.manifest.files)]);
    for (const f of fs.readdirSync(this.dir)) {
      if (!keep.has(f) && /^(documents-\d+\.jsonl|dense-\d+\.usearch|wal-\d+\.jsonl|manifest\.json\.tmp)$/.test(f)) fs.rmSync(path.join(this.dir, f), { force: true });
    }
  }

  /** What GET /v1/datastores shows. */
  describe(): { documents: number; chunks: number; chunk_tokens: number; model: string; generation: number; pending_updates: number } {
    return {
      documents: this.docs.size,
      chunks: this.chunks.size,
      chunk_tokens: this.manifest.chunk_tokens,
      model: this.manifest.model,
      generation: this.manifest.generation,
      pending_updates: this.walRecords,
    };
  }
}

// Tokenizing large prompts off the event loop (docs/api.md, "Limits"): a
// normalizing HF tokenizer takes seconds for a few MiB of text, during which
// /health, /metrics and every stream would stop. Texts past
// OFF_THREAD_PROMPT_BYTES go to one long-lived worker thread per served
// tokenizer (src/engine/tokenize-worker.ts), which loads the same folder with
// the same loader; requests are answered in the order they were sent. A
// worker that dies rejects what it had with engine_error, and the next
// request starts a fresh one. The worker is referenced only while it has work,
// so an idle one never keeps the process alive.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { RequestError } from './errors';
import type { EncodeMessage, EncodeReply } from './tokenize-worker';
import type { EncodeOptions } from './tokenizer';

/** Prompts (with a FIM suffix) of at least this many UTF-8 bytes in all are tokenized in the worker. */
export const OFF_THREAD_PROMPT_BYTES = 64 << 10;

const ENTRY = path.join(__dirname, `tokenize-worker${path.extname(__filename)}`);

// Run from the TypeScript sources (jest, through ts-jest), the worker compiles
// them as it requires them, with the project's own compiler.
const FROM_SOURCES = `
const fs = require('node:fs');
const { workerData } = require('node:worker_threads');
const ts = require(workerData.typescript);
const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
require.extensions['.ts'] = (module, file) =>
  module._compile(ts.transpileModule(fs.readFileSync(file, 'utf8'), { compilerOptions, fileName: file }).outputText, file);
require(workerData.entry);
`;

interface Pending {
  resolve(ids: number[][]): void;
  reject(e: Error): void;
}

export class TokenizerWorker {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;

  /** dir: the model folder the served tokenizer was loaded from (Tokenizer.dir). */
  constructor(readonly dir: string) {}

  /** Each text's ids, encoded in the worker. Rejects with engine_error if the worker fails, shutting_down once closed. */
  encode(texts: string[], options: EncodeOptions = {}): Promise<number[][]> {
    if (this.closed) return Promise.reject(new RequestError('shutting_down', 'the server is shutting down and accepts no new requests'));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const w = this.started();
      if (this.pending.size === 0) w.ref();
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, texts, addSpecialTokens: options.addSpecialTokens } satisfies EncodeMessage);
    });
  }

  /** Ends the worker; pending requests are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.fail(new RequestError('shutting_down', 'the server is shutting down and accepts no new requests'));
    if (w) await w.terminate();
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const workerData = { dir: path.resolve(this.dir), entry: ENTRY, typescript: '' };
    let w: Worker;
    if (ENTRY.endsWith('.ts')) {
      workerData.typescript = require.resolve('typescript');
      w = new Worker(FROM_SOURCES, { eval: true, workerData });
    } else {
      w = new Worker(ENTRY, { workerData });
    }
    w.unref();
    w.on('message', (reply: EncodeReply) => {
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (this.pending.size === 0) w.unref();
      if (!p) return;
      if ('error' in reply) p.reject(new RequestError('engine_error', `tokenizing the prompt failed: ${reply.error}`));
      else p.resolve(reply.ids.map((b) => Array.from(new Uint32Array(b))));
    });
    w.on('error', (e) => {
      if (this.worker === w) this.fail(new RequestError('engine_error', `the tokenizer worker for ${this.dir} failed: ${e.message}`));
    });
    w.on('exit', (code) => {
      if (this.worker === w) this.fail(new RequestError('engine_error', `the tokenizer worker for ${this.dir} exited (code ${code})`));
    });
    return (this.worker = w);
  }

  /** Forgets the worker (the next request starts a fresh one) and rejects what it had. */
  private fail(e: RequestError): void {
    this.worker = undefined;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(e);
  }
}

// roost datastore build / add: a retrieval datastore from a corpus file
// (src/retrieval/datastore.ts, docs/retrieval.md).
//   roost datastore build --model M --file CORPUS --out DIR [--chunk 64] [--id ID]
//   roost datastore add DIR --model M --file MORE [--id ID]
// A corpus file is one document (id: --id, default the file's name). build
// writes into DIR.tmp-<pid> and renames it to DIR when complete, so DIR is
// either absent or a whole datastore; add goes through the write-ahead log and
// then writes a new generation.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command } from 'commander';

import { FileGuardError, readGuardedFile } from '../engine/file-guard';
import { loadTokenizer } from '../engine/tokenizer';
import { Datastore, DatastoreError, DEFAULT_CHUNK_TOKENS } from '../retrieval/datastore';
import { Embedder } from '../retrieval/embedder';
import { buildKnnMemory, KNN_DIR } from '../retrieval/knn';
import { Engine } from '../native';
import { flag, integer, UsageError } from './flags';
import { resolveModel } from './model';
import { progressBar } from './progress';

/** The largest corpus file read at once (it is tokenized whole, in memory). */
const CORPUS_MAX_BYTES = 256 << 20;

interface CorpusFlags {
  model?: string;
  file?: string;
  id?: string;
}

function corpusFlags(cmd: Command): Command {
  return cmd
    .addOption(flag('--model <dir>', "the model whose tokenizer cuts the chunks (a folder or a shipped model's name) (required)"))
    .addOption(flag('--file <file>', 'the corpus: one UTF-8 text file, one document (required)'))
    .addOption(flag('--id <id>', "the document's id (default: the file's name)"));
}

function need(v: string | undefined, name: string): string {
  if (v === undefined || v === '') throw new UsageError(`${name} is required`);
  return v;
}

async function readCorpus(file: string): Promise<string> {
  try {
    return (await readGuardedFile(file, CORPUS_MAX_BYTES)).toString('utf8');
  } catch (e) {
    if (e instanceof FileGuardError) throw new UsageError(`--file: cannot read ${e.message}`);
    throw e;
  }
}

function print(o: object): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

/** The kNN memory of a corpus into <dir>/knn (src/retrieval/knn.ts), with a progress bar on stderr. */
export async function buildKnn(model: string, text: string, dir: string, threads?: number): Promise<{ entries: number; seconds: number }> {
  const engine = await Engine.load(model, { device: 'cpu', ...(threads === undefined ? {} : { threads }) });
  const tokens = loadTokenizer(model).encode(text);
  const max = engine.info().maxContext;
  const bar = progressBar('kNN memory', 'positions');
  const meta = await buildKnnMemory(engine, tokens, path.join(dir, KNN_DIR), {
    window: max > 0 ? max : 1024,
    model: path.basename(model),
    onProgress: bar.update,
  });
  bar.done();
  return { entries: meta.entries, seconds: meta.seconds };
}

async function build(flags: CorpusFlags & { out?: string; chunk: number; knn?: boolean; threads?: number }): Promise<void> {
  const model = resolveModel(need(flags.model, '--model'));
  const file = need(flags.file, '--file');
  const out = path.resolve(need(flags.out, '--out'));
  if (fs.existsSync(out)) throw new UsageError(`--out: ${out} already exists (use \`roost datastore add\` to update it)`);
  const text = await readCorpus(file);
  const tokenizer = loadTokenizer(model);
  const tmp = `${out}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  const started = Date.now();
  const ds = Datastore.create(tmp, { tokenizer, embedder: Embedder.load(), model: path.basename(model), vocabSize: tokenizer.vocabSize, chunkTokens: flags.chunk });
  ds.add(flags.id ?? path.basename(file), text);
  ds.compact();
  const knn = flags.knn ? await buildKnn(model, text, tmp, flags.threads) : null;
  fs.renameSync(tmp, out);
  print({
    datastore: out,
    documents: ds.documentCount,
    chunks: ds.chunkCount,
    chunk_tokens: flags.chunk,
    ...(knn ? { knn_entries: knn.entries } : {}),
    seconds: (Date.now() - started) / 1000,
  });
}

async function add(dirArg: string, flags: CorpusFlags): Promise<void> {
  const dir = path.resolve(dirArg);
  const model = resolveModel(need(flags.model, '--model'));
  const file = need(flags.file, '--file');
  const text = await readCorpus(file);
  const ds = Datastore.open(dir, loadTokenizer(model), Embedder.load());
  const id = flags.id ?? path.basename(file);
  try {
    const chunks = ds.add(id, text);
    ds.compact();
    print({ datastore: dir, added: id, chunks, documents: ds.documentCount, total_chunks: ds.chunkCount });
  } catch (e) {
    if (e instanceof DatastoreError) throw new UsageError(e.message);
    throw e;
  }
}

export function datastoreCommand(): Command {
  const cmd = new Command('datastore').description('Build or extend a retrieval datastore (docs/retrieval.md).').usage('build|add [options]');
  cmd.addCommand(
    corpusFlags(new Command('build').description('Chunk, embed and index a corpus into a new datastore folder.').usage('--model DIR --file CORPUS --out DIR [options]'))
      .addOption(flag('--out <dir>', 'the new datastore folder; must not exist (required)'))
      .addOption(flag('--chunk <tokens>', 'tokens per chunk', integer(1, 'an integer from 1 to 4096', 4096), DEFAULT_CHUNK_TOKENS))
      .addOption(flag('--knn', "also store the kNN memory: the model's final-layer-norm output (key, F16) and next token (value) of every position"))
      .addOption(flag('--threads <n>', 'CPU threads for --knn (default: every core)', integer(1, 'a positive integer', 4096)))
      .action(build),
  );
  cmd.addCommand(
    corpusFlags(new Command('add').description('Add a document to an existing datastore.').usage('DIR --model DIR --file MORE [options]').argument('<dir>', 'the datastore folder')).action(add),
  );
  return cmd;
}

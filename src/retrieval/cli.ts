// roost datastore build / add (src/cli.ts hands `roost datastore ...` here):
//   roost datastore build --model M --file CORPUS --out DIR [--chunk 64] [--id ID]
//   roost datastore add DIR --file MORE [--id ID]
// A corpus file is one document (id: --id, default the file's name). build
// writes into DIR.tmp-<pid> and renames it to DIR when complete, so DIR is
// either absent or a whole datastore; add goes through the write-ahead log and
// then writes a new generation (src/retrieval/datastore.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { loadTokenizer } from '../engine/tokenizer';
import { Datastore, DatastoreError, DEFAULT_CHUNK_TOKENS } from './datastore';
import { Embedder } from './embedder';

export const DATASTORE_USAGE = [
  'roost datastore build --model DIR --file CORPUS --out DIR [--chunk N] [--id ID]',
  'roost datastore add DIR --model DIR --file MORE [--id ID]',
];

/** A usage mistake (exit 2); other errors exit 1. */
export class DatastoreUsageError extends Error {}

interface Io {
  /** `--model default` or a shipped model's name to its folder (src/cli.ts resolveModel). */
  resolveModel(value: string): string;
  out(line: string): void;
}

function readCorpus(file: string): string {
  if (!fs.existsSync(file)) throw new DatastoreUsageError(`--file: ${file} does not exist`);
  return fs.readFileSync(file, 'utf8');
}

function parse(args: string[], positionals: number) {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { model: { type: 'string' }, file: { type: 'string' }, out: { type: 'string' }, chunk: { type: 'string' }, id: { type: 'string' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    throw new DatastoreUsageError((e as Error).message);
  }
  if (parsed.positionals.length !== positionals) throw new DatastoreUsageError(`expected ${positionals} folder argument(s), got ${parsed.positionals.length}`);
  const need = (k: 'model' | 'file' | 'out') => {
    const v = parsed.values[k];
    if (typeof v !== 'string' || v === '') throw new DatastoreUsageError(`--${k} is required`);
    return v;
  };
  return { values: parsed.values, positionals: parsed.positionals, need };
}

/** Runs `roost datastore <sub> ...`. */
export async function datastoreCommand(argv: string[], io: Io): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === 'build') {
    const { values, need } = parse(rest, 0);
    const model = io.resolveModel(need('model'));
    const file = need('file');
    const out = path.resolve(need('out'));
    const chunk = values.chunk === undefined ? DEFAULT_CHUNK_TOKENS : Number(values.chunk);
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > 4096) throw new DatastoreUsageError(`--chunk must be an integer from 1 to 4096 (got ${values.chunk})`);
    if (fs.existsSync(out)) throw new DatastoreUsageError(`--out: ${out} already exists (use \`roost datastore add\` to update it)`);
    const text = readCorpus(file);
    const tokenizer = loadTokenizer(model);
    const tmp = `${out}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    const started = Date.now();
    const ds = Datastore.create(tmp, { tokenizer, embedder: Embedder.load(), model: path.basename(model), vocabSize: tokenizer.vocabSize, chunkTokens: chunk });
    ds.add(values.id ?? path.basename(file), text);
    ds.compact();
    fs.renameSync(tmp, out);
    io.out(JSON.stringify({ datastore: out, documents: ds.documentCount, chunks: ds.chunkCount, chunk_tokens: chunk, seconds: (Date.now() - started) / 1000 }));
    return;
  }
  if (sub === 'add') {
    const { values, positionals, need } = parse(rest, 1);
    const dir = path.resolve(positionals[0]);
    const model = io.resolveModel(need('model'));
    const file = need('file');
    const text = readCorpus(file);
    const ds = Datastore.open(dir, loadTokenizer(model), Embedder.load());
    const id = values.id ?? path.basename(file);
    try {
      const chunks = ds.add(id, text);
      ds.compact();
      io.out(JSON.stringify({ datastore: dir, added: id, chunks, documents: ds.documentCount, total_chunks: ds.chunkCount }));
    } catch (e) {
      if (e instanceof DatastoreError) throw new DatastoreUsageError(e.message);
      throw e;
    }
    return;
  }
  throw new DatastoreUsageError(`unknown datastore command ${JSON.stringify(sub ?? '')}: use build or add`);
}

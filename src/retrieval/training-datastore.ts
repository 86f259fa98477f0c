// The datastore `npm start` serves: the shipped models' training text (the
// KJV from Genesis 1:1 up to, not including, James 1:1, as
// tools/train/data.py cuts it; the held-out part stays out), one document per
// book, built on first start when missing (docs/retrieval.md "npm start").
// The text comes from Debian's bible-kjv (`bible -f Gen1:1-Rev22:21`), the
// source the models were trained on; nothing is downloaded.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadTokenizer } from '../engine/tokenizer';
import { kjvTrainingText } from '../training-text';
import { Datastore } from './datastore';
import { Embedder } from './embedder';

/** Splits "Gen1:1 ...\nGen1:2 ...\nExo1:1 ..." into books by the name before the chapter number. */
export function books(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let start = 0;
  let name = '';
  for (let i = 0; i <= text.length; ) {
    const end = text.indexOf('\n', i);
    const line = text.slice(i, end < 0 ? text.length : end);
    const book = /^(\d?[A-Za-z]+)\d+:\d+ /.exec(line)?.[1] ?? name;
    if (book !== name && i > start) {
      out.push([name, text.slice(start, i)]);
      start = i;
    }
    name = book;
    if (end < 0) break;
    i = end + 1;
  }
  if (start < text.length) out.push([name, text.slice(start)]);
  return out;
}

/** Builds the datastore of the training text into `dir` (via dir.tmp-<pid>, renamed when whole), reporting books done. */
export function buildTrainingDatastore(
  model: string,
  dir: string,
  onProgress?: (done: number, total: number) => void,
): { documents: number; chunks: number; seconds: number } {
  const started = Date.now();
  const text = kjvTrainingText().toString('latin1');
  const tokenizer = loadTokenizer(model);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const ds = Datastore.create(tmp, { tokenizer, embedder: Embedder.load(), model: path.basename(model), vocabSize: tokenizer.vocabSize });
  const parts = books(text);
  parts.forEach(([id, body], i) => {
    ds.add(id, body);
    onProgress?.(i + 1, parts.length);
  });
  ds.compact();
  fs.renameSync(tmp, dir);
  return { documents: ds.documentCount, chunks: ds.chunkCount, seconds: (Date.now() - started) / 1000 };
}

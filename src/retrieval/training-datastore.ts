// The datastore `npm start` serves: the shipped models' training text (the
// KJV from Genesis 1:1 up to, not including, James 1:1, as
// tools/train/data.py cuts it; the held-out part stays out), one document per
// book, built on first start when missing (docs/retrieval.md "npm start").
// The text comes from Debian's bible-kjv (`bible -f Gen1:1-Rev22:21`), the
// source the models were trained on; nothing is downloaded.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadTokenizer } from '../engine/tokenizer';
import { Datastore } from './datastore';
import { Embedder } from './embedder';

/** tools/train/data.py: the whole KJV as `bible` prints it, and the first held-out line. */
export const KJV_BYTES = 4404412;
export const HELDOUT_FIRST_LINE = 'Jas1:1 ';

/** The training text (everything before "Jas1:1 "), or an Error saying how to get it. */
export function trainingText(): string {
  let all: Buffer;
  try {
    all = execFileSync('bible', ['-f', 'Gen1:1-Rev22:21'], { maxBuffer: 16 << 20 });
  } catch (e) {
    throw new Error(`the training text comes from Debian's bible-kjv: apt-get install bible-kjv bible-kjv-text (${(e as Error).message.split('\n')[0]})`);
  }
  if (all.length !== KJV_BYTES) throw new Error(`bible printed ${all.length} bytes, expected ${KJV_BYTES} (the text the models were trained on)`);
  const text = all.toString('utf8');
  return text.slice(0, text.indexOf('\n' + HELDOUT_FIRST_LINE) + 1);
}

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
  const text = trainingText();
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

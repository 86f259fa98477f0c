// A datastore stays consistent when the process updating it is killed
// (SIGKILL) at any moment: during a log append, during compaction, between
// them. Each round, a child process adds documents (compacting every third)
// and is killed after a random number of acknowledged adds plus a random
// delay; reopening must then succeed and show exactly a prefix d0..d(m-1) of
// the documents, every acknowledged one included, each whole.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { BYTES } from './http.helpers';
import { compileIfStale, ROOT } from './serve.helpers';

const DIST = path.join(ROOT, 'dist', 'src');

/** Document i: ~24 KB of text that names i in letters (words are [a-z]+), so a mix-up shows. */
const docText = (i: number) => {
  const tag = 'marker' + String(i).replace(/\d/g, (d) => 'abcdefghij'[Number(d)]);
  return Array.from({ length: 600 }, (_, j) => `${tag} line ${j} of the datastore.`).join('\n');
};

const CHILD = `
const [dir, first] = [process.argv[1], Number(process.argv[2])];
const { Datastore } = require(${JSON.stringify(path.join(DIST, 'retrieval', 'datastore.js'))});
const { Embedder } = require(${JSON.stringify(path.join(DIST, 'retrieval', 'embedder.js'))});
const { loadTokenizer } = require(${JSON.stringify(path.join(DIST, 'engine', 'tokenizer.js'))});
const docText = ${docText.toString()};
const ds = Datastore.open(dir, loadTokenizer(${JSON.stringify(BYTES)}), Embedder.load());
for (let i = first; ; i++) {
  ds.add('d' + i, docText(i));
  process.stdout.write('acked ' + i + '\\n');
  if (i % 3 === 2) ds.compact();
}
`;

beforeAll(compileIfStale, 120000);

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-kill-'));
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

test('SIGKILL during updates and compaction leaves a consistent datastore with every acknowledged document', async () => {
  const tokenizer = loadTokenizer(BYTES);
  const embedder = Embedder.load();
  const dir = path.join(base, 'ds');
  Datastore.create(dir, { tokenizer, embedder, model: 'gpt2-bytes', vocabSize: tokenizer.vocabSize, chunkTokens: 16 });
  let present = 0;
  const delays = [0, 3, 7, 15, 30, 60];
  for (let round = 0; round < delays.length; round++) {
    const acksWanted = 1 + (round % 3);
    const child = spawn(process.execPath, ['-e', CHILD, dir, String(present)], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    let acked = present - 1;
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    await new Promise<void>((resolve, reject) => {
      let seen = 0;
      child.stdout.on('data', (d: Buffer) => {
        for (const m of d.toString().matchAll(/acked (\d+)/g)) {
          acked = Number(m[1]);
          if (++seen === acksWanted) setTimeout(() => child.kill('SIGKILL'), delays[round]);
        }
      });
      child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${code}: ${stderr}`))));
    });
    const ds = Datastore.open(dir, tokenizer, embedder);
    const n = ds.documentCount;
    // A prefix of the documents, each acknowledged one in it (one more may have reached the log before the kill).
    expect(n).toBeGreaterThanOrEqual(acked + 1);
    expect(n).toBeLessThanOrEqual(acked + 2);
    const chunks = Math.ceil(Buffer.byteLength(docText(0)) / 16);
    expect(ds.chunkCount).toBe(Array.from({ length: n }, (_, i) => Math.ceil(Buffer.byteLength(docText(i)) / 16)).reduce((a, b) => a + b, 0));
    expect(chunks).toBeGreaterThan(1000);
    // Every document is whole (its chunks give back its text) and the last one is found by its words.
    for (let i = 0; i < n; i++) expect(ds.text(`d${i}`) === docText(i)).toBe(true);
    const tag = 'marker' + String(n - 1).replace(/\d/g, (d) => 'abcdefghij'[Number(d)]);
    // (The newest tag is the longest: no other document's chunk-cut word equals it.)
    const hits = ds.search(tag, 1000, 'bm25');
    expect([hits.length > 300, hits.every((h) => h.id.startsWith(`d${n - 1}#`))]).toEqual([true, true]);
    // No stray files of other generations stay behind.
    expect(fs.readdirSync(dir).filter((f) => !/^(manifest\.json|documents-\d+\.jsonl|dense-\d+\.usearch|wal-\d+\.jsonl)$/.test(f))).toEqual([]);
    present = n;
  }
});

// src/retrieval without a server: BM25 against hand-computed scores, the
// embedder against its Python definition, the write-ahead log's torn tail,
// a datastore's add / delete / reopen / corruption behaviour, and npm start's
// split of the training text into books.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Bm25Index } from '../src/retrieval/bm25';
import { Datastore, DatastoreError } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { books } from '../src/retrieval/training-datastore';
import { appendWal, readWal } from '../src/retrieval/wal';
import { BYTES } from './http.helpers';

const made: string[] = [];
const tmp = () => {
  made.push(fs.mkdtempSync(path.join(os.tmpdir(), 'roost-retrieval-')));
  return made[made.length - 1];
};
afterAll(() => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

test('BM25 scores equal the formula computed by hand', () => {
  const ix = new Bm25Index();
  ix.add(1, 'the lord is my shepherd');
  ix.add(2, 'the lord the lord');
  ix.add(3, 'green pastures');
  // N = 3, avgdl = (5 + 4 + 2) / 3; "shepherd": df 1; "lord": df 2.
  const avgdl = 11 / 3;
  const idf = (df: number) => Math.log(1 + (3 - df + 0.5) / (df + 0.5));
  const term = (tf: number, dl: number, df: number) => (idf(df) * tf * 2.2) / (tf + 1.2 * (0.25 + (0.75 * dl) / avgdl));
  const got = ix.search('Lord shepherd', 10);
  expect(got.map((r) => r.key)).toEqual([1, 2]);
  expect(got[0].score).toBeCloseTo(term(1, 5, 2) + term(1, 5, 1), 12);
  expect(got[1].score).toBeCloseTo(term(2, 4, 2), 12);
  ix.remove(1, 'the lord is my shepherd');
  expect(ix.search('shepherd', 10)).toEqual([]);
  expect(ix.size).toBe(2);
});

test('the embedder matches its Python definition (tools/reference/embedder_golden.py)', () => {
  // Goldens of the shipped models/embedder: rerun the script after retraining it.
  const e = Embedder.load();
  const a = e.embed('In the beginning God created the heaven and the earth.');
  const b = e.embed("Zerubbabel's qwxyz!");
  const want = [
    [-0.001567, 0.076908, 0.056324, 0.103596, 0.171176, -0.045108, 0.049231, 0.015941],
    [-0.0353, 0.069072, -0.068623, 0.013665, 0.215458, 0.210926, -0.071079, -0.169366],
  ];
  [a, b].forEach((v, i) => want[i].forEach((x, j) => expect(v[j]).toBeCloseTo(x, 5)));
  expect(Math.hypot(...a)).toBeCloseTo(1, 6);
});

test('a torn last log line is dropped and cut off; the records before it are kept', () => {
  const file = path.join(tmp(), 'wal.jsonl');
  appendWal(file, { op: 'add', id: 'a', text: 'x', metadata: null });
  appendWal(file, { op: 'delete', id: 'a' });
  const whole = fs.statSync(file).size;
  fs.appendFileSync(file, '0123456789abcdef {"op":"add","id":"b","te');
  expect(readWal(file)).toEqual([
    { op: 'add', id: 'a', text: 'x', metadata: null },
    { op: 'delete', id: 'a' },
  ]);
  expect(fs.statSync(file).size).toBe(whole);
  // A complete line whose checksum does not match is torn too.
  fs.appendFileSync(file, '0123456789abcdef {"op":"delete","id":"a"}\n');
  expect(readWal(file)).toHaveLength(2);
});

describe('datastore', () => {
  const tokenizer = loadTokenizer(BYTES);
  const embedder = Embedder.load();
  const create = (dir: string) => Datastore.create(dir, { tokenizer, embedder, model: 'gpt2-bytes', vocabSize: tokenizer.vocabSize, chunkTokens: 16 });

  test('chunks of chunk_tokens tokens; added documents are found by every mode; deleted ones never again; all survives reopening', () => {
    const dir = path.join(tmp(), 'ds');
    const ds = create(dir);
    expect(ds.add('shepherd', 'The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures.')).toBe(6); // 86 bytes / 16
    ds.add('flood', 'And the waters prevailed exceedingly upon the earth; and all the high hills were covered.');
    for (const mode of ['dense', 'bm25', 'hybrid'] as const) {
      const r = ds.search('he maketh me lie down in green pastures', 2, mode);
      expect(r[0].id.startsWith('shepherd#')).toBe(true);
    }
    expect(ds.search('prevailed waters', 1, 'bm25')[0]).toEqual({ id: 'flood#0', score: expect.any(Number), text: 'And the waters p' });
    expect(ds.delete('shepherd')).toBe(true);
    expect(ds.delete('shepherd')).toBe(false);
    for (const mode of ['dense', 'bm25', 'hybrid'] as const) {
      expect(ds.search('he maketh me lie down in green pastures', 20, mode).every((p) => p.id.startsWith('flood#'))).toBe(true);
    }
    // The updates are in the log only; reopening replays them.
    const again = Datastore.open(dir, tokenizer, embedder);
    expect(again.describe()).toMatchObject({ documents: 1, chunks: 6, pending_updates: 3 });
    expect(again.search('green pastures shepherd', 20, 'dense').every((p) => p.id.startsWith('flood#'))).toBe(true);
    again.compact();
    expect(fs.readdirSync(dir).sort()).toEqual(['dense-1.usearch', 'documents-1.jsonl', 'manifest.json']);
    const third = Datastore.open(dir, tokenizer, embedder);
    expect(third.describe()).toMatchObject({ documents: 1, chunks: 6, generation: 1, pending_updates: 0 });
    expect(third.search('prevailed waters', 1, 'hybrid')[0].id).toBe('flood#0');
    expect(() => third.add('flood', 'again')).toThrow('a document with id "flood" already exists');
  });

  test('a missing folder, a missing manifest and a corrupted index file are refused naming the file', () => {
    const root = tmp();
    expect(() => Datastore.open(path.join(root, 'nope'), tokenizer, embedder)).toThrow(`datastore directory ${path.join(root, 'nope')} does not exist`);
    expect(() => Datastore.open(root, tokenizer, embedder)).toThrow(`${root} is not a datastore: manifest.json is missing`);
    const dir = path.join(root, 'ds');
    create(dir).add('a', 'some text to index here and there');
    Datastore.open(dir, tokenizer, embedder).compact();
    const dense = path.join(dir, 'dense-1.usearch');
    const bytes = fs.readFileSync(dense);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(dense, bytes);
    expect(() => Datastore.open(dir, tokenizer, embedder)).toThrow(new DatastoreError(`${dense} is corrupted: its sha256 does not match ${path.join(dir, 'manifest.json')}`));
  });
});

test("npm start's training-text datastore: one document per book, nothing lost or reordered", () => {
  const text = 'Gen1:1 In the beginning\nGen50:26 So Joseph died\nExo1:1 Now these\n1Sa1:1 Now there was\n1Sa2:1 And Hannah\nHeb13:25 Grace be with you all. Amen.\n';
  const parts = books(text);
  expect(parts.map(([id]) => id)).toEqual(['Gen', 'Exo', '1Sa', 'Heb']);
  expect(parts.map(([, body]) => body).join('')).toBe(text);
  expect(parts[2]![1]).toBe('1Sa1:1 Now there was\n1Sa2:1 And Hannah\n');
});

// roost datastore build / add through bin/roost.js, and serve's --datastore flag parsing.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { BYTES } from './http.helpers';
import { compileIfStale, ROOT } from './serve.helpers';

const roost = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'roost.js'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120000 });

beforeAll(compileIfStale, 120000);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-ds-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('build then add: chunk counts, the folder opens with both documents; mistakes exit 2 naming the flag', () => {
  const corpus = path.join(tmp, 'genesis.txt');
  fs.writeFileSync(corpus, 'In the beginning God created the heaven and the earth.\n'.repeat(10)); // 550 bytes
  const more = path.join(tmp, 'exodus.txt');
  fs.writeFileSync(more, 'Now these are the names of the children of Israel.'); // 50 bytes
  const out = path.join(tmp, 'ds');
  const b = roost('datastore', 'build', '--model', BYTES, '--file', corpus, '--out', out, '--chunk', '32');
  expect(b.status).toBe(0);
  expect(JSON.parse(b.stdout)).toMatchObject({ datastore: out, documents: 1, chunks: 18, chunk_tokens: 32 });
  const a = roost('datastore', 'add', out, '--model', BYTES, '--file', more);
  expect([a.status, JSON.parse(a.stdout)]).toEqual([0, { datastore: out, added: 'exodus.txt', chunks: 2, documents: 2, total_chunks: 20 }]);
  const ds = Datastore.open(out, loadTokenizer(BYTES), Embedder.load());
  expect(ds.describe()).toMatchObject({ documents: 2, chunks: 20, chunk_tokens: 32, model: 'gpt2-bytes', pending_updates: 0 });
  expect(ds.search('Israel', 1, 'bm25')[0].id).toBe('exodus.txt#1'); // "hildren of Israel." after the first 32 bytes

  const again = roost('datastore', 'build', '--model', BYTES, '--file', corpus, '--out', out);
  expect([again.status, again.stderr]).toEqual([2, `roost datastore: --out: ${out} already exists (use \`roost datastore add\` to update it)\n`]);
  const twice = roost('datastore', 'add', out, '--model', BYTES, '--file', more);
  expect([twice.status, twice.stderr]).toEqual([2, 'roost datastore: a document with id "exodus.txt" already exists (delete it first)\n']);
  expect(roost('datastore', 'build', '--model', BYTES, '--out', path.join(tmp, 'x')).stderr).toBe('roost datastore: --file is required\n');
  expect(roost('datastore', 'build', '--model', BYTES, '--file', corpus, '--out', path.join(tmp, 'y'), '--chunk', '0').stderr).toBe(
    'roost datastore: --chunk must be an integer from 1 to 4096 (got 0)\n',
  );
  expect(roost('datastore', 'frobnicate').stderr).toBe("roost datastore: Unknown command 'frobnicate'\n(see roost datastore --help)\n");
  expect(roost('serve', '--model', BYTES, '--datastore', 'nodir').stderr).toBe('roost serve: --datastore must be NAME=DIR (got nodir)\n');
});

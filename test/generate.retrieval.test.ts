// roost generate --datastore on a model without live retrieval (gpt2): the
// passages go before the prompt exactly as for the server's `retrieval` field
// (src/retrieval/retro.ts completionRetrieval), so the same seed gives the
// server's text. (A retro model: test/retro.serve-cli.test.ts.)
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import type { RunningServer } from '../src/server';
import { BYTES, post, start } from './http.helpers';
import { compileIfStale, ROOT } from './serve.helpers';
import { writeDatastore } from './datastore.helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-generate-retrieval-'));
const STORE = path.join(tmp, 'psalms');
let s: RunningServer;
beforeAll(async () => {
  compileIfStale();
  const tokenizer = loadTokenizer(BYTES);
  writeDatastore(STORE, { tokenizer, embedder: Embedder.load(), model: 'gpt2-bytes', vocabSize: tokenizer.vocabSize, chunkTokens: 8 }, [
    ['psalm', 'The LORD is my shepherd; I shall not want.'],
    ['flood', 'And the waters prevailed upon the earth.'],
  ]);
  s = await start(BYTES, { datastores: { psalms: STORE } });
}, 120000);
afterAll(async () => {
  await s?.close(0);
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('the same seed gives the server\'s text, with the passages the server lays before the prompt', async () => {
  // gpt2-bytes has 64 positions: 2 passages of 8 bytes + separators, the prompt, 12 tokens.
  const prompt = 'the waters';
  const r = await post(s.url, { prompt, max_tokens: 12, temperature: 0.9, seed: 77, retrieval: { datastore: 'psalms', k: 2, mode: 'bm25' } });
  expect(r.status).toBe(200);
  const passages = Datastore.open(STORE, loadTokenizer(BYTES), Embedder.load()).search(prompt, 2, 'bm25');
  expect(passages).toHaveLength(2);
  expect(r.json.choices[0].retrieved).toEqual(passages);
  const roost = (...extra: string[]) =>
    spawnSync(
      process.execPath,
      [path.join(ROOT, 'bin', 'roost.js'), 'generate', '--model', BYTES, '--device', 'cpu', '--prompt', prompt, '--max-tokens', '12', '--temperature', '0.9', '--seed', '77', ...extra],
      { cwd: ROOT, encoding: 'utf8', timeout: 60000 },
    );
  const cli = roost('--datastore', STORE, '--retrieval-k', '2', '--retrieval-mode', 'bm25');
  expect([cli.status, cli.stderr]).toEqual([0, '']);
  expect(cli.stdout).toBe(r.json.choices[0].text);
  // Without the passages the model reads another context: other text.
  expect(roost().stdout).not.toBe(r.json.choices[0].text);
  const bad = roost('--datastore', STORE, '--retrieval-mode', 'fuzzy');
  expect([bad.status, bad.stderr]).toEqual([2, 'roost generate: --retrieval-mode must be "dense", "bm25" or "hybrid" (got "fuzzy")\n']);
});

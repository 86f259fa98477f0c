// The shipped RETRO (models/retro: m 64, k 2, bytes) served with live
// retrieval: a streamed completion of 512 tokens crosses 8 chunk boundaries,
// retrieves at each (listed per chunk in `retrieved`, each the datastore's
// search for that chunk's text), and gives the same text as `roost generate
// --datastore` with the same seed. The datastore is built here from Genesis and
// Exodus of the models' training text (6,065 chunks of 64 bytes, about 5 s)
// rather than the whole of it (66,903 chunks), to keep the run short.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { books } from '../src/retrieval/training-datastore';
import type { RunningServer } from '../src/server';
import { kjvTrainingText } from '../src/training-text';
import { postStream, start } from './http.helpers';
import { compileIfStale, ROOT } from './serve.helpers';
import { writeDatastore } from './datastore.helpers';

const MODEL = path.join(ROOT, 'models', 'retro');
const tokenizer = loadTokenizer(MODEL);
const embedder = Embedder.load();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-retro-serve-cli-'));
const STORE = path.join(tmp, 'kjv');
const M = 64;
const K = 2;
// 35 bytes: with 511 of the 512 sampled tokens fed, 546 positions, chunks 0..7 complete (8 x 64 = 512 <= 546 < 576).
const prompt = 'And God said, Let the waters bring';
const request = { prompt, max_tokens: 512, temperature: 0.8, seed: 2024, stream: true, retrieval: { datastore: 'kjv' } };

let s: RunningServer;
beforeAll(async () => {
  compileIfStale();
  writeDatastore(STORE, { tokenizer, embedder, model: 'retro', vocabSize: tokenizer.vocabSize, chunkTokens: M }, books(kjvTrainingText().toString('latin1')).slice(0, 2));
  s = await start(MODEL, { datastores: { kjv: STORE } });
}, 180000);
afterAll(async () => {
  await s?.close(0);
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('512 streamed tokens: 8 chunks retrieved in order, each the search of its chunk, and the CLI gives the same text', async () => {
  const st = await postStream(s.url, request);
  expect(st.status).toBe(200);
  const events = st.events.filter((e) => e !== '[DONE]');
  const text = events.map((e) => e.choices[0].text).join('');
  expect(events[events.length - 1].choices[0].finish_reason).toBe('length');
  // The model writes ASCII (its training text is): one byte, one token.
  const ids = [...Buffer.from(prompt + text, 'latin1')];
  expect(ids.length).toBe(prompt.length + 512);
  expect(tokenizer.decode(ids)).toBe(prompt + text);

  const retrieved = events.flatMap((e) => e.choices[0].retrieved);
  expect(retrieved.map((x: { chunk: number }) => x.chunk)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  // Chunk u completes with the sampled token at position (u + 1) * 64 - 1; its entries ride on the next token's event.
  let sent = 0;
  const at: number[] = [];
  for (const e of events) {
    sent += e.choices[0].text.length;
    for (const _ of e.choices[0].retrieved) at.push(sent);
  }
  expect(at).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((u) => (u + 1) * M - prompt.length + 1));
  const store = Datastore.open(STORE, tokenizer, embedder);
  retrieved.forEach((x: { chunk: number; passages: unknown[] }, u: number) => {
    expect(x.passages).toHaveLength(K);
    expect(x.passages).toEqual(store.search(tokenizer.decode(ids.slice(u * M, (u + 1) * M)), K, 'hybrid'));
  });

  const cli = spawnSync(
    process.execPath,
    [path.join(ROOT, 'bin', 'roost.js'), 'generate', '--model', MODEL, '--device', 'cpu', '--prompt', prompt, '--max-tokens', '512', '--temperature', '0.8', '--seed', '2024', '--datastore', STORE],
    { cwd: ROOT, encoding: 'latin1', timeout: 120000 },
  );
  expect(cli.stderr).toBe('');
  expect(cli.status).toBe(0);
  expect(cli.stdout).toBe(text);
  // Without --datastore the same seed gives other text: the neighbours are read.
  const plain = spawnSync(
    process.execPath,
    [path.join(ROOT, 'bin', 'roost.js'), 'generate', '--model', MODEL, '--device', 'cpu', '--prompt', prompt, '--max-tokens', '512', '--temperature', '0.8', '--seed', '2024'],
    { cwd: ROOT, encoding: 'latin1', timeout: 120000 },
  );
  expect(plain.status).toBe(0);
  expect(plain.stdout).not.toBe(text);
}, 180000);

test('roost generate --datastore refuses a datastore of other chunks and a retrieval.k other than the model\'s, naming the flag', () => {
  const roost = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(ROOT, 'bin', 'roost.js'), 'generate', '--model', MODEL, '--device', 'cpu', '--prompt', 'x', '--max-tokens', '1', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
  const k3 = roost('--datastore', STORE, '--retrieval-k', '3');
  expect([k3.status, k3.stderr]).toEqual([2, 'roost generate: --retrieval-k must be 2 for model retro (got 3): a retro model reads exactly its num_neighbours neighbours per chunk; leave k out to use it\n']);
  const modeOnly = roost('--retrieval-mode', 'bm25');
  expect([modeOnly.status, modeOnly.stderr]).toEqual([2, 'roost generate: --retrieval-mode needs --datastore\n']);
  const wrong = path.join(tmp, 'chunks16');
  writeDatastore(wrong, { tokenizer, embedder, model: 'retro', vocabSize: tokenizer.vocabSize, chunkTokens: 16 }, [
    ['psalm', 'The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures.'],
  ]);
  const cut = roost('--datastore', wrong);
  expect([cut.status, cut.stderr]).toEqual([
    2,
    'roost generate: --datastore: datastore "chunks16" has chunks of 16 tokens; this retro model\'s chunk size is 64 (build it with that chunk size)\n',
  ]);
  const missing = roost('--datastore', path.join(tmp, 'none'));
  expect(missing.status).toBe(2);
  expect(missing.stderr).toContain(`roost generate: --datastore: `);
  expect(missing.stderr).toContain(path.join(tmp, 'none'));
});

// RETRO's live retrieval over the WebSocket (/v1/stream), the same path as
// POST /v1/completions (src/retrieval/retro.ts completionRetrieval): on the
// shipped RETRO (models/retro: m 64, k 2, bytes) a streamed completion gives
// the same tokens as the HTTP stream with the same seed, and each chunk's
// neighbours ride on the same token's event as on HTTP (`retrieved`, JSON and
// protobuf frames alike); a bad retrieval.k is the same error. The datastore is
// Genesis of the models' training text, built as test/retro.serve-cli.test.ts
// builds its own (there from Genesis and Exodus).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { books } from '../src/retrieval/training-datastore';
import type { RunningServer } from '../src/server';
import { kjvTrainingText } from '../src/training-text';
import { decodeServerBinary, encodeBinary, type ServerEvent } from '../src/ws/frames';
import { post, postStream, start } from './http.helpers';
import { compileIfStale, ROOT } from './serve.helpers';
import { Client } from './ws.helpers';
import { writeDatastore } from './datastore.helpers';

const MODEL = path.join(ROOT, 'models', 'retro');
const tokenizer = loadTokenizer(MODEL);
const embedder = Embedder.load();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-retro-ws-'));
const STORE = path.join(tmp, 'genesis');
const M = 64;
const K = 2;
// 34 bytes and 200 sampled tokens, 199 of them fed: 233 positions, chunks 0..2 complete (3 x 64 <= 233 < 4 x 64).
const prompt = 'And God said, Let the waters bring';
// eos (256) banned: every token is one ASCII byte, so each HTTP chunk is one token.
const sampling = { prompt, max_tokens: 200, temperature: 0.8, seed: 77, logit_bias: { '256': -100 }, retrieval: { datastore: 'genesis' } };

let s: RunningServer;
beforeAll(async () => {
  compileIfStale();
  writeDatastore(STORE, { tokenizer, embedder, model: 'retro', vocabSize: tokenizer.vocabSize, chunkTokens: M }, books(kjvTrainingText().toString('latin1')).slice(0, 1));
  s = await start(MODEL, { datastores: { genesis: STORE } });
}, 180000);
afterAll(async () => {
  await s?.close(0);
  fs.rmSync(tmp, { recursive: true, force: true });
});

type Token = Extract<ServerEvent, { type: 'token' }>;

test('JSON and protobuf: the same tokens as the HTTP stream, each chunk\'s neighbours on the same token\'s event', async () => {
  const st = await postStream(s.url, { ...sampling, stream: true });
  expect(st.status).toBe(200);
  const chunks = st.events.filter((e) => e !== '[DONE]').map((e) => e.choices[0]);
  const last = chunks.pop();
  expect([last.text, last.finish_reason, last.retrieved]).toEqual(['', 'length', []]);
  expect(chunks).toHaveLength(200);
  const httpRetrieved = chunks.flatMap((c) => c.retrieved);
  expect(httpRetrieved.map((x: { chunk: number }) => x.chunk)).toEqual([0, 1, 2]);
  // Each chunk's neighbours are its text's search (as test/retro.serve-cli.test.ts checks at length).
  const ids = [...Buffer.from(prompt + chunks.map((c) => c.text).join(''), 'latin1')];
  const store = Datastore.open(STORE, tokenizer, embedder);
  httpRetrieved.forEach((x: { passages: unknown[] }, u: number) => {
    expect(x.passages).toHaveLength(K);
    expect(x.passages).toEqual(store.search(tokenizer.decode(ids.slice(u * M, (u + 1) * M)), K, 'hybrid'));
  });

  const c = new Client(s.url);
  await c.open();
  c.sendJson({ type: 'request', id: 'j', ...sampling });
  c.sendProto({ type: 'request', id: 'p', ...sampling });
  const done = {
    j: await c.until((e) => e.type === 'done' && e.id === 'j', 60000),
    p: await c.until((e) => e.type === 'done' && e.id === 'p', 60000),
  };
  c.close();
  for (const id of ['j', 'p'] as const) {
    const tokens = c.of(id).filter((e) => e.type === 'token') as Token[];
    // Token by token: HTTP's chunk i is event i, with the same text and the same chunks retrieved (none: no field).
    expect(tokens.map((t) => [t.text, t.retrieved ?? []])).toEqual(chunks.map((x) => [x.text, x.retrieved]));
    expect(tokens.map((t) => t.token)).toEqual(ids.slice(prompt.length));
    expect(done[id]).toEqual({ type: 'done', id, finish_reason: 'length', usage: { prompt_tokens: 34, completion_tokens: 200, total_tokens: 234 } });
  }
  // The protobuf events are the JSON ones, log-probs included.
  const fields = (id: string) => (c.of(id).filter((e) => e.type === 'token') as Token[]).map((t) => [t.text, t.token, t.logprob, t.retrieved]);
  expect(fields('p')).toEqual(fields('j'));
}, 120000);

test('retrieval.k other than num_neighbours: the same invalid_parameter over the WebSocket as over HTTP', async () => {
  const bad = { ...sampling, retrieval: { datastore: 'genesis', k: 3 } };
  const http = await post(s.url, bad);
  expect(http.status).toBe(400);
  const message = 'retrieval.k must be 2 for model retro (got 3): a retro model reads exactly its num_neighbours neighbours per chunk; leave k out to use it';
  expect(http.json.error).toEqual({ message, type: 'invalid_request_error', param: 'retrieval.k', code: 'invalid_parameter' });
  const c = new Client(s.url);
  await c.open();
  c.sendJson({ type: 'request', id: 'j', ...bad });
  c.sendProto({ type: 'request', id: 'p', ...bad });
  for (const id of ['j', 'p']) {
    expect(await c.until((e) => e.type === 'error' && e.id === id)).toEqual({ type: 'error', id, message, code: 'invalid_parameter', param: 'retrieval.k' });
  }
  expect(c.events).toHaveLength(2); // nothing was started
  c.close();
});

test('protobuf: a done event\'s per-chunk entries (retrieved_chunks on the wire) read back as the JSON form\'s retrieved', () => {
  // Chunks retrieved after the last token event (e.g. a prompt-only run) ride on the done event.
  const passages = [{ id: 'genesis#3', score: 0.5, text: 'In the beginning' }];
  const usage = { prompt_tokens: 130, completion_tokens: 0, total_tokens: 130 };
  const retro: ServerEvent = { type: 'done', id: 'r', finish_reason: 'length', usage, retrieved: [{ chunk: 0, passages }, { chunk: 1, passages: [] }] };
  expect(decodeServerBinary(encodeBinary(retro))).toEqual(retro);
  // In-context passages stay in DoneEvent.retrieved.
  const inContext: ServerEvent = { type: 'done', id: 'c', finish_reason: 'stop', usage, retrieved: passages };
  expect(decodeServerBinary(encodeBinary(inContext))).toEqual(inContext);
  const token: ServerEvent = { type: 'token', id: 't', text: 'x', token: 120, logprob: -0.25, retrieved: [{ chunk: 2, passages }] };
  expect(decodeServerBinary(encodeBinary(token))).toEqual({ ...token, top_logprobs: {} });
});

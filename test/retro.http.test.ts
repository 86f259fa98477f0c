// RETRO served with live retrieval (src/retrieval/retro.ts): every chunk a
// sequence completes, in prefill or decode, retrieves its k neighbours from the
// served datastore; the response lists them per chunk (`retrieved`), and the
// log-probs equal scoring the same tokens with those neighbours fixed (the
// reference-checked path of test/retro.test.ts). Model: test/fixtures/retro/chunk8
// (m 8, k 2, bytes), so the datastore cuts chunks of 8 tokens.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { load, runtime } from '../src/cli/model';
import { scoreTokens } from '../src/engine/scoring';
import { loadTokenizer } from '../src/engine/tokenizer';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import type { RunningServer } from '../src/server';
import { post, postStream, start } from './http.helpers';
import { writeDatastore } from './datastore.helpers';

const MODEL = path.join(__dirname, 'fixtures', 'retro', 'chunk8');
const tokenizer = loadTokenizer(MODEL);
const embedder = Embedder.load();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-retro-http-'));
const STORE = path.join(root, 'bible');
const WRONG = path.join(root, 'chunks16');
const TEXTS = {
  psalm: 'The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he leadeth me beside the still waters.',
  flood: 'And the waters prevailed exceedingly upon the earth; and all the high hills, that were under the whole heaven, were covered.',
  light: 'And God said, Let there be light: and there was light. And God saw the light, that it was good.',
};
const M = 8;
const K = 2;

let s: RunningServer;
beforeAll(async () => {
  for (const [dir, chunk] of [[STORE, M], [WRONG, 16]] as const) {
    writeDatastore(dir, { tokenizer, embedder, model: 'retro-chunk8', vocabSize: tokenizer.vocabSize, chunkTokens: chunk }, Object.entries(TEXTS));
  }
  // A chat template that is the last message itself: a chat request is then its completion.
  fs.writeFileSync(path.join(root, 'last.jinja'), "{{ messages[-1]['content'] }}");
  s = await start(MODEL, { datastores: { bible: STORE, chunks16: WRONG }, chatTemplate: path.join(root, 'last.jinja') });
});
afterAll(() => s.close(0));

const prompt = 'And the waters of the LORD';
const body = { prompt, max_tokens: 30, temperature: 0, echo: true, logprobs: 0, retrieval: { datastore: 'bible', k: K, mode: 'bm25' } };

test('each completed chunk retrieves once, in order, and the log-probs are those of scoring with the same neighbours', async () => {
  const r = await post(s.url, body);
  expect(r.status).toBe(200);
  const c = r.json.choices[0];
  const ids: number[] = [...tokenizer.encode(prompt), ...tokenizer.encode(c.text.slice(prompt.length))];
  expect(ids).toHaveLength(tokenizer.encode(prompt).length + 30);
  // Fed: the prompt and every sampled token but the last.
  const fed = ids.length - 1;
  expect(c.retrieved.map((x: any) => x.chunk)).toEqual(Array.from({ length: Math.floor(fed / M) }, (_, u) => u));
  const store = Datastore.open(STORE, tokenizer, embedder);
  const neighbours = c.retrieved.map((x: any, u: number) => {
    const want = store.search(tokenizer.decode(ids.slice(u * M, (u + 1) * M)), K, 'bm25');
    expect(x.passages).toEqual(want); // return_passages defaults to true: id, score and text
    return want.length < K ? null : want.flatMap((p) => store.neighbourTokens(p.id, 2 * M)); // fewer than k: no CCA term
  });
  const l = await load({ model: MODEL, device: 'cpu', threads: 1 });
  const fixed = await scoreTokens(runtime(l, ids.length), ids, undefined, neighbours);
  const served: number[] = c.logprobs.token_logprobs;
  for (let t = 1; t < ids.length; t++) expect(Math.abs(served[t] - fixed[t]!)).toBeLessThanOrEqual(1e-5);
  // Without retrieval the same tokens score differently (the neighbours are used).
  const none = await scoreTokens(runtime(l, ids.length), ids);
  expect(Math.max(...ids.slice(1).map((_, t) => Math.abs(none[t + 1]! - fixed[t + 1]!)))).toBeGreaterThan(1e-3);
});

test('a stream carries each chunk\'s neighbours as they are retrieved, the same as the whole answer', async () => {
  const whole = await post(s.url, body);
  const st = await postStream(s.url, body);
  expect(st.status).toBe(200);
  const chunks = st.events.filter((e) => e !== '[DONE]');
  expect(chunks.map((e) => e.choices[0].text).join('')).toBe(whole.json.choices[0].text);
  expect(chunks.flatMap((e) => e.choices[0].retrieved)).toEqual(whole.json.choices[0].retrieved);
  expect(chunks.filter((e) => e.choices[0].retrieved.length > 0).length).toBeGreaterThan(2);
});

test('a chat request retrieves per chunk as its completion does, whole and streamed', async () => {
  const { echo: _e, logprobs: _l, prompt: _p, ...rest } = body;
  const completion = await post(s.url, { ...rest, prompt });
  const chat = await post(s.url + '/v1/chat/completions', { ...rest, messages: [{ role: 'user', content: prompt }] });
  expect(chat.status).toBe(200);
  expect(chat.json.choices[0].message.content).toBe(completion.json.choices[0].text);
  expect(chat.json.choices[0].retrieved).toEqual(completion.json.choices[0].retrieved);
  expect(chat.json.choices[0].retrieved.length).toBeGreaterThan(2);
  const st = await postStream(s.url + '/v1/chat/completions', { ...rest, messages: [{ role: 'user', content: prompt }] });
  const chunks = st.events.filter((e) => e !== '[DONE]');
  expect(chunks.flatMap((e) => e.choices[0].retrieved)).toEqual(chat.json.choices[0].retrieved);
});

test('a datastore cut in other chunks than the model\'s is refused by name', async () => {
  const r = await post(s.url, { ...body, retrieval: { datastore: 'chunks16', k: K, mode: 'bm25' } });
  expect(r.status).toBe(400);
  expect(r.json.error.message).toBe('datastore "chunks16" has chunks of 16 tokens; this retro model\'s chunk size is 8 (build it with that chunk size)');
});

test('retrieval.k: left out it is the model\'s num_neighbours; given, it must be that number, else refused naming it', async () => {
  const { k: _k, ...noK } = body.retrieval;
  const left = await post(s.url, { ...body, retrieval: noK });
  const given = await post(s.url, body);
  expect([left.status, given.status]).toEqual([200, 200]);
  expect(left.json.choices[0].retrieved).toEqual(given.json.choices[0].retrieved);
  // BM25 finds fewer than k for a chunk without a shared word; never more.
  expect(Math.max(...left.json.choices[0].retrieved.map((x: any) => x.passages.length))).toBe(K);
  for (const k of [1, 3, 64]) {
    const r = await post(s.url, { ...body, retrieval: { ...body.retrieval, k } });
    expect([r.status, r.json.error]).toEqual([
      400,
      {
        message: `retrieval.k must be 2 for model chunk8 (got ${k}): a retro model reads exactly its num_neighbours neighbours per chunk; leave k out to use it`,
        type: 'invalid_request_error',
        param: 'retrieval.k',
        code: 'invalid_parameter',
      },
    ]);
  }
});

// In-context retrieval over HTTP and the WebSocket, datastore updates while
// serving, and bad datastore requests answered with catalogue errors while
// the server keeps serving. Model: the byte-level fixture (context 64), so
// datastores here cut chunks of 16 tokens.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WebSocket } from 'ws';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { passageBlock } from '../src/retrieval/in-context';
import type { RunningServer } from '../src/server';
import { decodeServerBinary, encodeClientBinary } from '../src/ws/frames';
import { BYTES, post, postStream, start } from './http.helpers';
import { writeDatastore } from './datastore.helpers';

const tokenizer = loadTokenizer(BYTES);
const embedder = Embedder.load();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-retrieval-http-'));
const BIBLE = path.join(root, 'bible');
const BROKEN = path.join(root, 'broken');
// A chat template short enough for the fixture's 64-token context: "u:<content>\n...a:".
const TEMPLATE = path.join(root, 'short.jinja');
const TEXTS: Record<string, string> = {
  psalm: 'The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he leadeth me beside the still waters.',
  flood: 'And the waters prevailed exceedingly upon the earth; and all the high hills, that were under the whole heaven, were covered.',
  light: 'And God said, Let there be light: and there was light. And God saw the light, that it was good.',
};

let s: RunningServer;
/** A second handle on the served folder, to compute what the server should retrieve. */
const expected = (query: string, k: number, mode: 'dense' | 'bm25' | 'hybrid') => Datastore.open(BIBLE, tokenizer, embedder).search(query, k, mode);

beforeAll(async () => {
  const options = { tokenizer, embedder, model: 'gpt2-bytes', vocabSize: tokenizer.vocabSize, chunkTokens: 16 };
  writeDatastore(BIBLE, options, Object.entries(TEXTS));
  writeDatastore(BROKEN, options, [['x', TEXTS.light]]);
  const documents = path.join(BROKEN, 'documents-1.jsonl');
  fs.writeFileSync(documents, fs.readFileSync(documents, 'utf8').replace('light', 'night'));
  fs.writeFileSync(TEMPLATE, "{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}a:");
  s = await start(BYTES, { datastores: { bible: BIBLE, gone: path.join(root, 'no-such-dir'), broken: BROKEN }, chatTemplate: TEMPLATE });
});
afterAll(async () => {
  await s.close(0);
  fs.rmSync(root, { recursive: true, force: true });
});

const complete = (body: Record<string, unknown>) => post(s.url, { max_tokens: 4, temperature: 0, ...body });

test('the passages go before the prompt in the documented layout, count as prompt tokens, and come back per choice', async () => {
  const prompt = 'the waters';
  const want = expected(prompt, 2, 'bm25');
  expect(want).toHaveLength(2);
  const r = await complete({ prompt, retrieval: { datastore: 'bible', k: 2, mode: 'bm25' } });
  expect(r.status).toBe(200);
  expect(r.json.choices[0].retrieved).toEqual(want);
  const augmented = passageBlock(want) + prompt;
  expect(augmented).toBe(`${want[1].text}\n\n${want[0].text}\n\n${prompt}`);
  expect(r.json.usage.prompt_tokens).toBe(tokenizer.encode(augmented).length);
  // Greedy: the same text as sending the laid-out prompt by hand.
  const plain = await complete({ prompt: augmented });
  expect(r.json.choices[0].text).toBe(plain.json.choices[0].text);
  // Token-id prompts get the passages' ids before them.
  const ids = await complete({ prompt: tokenizer.encode(prompt), retrieval: { datastore: 'bible', k: 2, mode: 'bm25' } });
  expect(ids.json.choices[0].text).toBe(plain.json.choices[0].text);
});

test('every mode; return_passages false leaves the text out; each prompt of a batch has its own passages', async () => {
  for (const mode of ['dense', 'hybrid'] as const) {
    const r = await complete({ prompt: 'waters prevailed upon the earth', retrieval: { datastore: 'bible', k: 1, mode } });
    expect(r.json.choices[0].retrieved).toEqual(expected('waters prevailed upon the earth', 1, mode));
  }
  const r = await complete({ prompt: ['let there be light', 'the high hills'], n: 2, retrieval: { datastore: 'bible', k: 1, mode: 'bm25', return_passages: false } });
  const ids = r.json.choices.map((c: any) => [c.index, c.retrieved.map((p: any) => Object.keys(p).sort().join(',') + ':' + p.id)]);
  const a = expected('let there be light', 1, 'bm25')[0].id;
  const b = expected('the high hills', 1, 'bm25')[0].id;
  expect(ids).toEqual([
    [0, [`id,score:${a}`]],
    [1, [`id,score:${a}`]],
    [2, [`id,score:${b}`]],
    [3, [`id,score:${b}`]],
  ]);
});

test('a stream carries each choice\'s passages on its first chunk', async () => {
  const r = await postStream(s.url, { prompt: 'still waters', max_tokens: 3, temperature: 0, retrieval: { datastore: 'bible', k: 1, mode: 'bm25' } });
  const chunks = r.events.filter((e) => e !== '[DONE]');
  expect(chunks[0].choices[0].retrieved).toEqual(expected('still waters', 1, 'bm25'));
  expect(chunks.slice(1).every((e) => e.choices[0].retrieved === undefined)).toBe(true);
});

/** Sends one message on a new WebSocket (a protobuf frame when `binary`) and returns its done (or error) event. */
async function doneEvent(msg: Record<string, unknown>, binary: boolean): Promise<any> {
  const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
  await new Promise((r) => ws.once('open', r));
  const done = new Promise<any>((resolve) =>
    ws.on('message', (d: Buffer, isBinary: boolean) => {
      const e = isBinary ? decodeServerBinary(d) : JSON.parse(d.toString());
      if (e.type === 'done' || e.type === 'error') resolve(e);
    }),
  );
  ws.send(binary ? encodeClientBinary(msg) : JSON.stringify(msg));
  const e = await done;
  ws.close();
  return e;
}

test('the WebSocket done event carries the passages (JSON and protobuf frames)', async () => {
  for (const binary of [false, true]) {
    const e = await doneEvent({ type: 'request', id: 'r1', prompt: 'the waters', max_tokens: 2, temperature: 0, retrieval: { datastore: 'bible', k: 2, mode: 'bm25' } }, binary);
    expect(e.type).toBe('done');
    const want = expected('the waters', 2, 'bm25');
    expect(e.retrieved).toEqual(want);
    expect(e.usage.prompt_tokens).toBe(tokenizer.encode(passageBlock(want) + 'the waters').length);
  }
});

const chatMessages = [
  { role: 'user', content: 'waters prevailed' },
  { role: 'assistant', content: 'ok' },
  { role: 'user', content: 'light' },
];
const renderedText = 'u:waters prevailed\na:ok\nu:light\na:';

test('chat: the passages of the last user message go before the rendered prompt, and come back per choice', async () => {
  const retrieval = { datastore: 'bible', k: 1, mode: 'bm25' };
  const want = expected('light', 1, 'bm25');
  // The whole rendered prompt would retrieve another passage: the query is the last user message.
  expect(expected(renderedText, 1, 'bm25')[0].id).not.toBe(want[0].id);
  const chat = await post(s.url + '/v1/chat/completions', { messages: chatMessages, max_tokens: 2, temperature: 0, n: 2, retrieval });
  expect([chat.status, chat.json.error?.message]).toEqual([200, undefined]);
  expect(chat.json.choices.map((c: any) => c.retrieved)).toEqual([want, want]);
  const rendered = (await post(s.url + '/tokenize', { messages: chatMessages })).json.tokens as number[];
  expect(rendered).toEqual(tokenizer.encode(renderedText));
  const block = tokenizer.encode(passageBlock(want));
  expect(chat.json.usage.prompt_tokens).toBe(block.length + rendered.length);
  // Greedy: the completion of the passages' ids then the rendered messages'.
  const plain = await complete({ prompt: [...block, ...rendered], max_tokens: 2 });
  expect(chat.json.choices[0].message.content).toBe(plain.json.choices[0].text);

  const stream = await postStream(s.url + '/v1/chat/completions', { messages: chatMessages, max_tokens: 2, temperature: 0, stream: true, retrieval });
  const chunks = stream.events.filter((e) => e !== '[DONE]');
  expect(chunks[0].choices[0].delta.role).toBe('assistant');
  expect(chunks[0].choices[0].retrieved).toEqual(want);
  expect(chunks.slice(1).every((e) => e.choices[0].retrieved === undefined)).toBe(true);

  const unknown = await post(s.url + '/v1/chat/completions', { messages: chatMessages, retrieval: { datastore: 'nope' } });
  expect([unknown.status, unknown.json.error.code, unknown.json.error.param]).toEqual([404, 'datastore_not_found', 'retrieval.datastore']);
});

test('chat over the WebSocket: the done event carries the passages (JSON and protobuf frames)', async () => {
  const want = expected('light', 1, 'bm25');
  const rendered = (await post(s.url + '/tokenize', { messages: chatMessages })).json.tokens as number[];
  for (const binary of [false, true]) {
    const e = await doneEvent({ type: 'chat', id: 'c1', messages: chatMessages, max_tokens: 2, temperature: 0, retrieval: { datastore: 'bible', k: 1, mode: 'bm25' } }, binary);
    expect(e.type).toBe('done');
    expect(e.retrieved).toEqual(want);
    expect(e.usage.prompt_tokens).toBe(tokenizer.encode(passageBlock(want)).length + rendered.length);
  }
});

test('a document added is retrieved by the next request; one deleted never again; GET /v1/datastores counts them', async () => {
  const text = 'Zerubbabel builded the house of the LORD with cedar and fir trees from Lebanon.';
  const add = await fetch(`${s.url}/v1/datastores/bible/documents`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'zerub', text, metadata: { book: 'none' } }) });
  expect(add.status).toBe(200);
  expect(await add.json()).toEqual({ object: 'datastore.document', datastore: 'bible', id: 'zerub', chunks: 5 });
  for (const mode of ['dense', 'bm25', 'hybrid']) {
    const r = await complete({ prompt: 'Zerubbabel cedar Lebanon', retrieval: { datastore: 'bible', k: 1, mode } });
    expect(r.json.choices[0].retrieved[0].id).toMatch(/^zerub#/);
  }
  const list = await (await fetch(`${s.url}/v1/datastores`)).json();
  expect(list.data.find((d: any) => d.name === 'bible')).toMatchObject({ status: 'ready', documents: 4, pending_updates: 1 });
  expect(list.data.find((d: any) => d.name === 'gone')).toMatchObject({ status: 'unavailable', error: `datastore directory ${path.join(root, 'no-such-dir')} does not exist` });

  const del = await fetch(`${s.url}/v1/datastores/bible/documents/zerub`, { method: 'DELETE' });
  expect(await del.json()).toEqual({ object: 'datastore.document', datastore: 'bible', id: 'zerub', deleted: true });
  for (const mode of ['dense', 'bm25', 'hybrid']) {
    const r = await complete({ prompt: 'Zerubbabel cedar Lebanon', max_tokens: 1, retrieval: { datastore: 'bible', k: 2, mode } });
    expect(r.json.choices[0].retrieved).toHaveLength(mode === 'bm25' ? 0 : 2);
    expect(r.json.choices[0].retrieved.some((p: any) => p.id.startsWith('zerub#'))).toBe(false);
  }
  const again = await fetch(`${s.url}/v1/datastores/bible/documents/zerub`, { method: 'DELETE' });
  expect(again.status).toBe(404);
  expect((await again.json()).error).toEqual({ message: 'datastore "bible" has no document "zerub"', type: 'not_found_error', param: 'id', code: 'document_not_found' });
  // The update is on disk: a fresh open sees the same documents.
  expect(Datastore.open(BIBLE, tokenizer, embedder).describe()).toMatchObject({ documents: 3, pending_updates: 2 });
});

test('bad datastore requests get catalogue errors, and the server keeps serving', async () => {
  const cases: Array<[Record<string, unknown>, number, string, string | null, string]> = [
    [{ datastore: 'nope' }, 404, 'datastore_not_found', 'retrieval.datastore', 'no datastore named "nope"; served: "bible", "gone", "broken"'],
    [{ datastore: 'bible', k: 0 }, 400, 'invalid_parameter', 'retrieval.k', 'retrieval.k must be an integer from 1 to 64 (got 0)'],
    [{ datastore: 'bible', k: 1e6 }, 400, 'invalid_parameter', 'retrieval.k', 'retrieval.k must be an integer from 1 to 64 (got 1000000)'],
    [{ datastore: 'bible', mode: 'magic' }, 400, 'invalid_parameter', 'retrieval.mode', 'retrieval.mode must be "dense", "bm25" or "hybrid" (got "magic")'],
    [{ datastore: 'bible', top: 1 }, 400, 'unknown_parameter', 'retrieval.top', 'Unrecognized request argument supplied: retrieval."top"'],
    [{ datastore: 'gone' }, 503, 'datastore_unavailable', 'retrieval.datastore', `datastore "gone" cannot be used: datastore directory ${path.join(root, 'no-such-dir')} does not exist`],
    [
      { datastore: 'broken' },
      503,
      'datastore_unavailable',
      'retrieval.datastore',
      `datastore "broken" cannot be used: ${path.join(BROKEN, 'documents-1.jsonl')} is corrupted: its sha256 does not match ${path.join(BROKEN, 'manifest.json')}`,
    ],
  ];
  for (const [retrieval, status, code, param, message] of cases) {
    const r = await complete({ prompt: 'light', retrieval });
    expect([r.status, r.json.error]).toEqual([status, { message, type: expect.any(String), param, code }]);
    expect((await complete({ prompt: 'light' })).status).toBe(200);
  }
  const r = await complete({ prompt: 'light', max_tokens: 20, retrieval: { datastore: 'bible', k: 3, mode: 'bm25' } });
  expect(r.status).toBe(400);
  expect(r.json.error.code).toBe('context_length_exceeded');
  expect(r.json.error.param).toBe('retrieval.k');
  expect(r.json.error.message).toMatch(/^This model's maximum context length is 64 tokens, however you requested 79 tokens \(54 in the 3 retrieved passages, 5 in prompt, 20 for max_tokens\)/);
  const upd = await fetch(`${s.url}/v1/datastores/gone/documents`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: 'x' }) });
  expect(upd.status).toBe(503);
  const unknown = await fetch(`${s.url}/v1/datastores/nope/documents/x`, { method: 'DELETE' });
  expect((await unknown.json()).error.code).toBe('datastore_not_found');
  const empty = await fetch(`${s.url}/v1/datastores/bible/documents`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: '' }) });
  expect((await empty.json()).error).toEqual({ message: 'text must be a non-empty string (got "")', type: 'invalid_request_error', param: 'text', code: 'invalid_parameter' });
});

test('updates during a stream lose nothing and do not stop it', async () => {
  const stream = postStream(s.url, { prompt: 'In the beginning', max_tokens: 40, temperature: 0, logit_bias: { '256': -100 } });
  const ids = Array.from({ length: 8 }, (_, i) => `during-${i}`);
  const answers = await Promise.all(
    ids.map((id, i) =>
      fetch(`${s.url}/v1/datastores/bible/documents`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id, text: `Mahershalalhashbaz number ${'abcdefgh'[i]}x came.` }) }).then((r) => r.status),
    ),
  );
  expect(answers).toEqual(ids.map(() => 200));
  const r = await stream;
  const finishes = r.events.filter((e) => e !== '[DONE]' && e.choices?.[0]?.finish_reason).map((e) => e.choices[0].finish_reason);
  expect(finishes).toEqual(['length']);
  const reopened = Datastore.open(BIBLE, tokenizer, embedder);
  expect(ids.every((id) => reopened.has(id))).toBe(true);
});

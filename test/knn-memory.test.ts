// kNN memory end to end on the byte-level fixture (context 64): `roost
// datastore build --knn` stores one (key, next token) pair per position;
// `roost eval --memory` reports the plain figure of `roost eval` as `without`
// and a lower one when the text repeats the corpus; eval's interpolation (TS,
// src/retrieval/knn-eval.ts) equals the engine's (cpp/knn_memory.h) read
// through echo log-probs of a served request with `memory`, over HTTP and the
// WebSocket (JSON and protobuf); bad memory fields, an unknown datastore, one
// built without --knn and one whose keys file is cut short are catalogue
// errors while serving goes on. The interpolation itself is checked against the PyTorch
// reference in test/native/test_knn_memory.cpp.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WebSocket } from 'ws';

import { loadTokenizer } from '../src/engine/tokenizer';
import type { RunningServer } from '../src/server';
import { decodeServerBinary, encodeClientBinary } from '../src/ws/frames';
import { BYTES, post, start } from './http.helpers';

const ROOT = path.join(__dirname, '..');
const roost = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'roost.js'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120000 });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-knn-'));
const CORPUS = 'In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep. ';
const corpusFile = path.join(tmp, 'corpus.txt');
const evalFile = path.join(tmp, 'eval.txt');
const DS = path.join(tmp, 'ds');
const PLAIN = path.join(tmp, 'plain');
const CUT = path.join(tmp, 'cut');
const TEXT = 'And the earth was without form, and void; and darkness was';
let s: RunningServer;

beforeAll(async () => {
  fs.writeFileSync(corpusFile, CORPUS.repeat(3));
  fs.writeFileSync(evalFile, TEXT);
  const b = roost('datastore', 'build', '--model', BYTES, '--file', corpusFile, '--out', DS, '--chunk', '16', '--knn', '--threads', '1');
  expect([b.status, b.stderr.includes('kNN memory [')]).toEqual([0, true]);
  expect(JSON.parse(b.stdout)).toMatchObject({ knn_entries: CORPUS.length * 3 - 1 });
  expect(roost('datastore', 'build', '--model', BYTES, '--file', corpusFile, '--out', PLAIN, '--chunk', '16').status).toBe(0);
  // A copy whose keys file is cut short: its memory is refused at start, the rest is served.
  fs.cpSync(DS, CUT, { recursive: true });
  fs.truncateSync(path.join(CUT, 'knn', 'keys.f16'), 1000);
  s = await start(BYTES, { datastores: { bible: DS, plain: PLAIN, cut: CUT } });
}, 180000);
afterAll(async () => {
  await s?.close(0);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const evalJson = (...args: string[]) => {
  const r = roost('eval', '--model', BYTES, '--file', evalFile, '--threads', '1', ...args);
  expect([r.status, r.stderr]).toEqual([0, '']);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
};

test('the kNN folder holds one F16 key of n_embd and one next token per position', () => {
  const knn = path.join(DS, 'knn');
  const meta = JSON.parse(fs.readFileSync(path.join(knn, 'knn.json'), 'utf8'));
  const T = CORPUS.length * 3;
  expect(meta).toMatchObject({ format: 'roost-knn', entries: T - 1, dim: 32, model: 'gpt2-bytes', window: 64, stride: 56 });
  expect(fs.statSync(path.join(knn, 'keys.f16')).size).toBe((T - 1) * 32 * 2);
  const values = new Int32Array(new Uint8Array(fs.readFileSync(path.join(knn, 'values.i32'))).buffer);
  expect(Array.from(values)).toEqual(loadTokenizer(BYTES).encode(CORPUS.repeat(3)).slice(1));
});

test('eval --memory: `without` is the plain eval, memory of the repeated text lowers bits per byte, one line per setting', () => {
  fs.writeFileSync(evalFile, CORPUS.slice(20) + TEXT); // two windows
  const [plain] = evalJson();
  const lines = evalJson('--memory', DS, '--memory-k', '4,16', '--memory-lambda', '0.25,0.5');
  expect(lines).toHaveLength(4);
  for (const l of lines) {
    expect(l.without.bits_per_byte).toBeCloseTo(plain.bits_per_byte, 5);
    expect(l).toMatchObject({ tokens: plain.tokens, scored_tokens: plain.scored_tokens, window: plain.window, stride: plain.stride, windows: plain.windows });
    expect(l.bits_per_byte).toBeLessThan(plain.bits_per_byte);
    expect(l.memory.search).toMatch(/^exact/);
  }
  expect(lines.map((l) => [l.memory.k, l.memory.lambda])).toEqual([[4, 0.25], [4, 0.5], [16, 0.25], [16, 0.5]]);
  const local = evalJson('--memory-local');
  expect(local[0].memory).toMatchObject({ datastore: null, local: true, k: 16 });
  expect(local[0].bits_per_byte).not.toBeCloseTo(plain.bits_per_byte, 4);
  fs.writeFileSync(evalFile, TEXT);
});

test("eval's interpolation equals the engine's: echo log-probs with memory, HTTP", async () => {
  const ids = loadTokenizer(BYTES).encode(TEXT);
  expect(ids.length).toBeLessThanOrEqual(64); // one window: eval scores it exactly as one echo request
  for (const [flags, memory] of [
    [['--memory', DS, '--memory-k', '8', '--memory-lambda', '0.3', '--memory-temperature', '2'], { datastore: 'bible', k: 8, lambda: 0.3, temperature: 2 }],
    [['--memory', DS, '--memory-k', '4', '--memory-lambda', '0.5', '--memory-local'], { datastore: 'bible', k: 4, lambda: 0.5, local: true }],
    [['--memory-local', '--memory-k', '4'], { local: true, k: 4 }],
  ] as const) {
    const [e] = evalJson(...flags);
    const r = await post(s.url, { prompt: TEXT, max_tokens: 0, echo: true, logprobs: 0, memory });
    expect(r.status).toBe(200);
    const lp: Array<number | null> = r.json.choices[0].logprobs.token_logprobs;
    const nll = -lp.slice(1).reduce<number>((a, x) => a + x!, 0);
    expect(Math.abs(nll - e.nll)).toBeLessThan(1e-3);
  }
});

test('WebSocket requests take memory in JSON and protobuf; a batch with and without memory decodes both', async () => {
  const ws = new WebSocket(s.url.replace('http', 'ws') + '/v1/stream');
  await new Promise((r) => ws.once('open', r));
  const done = new Map<string, any>();
  const texts = new Map<string, string>();
  ws.on('message', (data, binary) => {
    const m: any = binary ? decodeServerBinary(data as Buffer) : JSON.parse(String(data));
    if (m.type === 'token') texts.set(m.id, (texts.get(m.id) ?? '') + m.text);
    if (m.type === 'done' || m.type === 'error') done.set(m.id, m);
  });
  const memory = { datastore: 'bible', k: 4, lambda: 0.9, temperature: 1 };
  ws.send(JSON.stringify({ type: 'request', id: 'json', prompt: 'In the beginning God created the heaven and the', max_tokens: 6, temperature: 0, memory }));
  ws.send(encodeClientBinary({ type: 'request', id: 'proto', prompt: 'In the beginning God created the heaven and the', max_tokens: 6, temperature: 0, memory }));
  ws.send(JSON.stringify({ type: 'request', id: 'plain', prompt: 'In the beginning God created the heaven and the', max_tokens: 6, temperature: 0 }));
  ws.send(JSON.stringify({ type: 'request', id: 'bad', prompt: 'x', memory: { datastore: 'bible', k: 0 } }));
  const t0 = Date.now();
  while (done.size < 4 && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 50));
  ws.close();
  expect(done.get('json').type).toBe('done');
  expect(done.get('proto').type).toBe('done');
  expect(done.get('plain').type).toBe('done');
  expect(done.get('bad')).toMatchObject({ type: 'error', code: 'invalid_parameter', param: 'memory.k' });
  // lambda 0.9 over a memory of this very text: the continuation is the corpus's.
  expect(texts.get('json')).toBe(' earth');
  expect(texts.get('proto')).toBe(' earth');
});

test('bad memory fields are catalogue errors naming the field, and serving goes on', async () => {
  const cases: Array<[unknown, number, string, string]> = [
    [{ datastore: 'nope' }, 404, 'datastore_not_found', 'memory.datastore'],
    [{ datastore: 'plain' }, 400, 'memory_not_built', 'memory.datastore'],
    [{ datastore: 'bible', k: 0 }, 400, 'invalid_parameter', 'memory.k'],
    [{ datastore: 'bible', k: 1e6 }, 400, 'invalid_parameter', 'memory.k'],
    [{ datastore: 'bible', lambda: 1.5 }, 400, 'invalid_parameter', 'memory.lambda'],
    [{ datastore: 'bible', temperature: 0 }, 400, 'invalid_parameter', 'memory.temperature'],
    [{ datastore: 'bible', local: 'yes' }, 400, 'invalid_parameter', 'memory.local'],
    [{ k: 4 }, 400, 'invalid_parameter', 'memory'],
    [{ datastore: 'bible', radius: 3 }, 400, 'unknown_parameter', 'memory.radius'],
    ['bible', 400, 'invalid_parameter', 'memory'],
    [{ datastore: 'cut' }, 503, 'datastore_unavailable', 'memory.datastore'],
  ];
  for (const [memory, status, code, param] of cases) {
    const r = await post(s.url, { prompt: 'In the', max_tokens: 2, memory });
    expect([JSON.stringify(memory), r.status, r.json.error.code, r.json.error.param]).toEqual([JSON.stringify(memory), status, code, param]);
  }
  const ok = await post(s.url, { prompt: 'In the', max_tokens: 2, temperature: 0 });
  expect(ok.status).toBe(200);
  const list = await fetch(`${s.url}/v1/datastores`).then((r) => r.json());
  const bible = list.data.find((d: any) => d.name === 'bible');
  expect(bible.knn_memory).toEqual({ entries: CORPUS.length * 3 - 1 });
  const cut = list.data.find((d: any) => d.name === 'cut');
  expect(cut.knn_memory.error).toMatch(/keys\.f16 holds 1000 bytes/);
});

test('eval --memory refuses a folder without kNN memory and a bad k, exit 2', () => {
  const r = roost('eval', '--model', BYTES, '--file', evalFile, '--memory', PLAIN);
  expect([r.status, r.stderr]).toEqual([2, `roost eval: --memory: ${PLAIN} holds no kNN memory (keys.f16); build one with \`roost datastore build --knn\`\n`]);
  const k = roost('eval', '--model', BYTES, '--file', evalFile, '--memory', DS, '--memory-k', '0');
  expect(k.status).toBe(2);
  expect(k.stderr).toMatch(/--memory-k must be an integer from 1 to 1024/);
});

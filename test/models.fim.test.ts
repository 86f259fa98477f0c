// The shipped default model through the server: a `suffix` request gets a
// middle that stops (eos) where the suffix takes over. Guards the weights in
// models/ (a retrained model that loses the FIM lookup runs to max_tokens)
// and the PSM layout of the server together. Greedy, so every ISA agrees.
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { RunningServer } from '../src/server';
import { post, start } from './http.helpers';

const MODELS = path.join(__dirname, '..', 'models');
const DEFAULT = fs.readFileSync(path.join(MODELS, 'DEFAULT'), 'utf8').trim();

let server: RunningServer;
beforeAll(async () => {
  server = await start(path.join(MODELS, DEFAULT));
});
afterAll(async () => {
  await server?.close(0);
});

const infill = (prompt: string, suffix: string) => post(server.url, { prompt, suffix, max_tokens: 32, temperature: 0 });

test('the default model fills a one-word gap with the word and stops', async () => {
  const r = await infill('And Moses said unto the ', ', Fear ye not, stand still');
  expect(r.status).toBe(200);
  expect(r.json.choices[0]).toMatchObject({ text: 'LORD', finish_reason: 'stop' });
});

test.each([
  ['In the beginning God created the heaven and the ', '. And the earth was without form, and void'],
  ['The LORD is my shepherd; I shall not ', '.\nPsa23:2 He maketh me to lie down'],
  ['Re1:8 I am Alpha and Omega, the beginning and the ', ', saith the Lord'],
  ['And he said unto them, Go ye into all the ', ', and preach the gospel'],
])('middles are whole words that end where the suffix begins: %j', async (prompt, suffix) => {
  const c = (await infill(prompt, suffix)).json.choices[0];
  expect(c.finish_reason).toBe('stop');
  expect(c.text).toMatch(/^[A-Za-z]+( [A-Za-z]+)*$/);
});

test('held-out single-word gaps: nearly every middle stops, in words of the text', async () => {
  // As tools/train/samples.fim_words does: one word (with its leading space) removed from a held-out
  // verse, up to 120 bytes on each side. Phase 6 of the shipped bigbird: 99% stop; phase 5: 19%.
  const text = fs.readFileSync(path.join(MODELS, 'data', 'kjv-heldout.txt'), 'utf8');
  const vocab = new Set(text.match(/[A-Za-z]+/g));
  const spans = [...text.matchAll(/ [A-Za-z]+/g)].map((m) => [m.index!, m.index! + m[0].length]);
  const cases = Array.from({ length: 20 }, (_, k) => spans[Math.floor(((k + 0.5) * spans.length) / 20)]);
  let stopped = 0;
  let inWords = 0;
  for (const [a, b] of cases) {
    const r = await post(server.url, { prompt: text.slice(Math.max(0, a - 120), a), suffix: text.slice(b, b + 120), max_tokens: 24, temperature: 0 });
    const c = r.json.choices[0];
    if (c.finish_reason !== 'stop') continue;
    stopped++;
    const words = c.text.match(/[A-Za-z]+/g) ?? [];
    if (words.length > 0 && words.every((w: string) => vocab.has(w))) inWords++;
  }
  expect(stopped).toBeGreaterThanOrEqual(16);
  expect(inWords).toBeGreaterThanOrEqual(16);
});

// RAVEN novelty (src/novelty): the suffix array and matching statistics
// against brute force, token corpora, and the `novelty` field of the served
// default model over HTTP (whole and streamed) and the WebSocket (JSON and
// protobuf) against the King James training corpus, whose copied span and
// offset are found again here with indexOf on the text `bible` prints.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { WebSocket } from 'ws';

import { loadTokenizer } from '../src/engine/tokenizer';
import { Corpus, MAX_NGRAM } from '../src/novelty/corpus';
import { ensureKjvCorpus } from '../src/novelty/kjv';
import { kjvTrainingText } from '../src/training-text';
import { buildSuffixArray } from '../src/novelty/suffix-array';
import type { RunningServer } from '../src/server';
import { decodeServerBinary, encodeClientBinary } from '../src/ws/frames';
import { post, postStream, start, TINY } from './http.helpers';

const DEFAULT_MODEL = path.join(__dirname, '..', 'models', 'bigbird');
const LEV = 'Lev1:1 And the LORD called unto Moses';

/** Brute force: the longest prefix of q[i..] that occurs in s. */
function bruteLongest(s: number[], q: number[], i: number): number {
  let best = 0;
  for (let p = 0; p < s.length; p++) {
    let l = 0;
    while (i + l < q.length && p + l < s.length && s[p + l] === q[i + l]) l++;
    best = Math.max(best, l);
  }
  return best;
}

function random(seed: number) {
  let x = seed;
  return (k: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % k;
  };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-novelty-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('the suffix array orders every suffix (random texts of 1 to 4 letters, against sorting)', () => {
  const r = random(7);
  for (let t = 0; t < 200; t++) {
    const n = 1 + r(80);
    const s = Int32Array.from({ length: n }, () => r(1 + (t % 4)));
    const want = [...Array(n).keys()].sort((a, b) => {
      for (let d = 0; ; d++) {
        if (a + d >= n) return -1;
        if (b + d >= n) return 1;
        if (s[a + d] !== s[b + d]) return s[a + d] - s[b + d];
      }
    });
    expect(Array.from(buildSuffixArray(s, 4))).toEqual(want);
  }
});

test('matching statistics, n-gram novelty and the first occurrence of the longest copy match brute force', () => {
  const r = random(11);
  for (let t = 0; t < 30; t++) {
    const s = Array.from({ length: 200 + r(200) }, () => 97 + r(3));
    const dir = path.join(tmp, `c${t}`);
    const c = Corpus.build(dir, Buffer.from(s), 'random');
    const q = Array.from({ length: 1 + r(40) }, () => 97 + r(3));
    const { length } = c.matches(q);
    const want = q.map((_, i) => bruteLongest(s, q, i));
    expect(Array.from(length)).toEqual(want);
    const nov = Corpus.open(dir).noveltyOfText(Buffer.from(q).toString());
    const text = Buffer.from(s).toString();
    for (let n = 1; n <= MAX_NGRAM; n++) {
      const grams = q.length - n + 1;
      const novel = grams > 0 ? [...Array(grams).keys()].filter((i) => !text.includes(Buffer.from(q.slice(i, i + n)).toString())).length / grams : null;
      expect(nov.ngrams[n - 1]).toEqual({ n, novel });
    }
    const best = Math.max(...want);
    expect(nov.longest_copy!.length).toBe(best);
    expect(nov.longest_copy!.offset).toBe(text.indexOf(nov.longest_copy!.text));
  }
});

test('a corpus over tokens counts n-grams of token ids', () => {
  const tokenizer = loadTokenizer(TINY);
  const text = 'the cat sat on the mat. the dog sat on the log.';
  const c = Corpus.build(path.join(tmp, 'tok'), Buffer.from(text), 'tok', { tokenizer, model: 'gpt2-tiny' });
  expect(c.unit).toBe('tokens');
  const q = ' the dog sat on the mat';
  const ids = tokenizer.encode(q);
  const corpusIds = tokenizer.encode(text);
  const nov = Corpus.open(path.join(tmp, 'tok')).noveltyOfText(q, tokenizer);
  const best = Math.max(...ids.map((_, i) => bruteLongest(corpusIds, ids, i)));
  expect(nov.longest_copy!.length).toBe(best);
  expect(nov.ngrams[0]).toEqual({ n: 1, novel: ids.filter((id) => !corpusIds.includes(id)).length / ids.length });
});

test('a damaged corpus folder is refused naming the file', () => {
  const dir = path.join(tmp, 'damaged');
  Corpus.build(dir, Buffer.from('abcabc'), 'x');
  fs.writeFileSync(path.join(dir, 'sa.i32'), Buffer.alloc(8));
  expect(() => Corpus.open(dir)).toThrow(`${path.join(dir, 'sa.i32')}: 8 bytes, expected 24 (4 per unit): rebuild the corpus`);
});

describe('served: the default model against the King James training corpus', () => {
  let s: RunningServer;
  let train: string;

  beforeAll(async () => {
    train = kjvTrainingText().toString('latin1');
    s = await start(DEFAULT_MODEL, { corpora: { kjv: ensureKjvCorpus() } });
  }, 300_000);
  afterAll(() => s?.close(0));

  /** The expected measures of a generated text, by brute force on the training text. */
  function expected(gen: string) {
    const ngrams = [];
    for (let n = 1; n <= MAX_NGRAM; n++) {
      const total = gen.length - n + 1;
      let novel = 0;
      for (let i = 0; i < total; i++) if (!train.includes(gen.slice(i, i + n))) novel++;
      ngrams.push({ n, novel: novel / total });
    }
    let best = '';
    for (let i = 0; i < gen.length; i++) {
      let l = best.length + 1;
      while (i + l <= gen.length && train.includes(gen.slice(i, i + l))) l++;
      if (l - 1 > best.length) best = gen.slice(i, i + l - 1);
    }
    return { unit: 'bytes', ngrams, longest_copy: { offset: train.indexOf(best), length: best.length, text: best } };
  }

  test('a greedy continuation of Lev1:1 reports the phrase it copies at its exact corpus offset', async () => {
    const r = await post(s.url, { prompt: LEV, max_tokens: 64, temperature: 0, novelty: { corpus: 'kjv' } });
    expect(r.status).toBe(200);
    const choice = r.json.choices[0];
    const want = expected(choice.text);
    expect(choice.novelty).toEqual(want);
    // The stock phrase the model repeats, found again in the corpus.
    expect(want.longest_copy.length).toBeGreaterThanOrEqual(25);
    expect(choice.novelty.longest_copy.text).toContain('LORD said unto Moses');
    expect(train.slice(want.longest_copy.offset, want.longest_copy.offset + want.longest_copy.length)).toBe(choice.novelty.longest_copy.text);
  }, 120_000);

  test('n choices each get their own; a stream carries it on each choice\'s last chunk; echo is not measured', async () => {
    const body = { prompt: 'Ge1:1 In the beginning', max_tokens: 40, temperature: 0, novelty: { corpus: 'kjv' } };
    const whole = await post(s.url, { ...body, n: 2, echo: true });
    expect(whole.json.choices.map((c: any) => c.novelty)).toEqual(whole.json.choices.map((c: any) => expected(c.text.slice(body.prompt.length))));
    const streamed = await postStream(s.url, body);
    const chunks = streamed.events.filter((e) => e !== '[DONE]');
    const text = chunks.map((e) => e.choices[0].text).join('');
    expect(chunks.slice(0, -1).every((e) => e.choices[0].novelty === undefined)).toBe(true);
    expect(chunks[chunks.length - 1].choices[0]).toMatchObject({ finish_reason: 'length', novelty: expected(text) });
  }, 120_000);

  test('the WebSocket done event carries it (JSON and protobuf frames)', async () => {
    for (const binary of [false, true]) {
      const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
      await new Promise((r) => ws.once('open', r));
      let text = '';
      const done = new Promise<any>((resolve) =>
        ws.on('message', (d: Buffer, isBinary: boolean) => {
          const e = isBinary ? decodeServerBinary(d) : JSON.parse(d.toString());
          if (e.type === 'token') text += e.text;
          if (e.type === 'done' || e.type === 'error') resolve(e);
        }),
      );
      const msg = { type: 'request', id: 'r1', prompt: LEV, max_tokens: 48, temperature: 0, novelty: { corpus: 'kjv' } };
      ws.send(binary ? encodeClientBinary(msg) : JSON.stringify(msg));
      const e = await done;
      ws.close();
      expect(e).toMatchObject({ type: 'done', finish_reason: 'length', novelty: expected(text) });
    }
  }, 120_000);

  test('bad novelty fields are refused naming them', async () => {
    const cases: Array<[unknown, number, string, string]> = [
      [{ corpus: 'nope' }, 404, 'corpus_not_found', 'no novelty corpus named "nope"; served: "kjv"'],
      ['kjv', 400, 'invalid_parameter', 'novelty must be an object {corpus} (got "kjv")'],
      [{ corpus: '' }, 400, 'invalid_parameter', 'novelty.corpus must be a corpus name of 1 to 256 characters (got "")'],
      [{ corpus: 'kjv', n: 3 }, 400, 'unknown_parameter', 'Unrecognized request argument supplied: novelty."n"'],
    ];
    for (const [novelty, status, code, message] of cases) {
      const r = await post(s.url, { prompt: 'x', max_tokens: 1, novelty });
      expect([r.status, r.json.error.code, r.json.error.message]).toEqual([status, code, message]);
    }
    const chat = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }], novelty: { corpus: 'kjv' } }),
    });
    expect((await chat.json()).error.param).toBe('novelty');
  }, 60_000);
});

test('a server without corpora refuses novelty; an unusable folder is corpus_unavailable with the reason', async () => {
  const s = await start(TINY, { corpora: { broken: path.join(tmp, 'missing') } });
  try {
    const r = await post(s.url, { prompt: 'x', max_tokens: 1, novelty: { corpus: 'broken' } });
    expect([r.status, r.json.error.code, r.json.error.message]).toEqual([
      503,
      'corpus_unavailable',
      `novelty corpus "broken" cannot be used: ${path.join(tmp, 'missing')}: not a corpus folder (no corpus.json; build one with \`roost corpus build\`)`,
    ]);
  } finally {
    await s.close(0);
  }
  const bare = await start(TINY);
  try {
    const r = await post(bare.url, { prompt: 'x', max_tokens: 1, novelty: { corpus: 'kjv' } });
    expect([r.status, r.json.error.message]).toEqual([404, 'no novelty corpus named "kjv": this server serves none (start it with --corpus NAME=DIR)']);
  } finally {
    await bare.close(0);
  }
}, 60_000);

test('a token corpus served with its model counts tokens; one of another tokenizer is corpus_unavailable', async () => {
  const text = 'the cat sat on the mat. the dog sat on the log. the cat ran to the dog.';
  const tokenizer = loadTokenizer(TINY);
  Corpus.build(path.join(tmp, 'tiny-tokens'), Buffer.from(text), 'tok', { tokenizer, model: 'gpt2-tiny' });
  Corpus.build(path.join(tmp, 'other-tokens'), Buffer.from(text), 'tok', { tokenizer: loadTokenizer(path.join(__dirname, 'fixtures', 'unigram-tok')), model: 'unigram-tok' });
  const s = await start(TINY, { corpora: { mine: path.join(tmp, 'tiny-tokens'), other: path.join(tmp, 'other-tokens') } });
  try {
    const r = await post(s.url, { prompt: 'the cat', max_tokens: 12, temperature: 0, novelty: { corpus: 'mine' } });
    const choice = r.json.choices[0];
    const ids = tokenizer.encode(choice.text);
    const corpusIds = tokenizer.encode(text);
    const lengths = ids.map((_, i) => bruteLongest(corpusIds, ids, i));
    const best = Math.max(...lengths);
    expect(choice.novelty.unit).toBe('tokens');
    expect(choice.novelty.ngrams[1]).toEqual({ n: 2, novel: lengths.slice(0, ids.length - 1).filter((l) => l < 2).length / (ids.length - 1) });
    expect(choice.novelty.longest_copy.length).toBe(best);
    if (best > 0) {
      const at = lengths.indexOf(best);
      expect(choice.novelty.longest_copy.text).toBe(tokenizer.decode(ids.slice(at, at + best)));
    }
    const o = await post(s.url, { prompt: 'the cat', max_tokens: 1, novelty: { corpus: 'other' } });
    expect([o.status, o.json.error.code]).toEqual([503, 'corpus_unavailable']);
    expect(o.json.error.message).toBe(
      'novelty corpus "other" cannot be used: it was tokenized by the tokenizer of unigram-tok, not the served model\'s: rebuild it with --model set to the served model, or without --model (over bytes)',
    );
  } finally {
    await s.close(0);
  }
}, 60_000);

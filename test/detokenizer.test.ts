// The incremental detokenizer: streamed token by token, it emits exactly the
// text of a full decode, and never U+FFFD for valid text (it holds a split
// multi-byte character back until it completes).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Detokenizer } from '../src/engine/detokenizer';
import { loadTokenizer, Tokenizer } from '../src/engine/tokenizer';

const FIXTURES = path.join(__dirname, 'fixtures');

const TEXTS = [
  'Hello world',
  'Café déjà vu, naïve façade, crème brûlée — Ångström, Łódź, Straße',
  '東京は日本の首都です。中文字符测试，你好世界。',
  '한국어 문장입니다. Москва — столица России.',
  'emoji 🙂👍🏽❤️🚀 family 👨‍👩‍👧‍👦 and flags 🇫🇷!',
  'math 𝔸𝔹ℂ and rare 𠜎𠜱𠝹 e\u0301',
  '  two leading spaces\n\tTabbed\r\nCRLF\n',
];

function goldenTexts(): string[] {
  const g = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'bpe', 'golden.json'), 'utf8'));
  return (g.cases as Array<{ text: string }>).map((c) => c.text).filter((t) => !t.includes('<|endoftext|>'));
}

/** The same tokenizer seen without tokenBytes: forces the text-difference path. */
function withoutBytes(tok: Tokenizer): Tokenizer {
  return {
    kind: tok.kind,
    dir: tok.dir,
    vocabSize: tok.vocabSize,
    eosId: tok.eosId,
    stopIds: tok.stopIds,
    specialTokens: tok.specialTokens,
    encode: (t) => tok.encode(t),
    decode: (ids) => tok.decode(ids),
  };
}

function stream(tok: Tokenizer, ids: number[]): { pieces: string[]; text: string } {
  const d = new Detokenizer(tok);
  const pieces = ids.map((id) => d.push(id));
  pieces.push(d.flush());
  return { pieces, text: pieces.join('') };
}

const bpe = loadTokenizer(path.join(FIXTURES, 'gpt2-tiny'));
const bytes = loadTokenizer(path.join(FIXTURES, 'gpt2-bytes'));

describe.each([
  ['byte-level BPE (tokenBytes)', bpe],
  ['byte-level BPE (text difference)', withoutBytes(bpe)],
  ['byte tokenizer', bytes],
])('%s', (_, tok) => {
  test.each([...TEXTS, ...goldenTexts()])('streams %j without U+FFFD', (text) => {
    const ids = tok.encode(text);
    const { pieces, text: out } = stream(tok, ids);
    expect(out).toBe(text);
    expect(out).toBe(tok.decode(ids));
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
  });

  test('emits each character as soon as it is complete', () => {
    const text = '🙂 東京 café';
    const d = new Detokenizer(tok);
    let out = '';
    for (const id of tok.encode(text)) {
      out += d.push(id);
      // what has come out is always a prefix of the text made of whole characters
      expect(text.startsWith(out)).toBe(true);
      expect(/[\uD800-\uDBFF]$/.test(out)).toBe(false);
    }
    expect(out).toBe(text); // nothing held back once the last character completed
    expect(d.flush()).toBe('');
  });
});

describe('byte tokenizer specifics', () => {
  test('a 4-byte character split across 4 tokens comes out once, whole', () => {
    const d = new Detokenizer(bytes);
    expect([0xf0, 0x9f, 0x99].map((b) => d.push(b))).toEqual(['', '', '']);
    expect(d.push(0x82)).toBe('🙂');
  });

  test('flush turns a dangling partial character into U+FFFD', () => {
    const d = new Detokenizer(bytes);
    expect(d.push(0x41)).toBe('A');
    expect(d.push(0xe6)).toBe('');
    expect(d.flush()).toBe('\uFFFD');
  });

  test('invalid bytes in the middle give U+FFFD, then the stream goes on', () => {
    const d = new Detokenizer(bytes);
    const out = [0x41, 0xff, 0x42].map((b) => d.push(b)).join('') + d.flush();
    expect(out).toBe('A\uFFFDB');
  });

  test('special tokens are skipped by default', () => {
    const d = new Detokenizer(bytes);
    expect([72, 256, 105, 257].map((id) => d.push(id)).join('')).toBe('Hi');
  });
});

describe('special tokens of BPE tokenizers', () => {
  const eos = bpe.eosId;

  test('skipped by default, kept as their text when asked', () => {
    const ids = [...bpe.encode('a'), eos, ...bpe.encode('b')];
    expect(stream(bpe, ids).text).toBe('ab');
    const keep = new Detokenizer(bpe, { skipSpecialTokens: false });
    expect(ids.map((id) => keep.push(id)).join('') + keep.flush()).toBe('a<|endoftext|>b');
  });
});

// Tokenizers against the reference's goldens (tools/reference/make_fixtures.py
// writes {text, ids} cases into test/fixtures/*/golden.json), round trips of
// multi-byte UTF-8, and loadTokenizer's choice of tokenizer and its errors.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTokenizer, Tokenizer, TokenizerError } from '../src/engine/tokenizer';
import { loadGpt2Bpe, loadTokenizerJson } from '../src/engine/tokenizers/hf';

const FIXTURES = path.join(__dirname, 'fixtures');

interface TokenizerCase {
  text: string;
  ids: number[];
  special?: boolean;
}

function readGolden(dir: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(dir, 'golden.json'), 'utf8'));
}

/** Every fixture folder whose golden.json has tokenizer cases, with them. */
function tokenizerGoldens(): Array<[string, TokenizerCase[]]> {
  const out: Array<[string, TokenizerCase[]]> = [];
  for (const name of fs.readdirSync(FIXTURES).sort()) {
    const file = path.join(FIXTURES, name, 'golden.json');
    if (!fs.existsSync(file)) continue;
    const g = readGolden(path.join(FIXTURES, name));
    // bpe/golden.json holds them under "cases"; model fixtures under "tokenizer".
    const cases = (name === 'bpe' ? g.cases : g.tokenizer) as TokenizerCase[] | undefined;
    if (Array.isArray(cases) && cases.length > 0 && 'ids' in cases[0]) out.push([name, cases]);
  }
  return out;
}

const MULTIBYTE = [
  'Café déjà vu, naïve façade, crème brûlée',
  'Ångström, Łódź, Straße, Ελληνικά, Москва',
  '東京は日本の首都です。中文字符测试，你好世界。',
  '한국어 문장입니다. ภาษาไทย हिन्दी العربية',
  'emoji 🙂👍🏽❤️🚀 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵',
  'math 𝔸𝔹ℂ ∑∫√ and rare 𠜎𠜱𠝹',
  'e\u0301 combining, \u00a0nbsp, \u3000ideographic space',
  '\ttabs\nnewlines\r\nCRLF   spaces  ',
];

describe('golden ids from the reference tokenizer', () => {
  const goldens = tokenizerGoldens();

  test('fixtures with tokenizer goldens are present', () => {
    expect(goldens.map(([name]) => name)).toEqual(expect.arrayContaining(['bpe', 'gpt2-tiny', 'gpt2-tok', 'gpt2-bytes']));
  });

  describe.each(goldens)('%s', (name, cases) => {
    const dir = path.join(FIXTURES, name);
    const tokenizers: Array<[string, Tokenizer]> =
      name === 'bpe'
        ? [
            ['vocab.json+merges.txt', loadGpt2Bpe(dir, {})],
            ['tokenizer.json', loadTokenizerJson(dir, {})],
          ]
        : [['loadTokenizer', loadTokenizer(dir)]];

    test.each(tokenizers)('%s: encode gives the golden ids and decode gives the text back', (_, tok) => {
      for (const c of cases) {
        expect({ text: c.text, ids: tok.encode(c.text) }).toEqual({ text: c.text, ids: c.ids });
        expect(tok.decode(c.ids)).toBe(c.text);
      }
    });
  });
});

describe('GPT-2 byte-level BPE', () => {
  const dir = path.join(FIXTURES, 'bpe');
  const golden = readGolden(dir) as { vocab_size: number; eos_token_id: number };
  const fromFiles = loadGpt2Bpe(dir, {});
  const fromJson = loadTokenizerJson(dir, {});

  test('both file formats describe the same tokenizer', () => {
    for (const tok of [fromFiles, fromJson]) {
      expect(tok.vocabSize).toBe(golden.vocab_size);
      expect(tok.eosId).toBe(golden.eos_token_id);
      expect(tok.specialTokens).toEqual({ '<|endoftext|>': golden.eos_token_id });
    }
  });

  test('<|endoftext|> in the text is the special token', () => {
    const ids = fromFiles.encode('a<|endoftext|>b');
    expect(ids).toContain(golden.eos_token_id);
    expect(fromFiles.decode(ids)).toBe('a<|endoftext|>b');
  });

  test.each(MULTIBYTE)('round trip %j', (text) => {
    for (const tok of [fromFiles, fromJson]) {
      const ids = tok.encode(text);
      expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize)).toBe(true);
      expect(tok.decode(ids)).toBe(text);
      expect(fromFiles.encode(text)).toEqual(fromJson.encode(text));
    }
  });

  test('tokenBytes concatenate to the UTF-8 of the text', () => {
    const text = MULTIBYTE.join(' ');
    const ids = fromFiles.encode(text);
    const bytes = Buffer.concat(ids.map((id) => Buffer.from(fromFiles.tokenBytes!(id))));
    expect(bytes.equals(Buffer.from(text, 'utf8'))).toBe(true);
  });

  test('decode keeps spaces before punctuation (no clean-up)', () => {
    const text = 'a , b . c ? don \'t';
    expect(fromFiles.decode(fromFiles.encode(text))).toBe(text);
  });

  test('decode of a partial character is lossy, not an exception', () => {
    const ids = fromFiles.encode('🙂');
    const bytes = Buffer.concat(ids.map((id) => Buffer.from(fromFiles.tokenBytes!(id))));
    expect(bytes.length).toBe(4);
    if (ids.length > 1) expect(fromFiles.decode(ids.slice(0, -1))).toContain('\uFFFD');
    expect(fromFiles.decode([])).toBe('');
  });
});

describe('byte tokenizer', () => {
  const tok = loadTokenizer(path.join(FIXTURES, 'gpt2-bytes'));

  test('ids are bytes; specials come from config.json', () => {
    expect(tok.kind).toBe('bytes');
    expect(tok.specialTokens).toEqual({ eos: 256, fim_prefix: 257, fim_middle: 258, fim_suffix: 259 });
    expect(tok.eosId).toBe(256);
    expect(tok.vocabSize).toBe(260);
    expect(tok.encode('Hé')).toEqual([72, 0xc3, 0xa9]);
  });

  test('encode never produces special tokens from plain text', () => {
    for (const text of ['eos', '<eos>', '<|endoftext|>', 'fim_prefix <fim_prefix>', ...MULTIBYTE]) {
      const ids = tok.encode(text);
      expect(ids.every((id) => id < 256)).toBe(true);
      expect(tok.decode(ids)).toBe(text);
    }
  });

  test('special tokens have no text', () => {
    expect(tok.decode([72, 256, 105, 257])).toBe('Hi');
    expect(tok.tokenBytes!(256).length).toBe(0);
  });

  test('bad special_tokens in config.json name the file and field', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-tok-'));
    try {
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ tokenizer_class: 'bytes', special_tokens: { eos: 12 } }));
      expect(() => loadTokenizer(dir)).toThrow(`${path.join(dir, 'config.json')}: special_tokens.eos must be an integer >= 256`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('loadTokenizer', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-tok-'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('picks by the files present', () => {
    expect(loadTokenizer(path.join(FIXTURES, 'gpt2-tiny')).kind).toBe('vocab.json+merges.txt');
    expect(loadTokenizer(path.join(FIXTURES, 'gpt2-tok')).kind).toBe('tokenizer.json');
    expect(loadTokenizer(path.join(FIXTURES, 'gpt2-bytes')).kind).toBe('bytes');
    // tokenizer.json wins over vocab.json + merges.txt
    expect(loadTokenizer(path.join(FIXTURES, 'bpe')).kind).toBe('tokenizer.json');
  });

  test('eos comes from config.json when the folder has one', () => {
    const tok = loadTokenizer(path.join(FIXTURES, 'gpt2-tok'));
    expect(tok.eosId).toBe(readGolden(path.join(FIXTURES, 'gpt2-tok')).eos_token_id);
  });

  test('a folder without a tokenizer is an error naming it', () => {
    fs.writeFileSync(path.join(tmp, 'config.json'), '{"model_type": "gpt2"}');
    expect(() => loadTokenizer(tmp)).toThrow(TokenizerError);
    expect(() => loadTokenizer(tmp)).toThrow(`${tmp}: no tokenizer found`);
  });

  test('vocab.json without merges.txt is an error', () => {
    fs.copyFileSync(path.join(FIXTURES, 'bpe', 'vocab.json'), path.join(tmp, 'vocab.json'));
    expect(() => loadTokenizer(tmp)).toThrow(/vocab\.json but no merges\.txt/);
  });

  test('a missing folder is an error naming it', () => {
    const missing = path.join(tmp, 'nope');
    expect(() => loadTokenizer(missing)).toThrow(`${missing}: no such model folder`);
  });

  test('a malformed tokenizer.json names the file', () => {
    fs.writeFileSync(path.join(tmp, 'tokenizer.json'), '{"model": ');
    expect(() => loadTokenizer(tmp)).toThrow(`${path.join(tmp, 'tokenizer.json')}: invalid JSON`);
    fs.writeFileSync(path.join(tmp, 'tokenizer.json'), '{"version": "1.0"}');
    expect(() => loadTokenizer(tmp)).toThrow(`${path.join(tmp, 'tokenizer.json')}: has no "model" object`);
  });

  test('a malformed merges.txt names the file and line', () => {
    fs.copyFileSync(path.join(FIXTURES, 'bpe', 'vocab.json'), path.join(tmp, 'vocab.json'));
    fs.writeFileSync(path.join(tmp, 'merges.txt'), '#version: 0.2\nĠ t\nbad line here\n');
    expect(() => loadTokenizer(tmp)).toThrow(`${path.join(tmp, 'merges.txt')}:3: expected two tokens`);
  });
});

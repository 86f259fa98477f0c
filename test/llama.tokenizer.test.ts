// A Llama-style tokenizer.json (sentencepiece BPE with byte_fallback: <0xNN>
// byte tokens, the ▁ word marker from Prepend/Replace normalizers, <s> added by
// a TemplateProcessing post-processor) through src/engine/tokenizers/hf.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { TokenizerWorker } from '../src/engine/tokenize-offthread';
import { loadTokenizer } from '../src/engine/tokenizer';

const SP = '\u2581';

function llamaTokenizerDir(tokenizerConfig: Record<string, unknown> = { add_bos_token: true, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }): string {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  for (const t of [SP, `${SP}H`, 'e', 'l', 'o', 'll', `${SP}Hello`, 'H', `${SP}He`, 'llo']) vocab[t] = Object.keys(vocab).length;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SP }, { type: 'Replace', pattern: { String: ' ' }, content: SP }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: SP }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: { type: 'BPE', unk_token: '<unk>', fuse_unk: true, byte_fallback: true, vocab, merges: [`${SP} H`, 'l l', `${SP}H e`, 'll o', `${SP}He llo`] },
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-llama-tok-'));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', bos_token_id: 1 }));
  return dir;
}

describe('Llama-style tokenizer.json', () => {
  const dir = llamaTokenizerDir();
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tok = loadTokenizer(dir);

  test('BPE merges, <s> from the post-processor, bytes without a token through <0xNN>', () => {
    expect(tok.encode('Hello')).toEqual([1, 265]);
    // ' ' -> ▁ (259); é = C3 A9 -> <0xC3> <0xA9> = 3 + 0xC3, 3 + 0xA9; '!' = <0x21>
    expect(tok.encode('Hello é!')).toEqual([1, 265, 259, 3 + 0xc3, 3 + 0xa9, 3 + 0x21]);
    expect(tok.encode('')).toEqual([1]);
  });

  test('decode fuses byte tokens back into UTF-8 and strips the leading word marker', () => {
    expect(tok.decode([265, 259, 3 + 0xc3, 3 + 0xa9, 3 + 0x21])).toBe('Hello é!');
  });

  test('eos from tokenizer_config.json when config.json has none', () => {
    expect(tok.eosId).toBe(2);
  });
});

describe('tokenizer_config.json add_bos_token / add_eos_token decide the ids around the text', () => {
  const dirs: string[] = [];
  const load = (cfg: Record<string, unknown>) => {
    dirs.push(llamaTokenizerDir(cfg));
    return loadTokenizer(dirs[dirs.length - 1]);
  };
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  test('add_bos_token false drops the <s> the post-processor would add', () => {
    expect(load({ add_bos_token: false, bos_token: '<s>', eos_token: '</s>' }).encode('Hello')).toEqual([265]);
  });

  test('add_eos_token true appends </s>', () => {
    expect(load({ add_bos_token: true, add_eos_token: true, bos_token: '<s>', eos_token: '</s>' }).encode('Hello')).toEqual([1, 265, 2]);
  });

  test('without the flags the post-processor decides', () => {
    expect(load({ eos_token: '</s>' }).encode('Hello')).toEqual([1, 265]);
  });

  test('a bos_token the tokenizer lacks is refused, naming the file and the field', () => {
    expect(() => load({ add_bos_token: true, bos_token: '<bos>' })).toThrow(/tokenizer_config\.json: add_bos_token is true but bos_token "<bos>"/);
  });
});

describe('eos_token_id lists (Tokenizer.stopIds)', () => {
  test('config.json and generation_config.json lists, after the eos, without repeats', () => {
    const dir = llamaTokenizerDir({ eos_token: '</s>' });
    try {
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', eos_token_id: [2, 7] }));
      fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [7, 9, 2] }));
      const tok = loadTokenizer(dir);
      expect(tok.eosId).toBe(2);
      expect(tok.stopIds).toEqual([2, 7, 9]);
      fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: ['</s>'] }));
      expect(() => loadTokenizer(dir)).toThrow(/generation_config\.json: eos_token_id must be an integer >= 0 or a list of them/);
      // Read through src/engine/file-guard.ts: bounded, a regular file, JSON errors without the file's bytes.
      fs.writeFileSync(path.join(dir, 'generation_config.json'), ' '.repeat((1 << 20) + 1) + '{}');
      expect(() => loadTokenizer(dir)).toThrow(/generation_config\.json: 1048579 bytes, more than the limit of 1048576/);
      fs.writeFileSync(path.join(dir, 'generation_config.json'), '{"eos_token_id": secret}');
      expect(() => loadTokenizer(dir)).toThrow(/generation_config\.json: invalid JSON(?!.*secret)/);
      fs.rmSync(path.join(dir, 'generation_config.json'));
      fs.mkdirSync(path.join(dir, 'generation_config.json'));
      expect(() => loadTokenizer(dir)).toThrow(/generation_config\.json: not a regular file \(a folder\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the tokenizer worker (src/engine/tokenize-offthread.ts) gives the same ids', () => {
  const dirs = [
    llamaTokenizerDir({ add_bos_token: false, bos_token: '<s>', eos_token: '</s>' }),
    llamaTokenizerDir({ add_bos_token: true, add_eos_token: true, bos_token: '<s>', eos_token: '</s>' }),
  ];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  test.each([0, 1])('add_bos_token / add_eos_token case %i', async (i) => {
    const w = new TokenizerWorker(dirs[i]);
    try {
      const texts = ['Hello', 'Hello é!', ''];
      const want = [[[265], [265, 259, 3 + 0xc3, 3 + 0xa9, 3 + 0x21], []], [[1, 265, 2], [1, 265, 259, 3 + 0xc3, 3 + 0xa9, 3 + 0x21, 2], [1, 2]]][i];
      expect(texts.map((t) => loadTokenizer(dirs[i]).encode(t))).toEqual(want);
      expect(await w.encode(texts)).toEqual(want);
    } finally {
      await w.close();
    }
  });
});

describe('addSpecialTokens false (a rendered chat template writes its own <s>)', () => {
  const dirs = [
    llamaTokenizerDir({ add_bos_token: true, add_eos_token: true, bos_token: '<s>', eos_token: '</s>' }),
    llamaTokenizerDir({ eos_token: '</s>' }), // the post-processor adds <s>
  ];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  test.each([0, 1])('case %i: nothing added around the text, here and in the worker; a <s> in the text stays one', async (i) => {
    const tok = loadTokenizer(dirs[i]);
    expect(tok.encode('Hello', { addSpecialTokens: false })).toEqual([265]);
    // Llama-2's chat template starts with bos_token: one <s>, not two.
    expect(tok.encode('<s>Hello', { addSpecialTokens: false })).toEqual([1, 265]);
    const w = new TokenizerWorker(dirs[i]);
    try {
      expect(await w.encode(['Hello', '<s>Hello'], { addSpecialTokens: false })).toEqual([[265], [1, 265]]);
    } finally {
      await w.close();
    }
  });
});

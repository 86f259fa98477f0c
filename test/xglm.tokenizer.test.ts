// An XGLM-style sentencepiece Unigram tokenizer.json (test/fixtures/unigram-tok,
// written by tools/reference/make_unigram_tokenizer.py with the ids of an
// independent Viterbi) through src/engine/tokenizers/hf.ts: Metaspace, the
// "</s> $A" post-processor, <unk>, and tokenizer_config.json's add_bos_token.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTokenizer } from '../src/engine/tokenizer';
import { TokenizerWorker } from '../src/engine/tokenize-offthread';
import { FIXTURES } from './http.helpers';

const ROOT = path.join(__dirname, '..');
const TOK = path.join(FIXTURES, 'unigram-tok');
const golden: { cases: { text: string; ids: number[] }[] } = JSON.parse(fs.readFileSync(path.join(TOK, 'golden.json'), 'utf8'));

function withTokenizerConfig(cfg: Record<string, unknown>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-unigram-'));
  fs.copyFileSync(path.join(TOK, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
  return dir;
}

describe('Unigram tokenizer.json (XGLM style)', () => {
  const tok = loadTokenizer(TOK);

  test.each(golden.cases.map((c) => [c.text, c.ids] as const))('encode %j: </s> then the Viterbi ids', (text, ids) => {
    expect(tok.encode(text)).toEqual([2, ...ids]);
  });

  test('decode undoes Metaspace (the first word loses its prepended space)', () => {
    for (const c of golden.cases.filter((x) => !x.ids.includes(3) && !x.text.startsWith(' '))) expect(tok.decode(c.ids)).toBe(c.text);
    const spaced = golden.cases.find((x) => x.text === '  two  spaces')!;
    expect(tok.decode(spaced.ids)).toBe(' two  spaces');
  });

  test('eos is </s> from tokenizer_config.json', () => {
    expect(tok.eosId).toBe(2);
    expect(tok.vocabSize).toBe(60);
  });

  test('add_bos_token true puts <s> first instead of the post-processor; false adds nothing', async () => {
    const on = withTokenizerConfig({ add_bos_token: true, bos_token: '<s>', eos_token: '</s>' });
    const off = withTokenizerConfig({ add_bos_token: false, bos_token: '<s>', eos_token: '</s>' });
    try {
      const ids = golden.cases[1].ids;
      expect(loadTokenizer(on).encode(golden.cases[1].text)).toEqual([0, ...ids]);
      expect(loadTokenizer(off).encode(golden.cases[1].text)).toEqual(ids);
      const w = new TokenizerWorker(on);
      try {
        expect(await w.encode([golden.cases[1].text])).toEqual([[0, ...ids]]);
      } finally {
        await w.close();
      }
    } finally {
      for (const d of [on, off]) fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('an XGLM checkpoint with the Unigram tokenizer', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-xglm-unigram-'));
  const cfg = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'xglm-tiny', 'config.json'), 'utf8'));
  delete cfg.tokenizer_class;
  delete cfg.special_tokens;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  fs.copyFileSync(path.join(FIXTURES, 'xglm-tiny', 'model.safetensors'), path.join(dir, 'model.safetensors'));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TOK, f), path.join(dir, f));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('roost score --text tokenizes as the reference does', () => {
    const c = golden.cases[2];
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'roost.js'), 'score', '--model', dir, '--text', c.text, '--device', 'cpu'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toEqual([2, ...c.ids]);
    expect(out.logprobs).toHaveLength(c.ids.length + 1);
  });
});

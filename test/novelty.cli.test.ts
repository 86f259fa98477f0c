// `roost corpus build` and `roost novelty` as users run them (bin/roost.js,
// the compiled CLI): a corpus folder from a file, its refusals, and RAVEN's
// report of the default model on three held-out lines, whose human curve and
// longest copies are recomputed here by brute force on the training text.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Corpus, MAX_NGRAM } from '../src/novelty/corpus';
import { ensureKjvCorpus } from '../src/novelty/kjv';
import { kjvTrainingText } from '../src/training-text';
import { compileIfStale, ROOT } from './serve.helpers';

const BIN = path.join(ROOT, 'bin', 'roost.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-novelty-cli-'));

function roost(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let corpus: string;
beforeAll(() => {
  compileIfStale();
  // Built once per checkout (src/novelty/kjv.ts); here, not in the test, so its time has its own limit.
  corpus = ensureKjvCorpus();
}, 300_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('corpus build writes a corpus folder over bytes, or over a model\'s tokens; refusals exit 2 naming the flag', () => {
  const file = path.join(tmp, 'text.txt');
  const text = 'in the beginning was the word, and the word was with God.\n';
  fs.writeFileSync(file, text);
  const r = roost('corpus', 'build', '--file', file, '--out', path.join(tmp, 'c'));
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({ corpus: path.join(tmp, 'c'), unit: 'bytes', length: text.length, bytes: text.length, source: 'text.txt' });
  expect(Corpus.open(path.join(tmp, 'c')).noveltyOfText('the word was').longest_copy).toEqual({ offset: text.indexOf('the word was'), length: 12, text: 'the word was' });
  const t = roost('corpus', 'build', '--file', file, '--out', path.join(tmp, 't'), '--model', path.join(ROOT, 'test', 'fixtures', 'gpt2-tiny'));
  expect(t.code).toBe(0);
  expect(JSON.parse(t.stdout)).toMatchObject({ unit: 'tokens', tokenizer: 'gpt2-tiny' });
  expect([roost('corpus', 'build', '--file', file, '--out', path.join(tmp, 'c')).stderr]).toEqual([`roost corpus: --out: ${path.join(tmp, 'c')} already exists\n`]);
  expect(roost('corpus', 'build', '--out', path.join(tmp, 'x'))).toMatchObject({ code: 2, stderr: 'roost corpus: --file is required\n' });
  expect(roost('corpus', 'build', '--file', path.join(tmp, 'none'), '--out', path.join(tmp, 'x')).code).toBe(2);
}, 60_000);

test("novelty: RAVEN's report of the default model on three held-out lines, the human side checked by brute force", () => {
  const train = kjvTrainingText().toString('latin1');
  const held = fs.readFileSync(path.join(ROOT, 'models', 'data', 'revelation-heldout.txt'), 'utf8');
  const prompts = path.join(tmp, 'prompts.txt');
  fs.writeFileSync(prompts, held.split('\n').slice(0, 3).join('\n') + '\n');
  const out = path.join(tmp, 'report.json');
  const plot = path.join(tmp, 'plot.svg');
  const r = roost('novelty', '--model', 'default', '--corpus', corpus, '--prompts', prompts, '--length', '40', '--temperature', '0', '--threads', '1', '--out', out, '--plot', plot);
  expect([r.code, r.stderr]).toEqual([0, '']);
  const report = JSON.parse(fs.readFileSync(out, 'utf8'));
  expect(report).toMatchObject({ model: 'bigbird', unit: 'bytes', length: 40, prompts: { samples: 3, prompt_words: 4 } });
  expect(report.curves.map((c: { label: string }) => c.label)).toEqual(['human (held out)', 'model, greedy']);
  // The human texts: the 40 bytes after each line's first 4 words.
  const file = fs.readFileSync(prompts, 'utf8');
  const humans: string[] = [];
  let at = 0;
  for (const line of file.split('\n').slice(0, 3)) {
    const prompt = line.split(' ').slice(0, 4).join(' ');
    humans.push(file.slice(at + prompt.length, at + prompt.length + 40));
    at += line.length + 1;
  }
  const human = report.curves[0];
  for (let n = 1; n <= MAX_NGRAM; n++) {
    let novel = 0;
    for (const h of humans) for (let i = 0; i + n <= h.length; i++) if (!train.includes(h.slice(i, i + n))) novel++;
    expect(human.ngrams[n - 1].novel).toBeCloseTo(novel / (3 * (40 - n + 1)), 12);
  }
  const longest = humans.map((h) => {
    let best = 0;
    for (let i = 0; i < h.length; i++) for (let l = best + 1; i + l <= h.length && train.includes(h.slice(i, i + l)); l++) best = l;
    return best;
  });
  expect(human.longest_copy.max).toBe(Math.max(...longest));
  expect(human.longest_copy.mean).toBeCloseTo(longest.reduce((a, b) => a + b, 0) / 3, 12);
  expect(report.table.split('\n')).toHaveLength(5);
  expect(fs.readFileSync(plot, 'utf8')).toMatch(/^<svg [^]*<polyline [^]*<\/svg>\n$/);
  expect(roost('novelty', '--model', 'default', '--corpus', tmp, '--prompts', prompts)).toMatchObject({
    code: 2,
    stderr: `roost novelty: --corpus: ${tmp}: not a corpus folder (no corpus.json; build one with \`roost corpus build\`)\n`,
  });
}, 120_000);

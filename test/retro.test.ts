// retro (docs/retro.md) through the CLI's scoring path (roost score
// --neighbours: parsed request -> scheduler -> engine.setNeighbours -> step):
// every golden case of test/fixtures/retro/* with its fixed neighbours against
// tools/reference/retro.py, and the refusals of neighbours a model cannot take.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { load, runtime } from '../src/cli/model';
import { scoreTokens } from '../src/engine/scoring';

const FIXTURES = path.join(__dirname, 'fixtures');
const NAMES = ['every-layer', 'period2', 'period3', 'chunk8']; // test/fixtures/retro/ (own golden format: not a model fixture of engine.test.ts)

interface Case {
  name: string;
  tokens: number[];
  neighbours: Array<number[][] | null>;
  logprobs: Array<number | null>;
}

describe.each(NAMES)('%s', (name) => {
  const dir = path.join(FIXTURES, 'retro', name);
  const golden = JSON.parse(fs.readFileSync(path.join(dir, 'golden.json'), 'utf8'));
  test.each(golden.cases as Case[])('$name: log-probs match the reference', async (c) => {
    const l = await load({ model: dir, device: 'cpu', threads: 1 });
    const got = await scoreTokens(runtime(l, c.tokens.length), c.tokens, undefined, c.neighbours.map((n) => (n ? n.flat() : null)));
    expect(got[0]).toBeNull();
    for (let t = 1; t < c.tokens.length; t++) expect(Math.abs(got[t]! - c.logprobs[t]!)).toBeLessThanOrEqual(golden.logprob_tolerance);
  });
});

describe('roost score --neighbours', () => {
  const bin = path.join(__dirname, '..', 'bin', 'roost.js');
  const roost = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60000 });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-retro-'));
  const file = (v: unknown) => {
    const p = path.join(tmp, `${Math.random()}.json`);
    fs.writeFileSync(p, JSON.stringify(v));
    return p;
  };

  test('the CLI gives the reference log-probs', () => {
    const dir = path.join(FIXTURES, 'retro', 'period2');
    const c: Case = JSON.parse(fs.readFileSync(path.join(dir, 'golden.json'), 'utf8')).cases[3];
    const r = roost('score', '--model', dir, '--tokens', c.tokens.join(','), '--neighbours', file(c.neighbours), '--device', 'cpu');
    expect(r.stderr).toBe('');
    const got = JSON.parse(r.stdout).logprobs;
    for (let t = 1; t < c.tokens.length; t++) expect(Math.abs(got[t] - c.logprobs[t]!)).toBeLessThanOrEqual(1e-4);
  });

  test('a wrong count, a model without retrieval and a malformed file are refused by name', () => {
    const dir = path.join(FIXTURES, 'retro', 'period2');
    const short = roost('score', '--model', dir, '--tokens', '1,2,3,4,5', '--neighbours', file([[[1, 2, 3]]]), '--device', 'cpu');
    expect(short.status).not.toBe(0);
    expect(short.stderr).toContain('neighbours of chunk 0 must be 2 x 8 tokens (got 3)');
    const none = roost('score', '--model', path.join(FIXTURES, 'gpt2-tiny'), '--tokens', '1,2', '--neighbours', file([null]), '--device', 'cpu');
    expect(none.stderr).toContain('neighbours are only taken by model_type retro');
    const other = roost('score', '--model', path.join(FIXTURES, 'gpt2-tiny'), '--tokens', '1,2', '--neighbours', file([[[1]]]), '--device', 'cpu');
    expect(other.stderr).toContain('neighbours are only taken by model_type retro');
    const bad = roost('score', '--model', dir, '--tokens', '1,2', '--neighbours', file({ a: 1 }), '--device', 'cpu');
    expect(bad.stderr).toContain('must be a JSON list, per chunk, of null or a list of neighbours');
    // A FIFO is refused at once, never waited on; a missing file is named.
    const fifo = path.join(tmp, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const piped = roost('score', '--model', dir, '--tokens', '1,2', '--neighbours', fifo, '--device', 'cpu');
    expect([piped.status, piped.stderr]).toEqual([2, `roost score: --neighbours: cannot read ${fifo}: not a regular file (a FIFO)\n`]);
    const missing = roost('score', '--model', dir, '--tokens', '1,2', '--neighbours', path.join(tmp, 'none.json'), '--device', 'cpu');
    expect(missing.stderr).toMatch(/^roost score: --neighbours: cannot read .*none\.json: cannot open: no such file/);
  });
});

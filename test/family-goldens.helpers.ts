// What the model-family test files share: the CLI, a fixture's golden.json,
// and the two CLI checks every HF-layout fixture gets against its PyTorch
// reference goldens (`roost score` to the golden tolerance, greedy
// `roost generate` token for token).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { FIXTURES, post } from './http.helpers';

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'roost.js');

export function roost(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function golden(name: string): any {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'golden.json'), 'utf8'));
}

export function cliGoldenTests(models: string[]): void {
  describe.each(models)('%s', (name) => {
    const dir = path.join(FIXTURES, name);
    const g = golden(name);

    test('roost score equals the PyTorch reference to 1e-4', () => {
      const c = g.cases.find((x: any) => x.name === 'random-40');
      const r = roost('score', '--model', dir, '--tokens', c.tokens.join(','), '--device', 'cpu');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.tokens).toEqual(c.tokens);
      expect(out.logprobs[0]).toBeNull();
      for (let i = 1; i < c.tokens.length; i++) expect(Math.abs(out.logprobs[i] - c.logprobs[i])).toBeLessThanOrEqual(g.logprob_tolerance);
    });

    test('greedy roost generate is the reference continuation', () => {
      const want = g.greedy.find((x: any) => x.name === 'long-prompt');
      const r = roost('generate', '--model', dir, '--prompt', want.prompt, '--max-tokens', String(want.max_tokens), '--temperature', '0', '--device', 'cpu');
      expect(r.code).toBe(0);
      // Bytes tokenizer: ids < 256 are bytes; random weights give invalid UTF-8, shown as U+FFFD like TextDecoder.
      expect(r.stdout).toBe(Buffer.from(want.tokens).toString('utf8'));
    });
  });
}

/** POST /v1/completions with echo + logprobs on golden case `random-40`: every prompt log-prob within the golden tolerance. */
export async function expectEchoLogprobs(url: string, g: any): Promise<void> {
  const c = g.cases.find((x: any) => x.name === 'random-40');
  const r = await post(url, { prompt: c.tokens, max_tokens: 0, echo: true, logprobs: 0 });
  expect(r.status).toBe(200);
  const lp = r.json.choices[0].logprobs.token_logprobs;
  expect(lp).toHaveLength(c.tokens.length);
  expect(lp[0]).toBeNull();
  for (let i = 1; i < c.tokens.length; i++) expect(Math.abs(lp[i] - c.logprobs[i])).toBeLessThanOrEqual(g.logprob_tolerance);
}

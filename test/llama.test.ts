// The Llama family (llama, mistral, qwen2) as users run it: `roost score`,
// greedy `roost generate` and POST /v1/completions (echo + logprobs) on the
// HF-layout fixtures against the goldens of tools/reference/llama.py.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { RunningServer } from '../src/server';
import { FIXTURES, post, start } from './http.helpers';

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'roost.js');
const MODELS = ['llama-gqa2', 'llama-gqa4-tied', 'qwen2-mha3', 'mistral-window'];

function roost(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function golden(name: string): any {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'golden.json'), 'utf8'));
}

describe.each(MODELS)('%s', (name) => {
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

describe('POST /v1/completions on a llama checkpoint', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(path.join(FIXTURES, 'mistral-window'));
  });
  afterAll(async () => {
    await s.close();
  });

  test('echo + logprobs give the reference prompt log-probs (past the sliding window)', async () => {
    const g = golden('mistral-window');
    const c = g.cases.find((x: any) => x.name === 'random-40');
    const r = await post(s.url, { prompt: c.tokens, max_tokens: 0, echo: true, logprobs: 0 });
    expect(r.status).toBe(200);
    const lp = r.json.choices[0].logprobs.token_logprobs;
    expect(lp).toHaveLength(c.tokens.length);
    expect(lp[0]).toBeNull();
    for (let i = 1; i < c.tokens.length; i++) expect(Math.abs(lp[i] - c.logprobs[i])).toBeLessThanOrEqual(g.logprob_tolerance);
  });

  test('greedy completion equals the reference tokens', async () => {
    const want = golden('mistral-window').greedy.find((x: any) => x.name === 'short-prompt');
    const r = await post(s.url, { prompt: want.prompt_tokens, max_tokens: want.max_tokens, temperature: 0, logprobs: 0 });
    expect(r.status).toBe(200);
    expect(r.json.choices[0].text).toBe(Buffer.from(want.tokens).toString('utf8'));
  });
});

describe('generation_config.json eos_token_id list stops generation (CLI and HTTP)', () => {
  const want = golden('mistral-window').greedy.find((x: any) => x.name === 'long-prompt');
  const stopToken: number = want.tokens[3];
  const k = want.tokens.indexOf(stopToken); // the first time greedy decoding reaches it
  const expected = Buffer.from(want.tokens.slice(0, k)).toString('utf8');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-llama-stop-'));
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(FIXTURES, 'mistral-window', f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [256, stopToken] }));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('roost generate stops before the listed token', () => {
    const r = roost('generate', '--model', dir, '--prompt', want.prompt, '--max-tokens', '16', '--temperature', '0', '--device', 'cpu');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(expected);
  });

  test('POST /v1/completions finishes with stop there', async () => {
    const s = await start(dir);
    try {
      const r = await post(s.url, { prompt: want.prompt_tokens, max_tokens: 16, temperature: 0 });
      expect(r.status).toBe(200);
      expect(r.json.choices[0].text).toBe(expected);
      expect(r.json.choices[0].finish_reason).toBe('stop');
    } finally {
      await s.close();
    }
  });
});


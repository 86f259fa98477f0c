// The Llama family (llama, mistral, qwen2) as users run it: `roost score`,
// greedy `roost generate` and POST /v1/completions (echo + logprobs) on the
// HF-layout fixtures against the goldens of tools/reference/llama.py.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { RunningServer } from '../src/server';
import { cliGoldenTests, expectEchoLogprobs, golden, roost } from './family-goldens.helpers';
import { FIXTURES, post, start } from './http.helpers';

const MODELS = ['llama-gqa2', 'llama-gqa4-tied', 'qwen2-mha3', 'mistral-window'];

cliGoldenTests(MODELS);

describe('POST /v1/completions on a llama checkpoint', () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(path.join(FIXTURES, 'mistral-window'));
  });
  afterAll(async () => {
    await s.close();
  });

  test('echo + logprobs give the reference prompt log-probs (past the sliding window)', async () => {
    await expectEchoLogprobs(s.url, golden('mistral-window'));
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


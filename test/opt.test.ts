// OPT and XGLM as users run them: `roost score`, greedy `roost generate` and
// POST /v1/completions (echo + logprobs) on the HF-layout fixtures (pre- and
// post-LN OPT, project_in/out, no biases, odd heads, odd d_model, tied and
// untied heads) against the goldens of tools/reference/opt.py and xglm.py.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { RunningServer } from '../src/server';
import { cliGoldenTests, expectEchoLogprobs, golden, roost } from './family-goldens.helpers';
import { FIXTURES, post, start } from './http.helpers';

const MODELS = ['opt-preln', 'opt-postln-proj', 'opt-nobias', 'xglm-tiny', 'xglm-odd'];

cliGoldenTests(MODELS);

describe.each(['opt-postln-proj', 'xglm-odd'])('POST /v1/completions on %s', (name) => {
  let s: RunningServer;
  const g = golden(name);
  beforeAll(async () => {
    s = await start(path.join(FIXTURES, name));
  });
  afterAll(async () => {
    await s.close();
  });

  test('echo + logprobs give the reference prompt log-probs', async () => {
    await expectEchoLogprobs(s.url, g);
  });

  test('greedy completion equals the reference tokens', async () => {
    const want = g.greedy.find((x: any) => x.name === 'short-prompt');
    const r = await post(s.url, { prompt: want.prompt_tokens, max_tokens: want.max_tokens, temperature: 0, logprobs: 0 });
    expect(r.status).toBe(200);
    expect(r.json.choices[0].text).toBe(Buffer.from(want.tokens).toString('utf8'));
  });

  test('a prompt past max_position_embeddings is refused, not wrapped', async () => {
    const r = await post(s.url, { prompt: Array(257).fill(65), max_tokens: 1 });
    expect(r.status).toBe(400);
  });
});

describe('malformed OPT / XGLM checkpoints are refused by the CLI, naming what is wrong', () => {
  const cases: [string, string, (cfg: any) => void, string[], RegExp][] = [
    ['opt-preln', 'an unsupported activation', (c) => (c.activation_function = 'silu'), [], /activation_function must be "relu", "gelu" or "gelu_new"/],
    ['opt-postln-proj', 'a missing project_in', () => {}, ['model.decoder.project_in.weight'], /model\.decoder\.project_in\.weight/],
    ['xglm-tiny', 'cross-attention', (c) => (c.add_cross_attention = true), [], /add_cross_attention must be false/],
  ];
  test.each(cases)('%s with %s', (name, _what, editConfig, dropTensors, message) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-opt-bad-'));
    try {
      const cfg = JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'config.json'), 'utf8'));
      editConfig(cfg);
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
      fs.copyFileSync(path.join(FIXTURES, name, 'model.safetensors'), path.join(dir, 'model.safetensors'));
      if (dropTensors.length) {
        // Rewrite the safetensors header without the dropped tensors (their bytes stay, unreferenced).
        const buf = fs.readFileSync(path.join(dir, 'model.safetensors'));
        const n = Number(buf.readBigUInt64LE(0));
        const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
        for (const t of dropTensors) delete header[t];
        const text = Buffer.from(JSON.stringify(header).padEnd(n, ' '));
        text.copy(buf, 8);
        fs.writeFileSync(path.join(dir, 'model.safetensors'), buf);
      }
      const r = roost('score', '--model', dir, '--tokens', '1,2,3', '--device', 'cpu');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// bench/lib/random-llama.ts: the random Llama checkpoint `bench/decode --arch
// llama` writes (TinyLlama's layout, here in a small shape) loads through the
// engine in each dtype, holds every tensor the loader wants at HF's names, and
// BF16 / F16 copies of the same draw give the logits of the F32 one closely.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { type LlamaShape, TINYLLAMA, writeRandomLlama } from '../bench/lib/random-llama';
import { Engine } from '../src/native';

const SMALL: LlamaShape = { nLayer: 2, hidden: 64, nHead: 8, nKvHead: 2, inner: 96, vocabSize: 300, maxPositions: 128 };

describe('bench/lib/random-llama', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-random-llama-'));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  test('TinyLlama shape as the issue gives it', () => {
    expect(TINYLLAMA).toEqual({ nLayer: 22, hidden: 2048, nHead: 32, nKvHead: 4, inner: 5632, vocabSize: 32000, maxPositions: 2048 });
  });

  test('F32, F16 and BF16 checkpoints load and agree on the greedy continuation', async () => {
    const tokens: Record<string, number[]> = {};
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const dir = path.join(root, dtype);
      writeRandomLlama(dir, SMALL, dtype, 7, 0.2);
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      expect(cfg).toMatchObject({ model_type: 'llama', hidden_size: 64, num_key_value_heads: 2, intermediate_size: 96 });
      const bytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
      const params = 300 * 64 * 2 + 64 + 2 * (2 * 64 + 64 * 64 * 2 + 2 * 16 * 64 + 3 * 96 * 64);
      expect(bytes).toBeGreaterThan(params * (dtype === 'F32' ? 4 : 2));
      const engine = await Engine.load(dir, { threads: 1 });
      const seq = engine.createSequence({ temperature: 0 });
      let r = await engine.step([{ seq, tokens: [1, 2, 3, 4], sample: true }]);
      const out: number[] = [];
      for (let i = 0; i < 4; i++) {
        out.push(r[0].token!);
        r = await engine.step([{ seq, tokens: [r[0].token!], sample: true }]);
      }
      engine.freeSequence(seq);
      tokens[dtype] = out;
    }
    expect(tokens.F16).toEqual(tokens.F32);
    expect(tokens.BF16).toEqual(tokens.F32);
    expect(tokens.F32.length).toBe(4);
  });
});

// 8-bit weights and GGUF models through the roost command (issue 26; docs/models.md,
// "8-bit weights" and "GGUF"): `roost score --quantize q8_0` against F32 on the
// gpt2-tiny fixture, a GGUF file of the same weights (bench/lib/gguf.ts writes it) giving
// the safetensors' log-probs bit for bit, a Q8_0 GGUF giving --quantize q8_0's bit for
// bit, and corrupt GGUF files refused by score and serve with the reader's message.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { convertGpt2ToGguf } from '../bench/lib/gguf';
import { loadTokenizer } from '../src/engine/tokenizer';
import { randomTokens } from '../bench/lib/random-gpt2';

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'roost.js');
const TINY = path.join(__dirname, 'fixtures', 'gpt2-tiny');
// 128 tokens: the fixture's whole context, one forward.
const TOKENS = randomTokens(128, 26, 512).join(',');
const TEXT = 'The quick brown fox jumps over the lazy dog. In the beginning God created the heaven and the earth.';

// Measured with `roost score` on these tokens (2026-12-08): the largest |log p(q8_0) - log p(F32)|
// over the 127 scored tokens is 0.19469 nats with q8_0's default F16 KV cache, 0.20010 with an F32
// one (token 123 both; the mean |log p| is 6.93: this fixture's weights reach 0.86 and its
// distributions are peaked). Of the 0.20010, 0.130 comes from the weights alone (the fixture's
// matrices quantized and dequantized to F32 by an independent numpy copy of llama.cpp's rule, run
// at F32) and 0.099 from the activations' per-block quantization alone (docs/models.md, "8-bit
// weights"). The Q8_0 kernels give the same bits on every ISA (test/native/test_q8.cpp); the F32
// side's sums round differently per ISA by ~1e-6, so each bound is its measurement plus 1e-3, and
// no looser.
const Q8_TOLERANCE = 0.196;
const Q8_KV_F32_TOLERANCE = 0.201;
// F32 weights with an F16 KV cache against the F32 cache: 0.00206 nats at most (token 89).
const KV_F16_TOLERANCE = 0.0031;

interface Scored { tokens: number[]; logprobs: Array<number | null> }

function roost(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function score(model: string, ...extra: string[]): Scored {
  const r = roost('score', '--model', model, '--device', 'cpu', '--threads', '1', ...extra);
  if (r.code !== 0) throw new Error(`roost score exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-gguf-q8-'));
const F32_GGUF = path.join(dir, 'tiny-f32.gguf');
const Q8_GGUF = path.join(dir, 'tiny-q8_0.gguf');
beforeAll(() => {
  convertGpt2ToGguf(TINY, F32_GGUF);
  convertGpt2ToGguf(TINY, Q8_GGUF, { quantize: 'q8_0' });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('--quantize q8_0', () => {
  test('log-probs within the measured bound of F32, and not equal to them', () => {
    const f32 = score(TINY, '--tokens', TOKENS);
    const q8 = score(TINY, '--tokens', TOKENS, '--quantize', 'q8_0');
    expect(q8.tokens).toEqual(f32.tokens);
    expect(q8.logprobs[0]).toBeNull();
    let max = 0;
    for (let t = 1; t < f32.logprobs.length; t++) max = Math.max(max, Math.abs(q8.logprobs[t]! - f32.logprobs[t]!));
    expect(max).toBeGreaterThan(0);
    expect(max).toBeLessThanOrEqual(Q8_TOLERANCE);
  });

  test('--kv-cache-dtype: f32 beside q8_0, f16 beside F32 weights, each within its measured bound', () => {
    const f32 = score(TINY, '--tokens', TOKENS);
    const bound = (other: Scored) => {
      expect(other.tokens).toEqual(f32.tokens);
      let max = 0;
      for (let t = 1; t < f32.logprobs.length; t++) max = Math.max(max, Math.abs(other.logprobs[t]! - f32.logprobs[t]!));
      return max;
    };
    const q8kv32 = bound(score(TINY, '--tokens', TOKENS, '--quantize', 'q8_0', '--kv-cache-dtype', 'f32'));
    expect(q8kv32).toBeGreaterThan(Q8_TOLERANCE);  // the cache's rounding is part of the default's figure
    expect(q8kv32).toBeLessThanOrEqual(Q8_KV_F32_TOLERANCE);
    const kv16 = bound(score(TINY, '--tokens', TOKENS, '--kv-cache-dtype', 'f16'));
    expect(kv16).toBeGreaterThan(0);
    expect(kv16).toBeLessThanOrEqual(KV_F16_TOLERANCE);
    expect(score(TINY, '--tokens', TOKENS, '--kv-cache-dtype', 'f32')).toEqual(f32);
    const bad = roost('score', '--model', TINY, '--tokens', TOKENS, '--kv-cache-dtype', 'bf16');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--kv-cache-dtype must be auto, f32 or f16 (got bf16)');
  });

  test('any other value is a usage error naming the flag', () => {
    const r = roost('score', '--model', TINY, '--tokens', '1,2', '--quantize', 'q4_0');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--quantize must be q8_0 (got q4_0)');
  });
});

describe('GGUF models', () => {
  test('--model FILE.gguf (F32): the safetensors log-probs bit for bit, tokenizer from the GGUF metadata', () => {
    expect(score(F32_GGUF, '--tokens', TOKENS)).toEqual(score(TINY, '--tokens', TOKENS));
    const fromGguf = score(F32_GGUF, '--text', TEXT);
    expect(fromGguf).toEqual(score(TINY, '--text', TEXT));
    expect(fromGguf.tokens.length).toBeLessThan(TEXT.length);  // the merges were applied
  });

  test('an F16 GGUF (1-D tensors widened to F32, as llama.cpp writes them): the F16 folder log-probs bit for bit', () => {
    const f16 = path.join(__dirname, 'fixtures', 'gpt2-f16');
    const file = path.join(dir, 'tiny-f16.gguf');
    convertGpt2ToGguf(f16, file);
    expect(score(file, '--text', TEXT)).toEqual(score(f16, '--text', TEXT));
  });

  test('model.gguf in a folder beside config.json, without tokenizer files', () => {
    const folder = path.join(dir, 'folder');
    fs.mkdirSync(folder);
    fs.copyFileSync(path.join(TINY, 'config.json'), path.join(folder, 'config.json'));
    fs.copyFileSync(F32_GGUF, path.join(folder, 'model.gguf'));
    expect(score(folder, '--text', TEXT)).toEqual(score(TINY, '--text', TEXT));
  });

  test('a Q8_0 GGUF loads its blocks as stored: --quantize q8_0 of the same F32 weights bit for bit', () => {
    const q8 = score(TINY, '--tokens', TOKENS, '--quantize', 'q8_0');
    expect(score(Q8_GGUF, '--tokens', TOKENS)).toEqual(q8);
    // Quantizing an already Q8_0 file changes nothing.
    expect(score(Q8_GGUF, '--tokens', TOKENS, '--quantize', 'q8_0')).toEqual(q8);
  });

  test('the GGUF vocabulary: only GPT-2 BPE, and corrupt metadata is named', () => {
    const tok = loadTokenizer(F32_GGUF);
    expect(tok.kind).toBe('gguf');
    expect(tok.encode(TEXT)).toEqual(loadTokenizer(TINY).encode(TEXT));
    expect(tok.eosId).toBe(511);
    const other = (edit: (b: Buffer) => void) => {
      const b = Buffer.from(fs.readFileSync(F32_GGUF));
      edit(b);
      const file = path.join(dir, 'vocab-edit.gguf');
      fs.writeFileSync(file, b);
      return () => loadTokenizer(file);
    };
    // tokenizer.ggml.model "gpt2" -> "llam": key, u32 type, u64 length, then the value.
    const modelValue = (b: Buffer) => b.indexOf('tokenizer.ggml.model') + 'tokenizer.ggml.model'.length + 4 + 8;
    expect(other((b) => b.write('llam', modelValue(b), 'latin1'))).toThrow('tokenizer.ggml.model is "llam"; only GPT-2 BPE');
    // A duplicate token: the second byte token spelled as the first.
    expect(other((b) => { const t = b.indexOf('tokenizer.ggml.tokens') + 'tokenizer.ggml.tokens'.length + 4 + 4 + 8; b.write(b.toString('latin1', t + 8, t + 9), t + 8 + 1 + 8, 'latin1'); }))
      .toThrow(/tokenizer.ggml.tokens holds .* twice \(ids 0 and 1\)/);
    // The tokens array's length made huge.
    expect(other((b) => { const n = b.indexOf('tokenizer.ggml.tokens') + 'tokenizer.ggml.tokens'.length + 4 + 4; b.writeBigUInt64LE(1n << 40n, n); }))
      .toThrow('metadata tokenizer.ggml.tokens length is 1099511627776, more than the file holds');
  });

  test('roost serve --model FILE.gguf --quantize q8_0 answers with the Q8_0 GGUF log-probs', async () => {
    const p = spawn(process.execPath, [BIN, 'serve', '--model', F32_GGUF, '--quantize', 'q8_0', '--port', '0', '--device', 'cpu', '--threads', '1'], { cwd: ROOT });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    try {
      const end = Date.now() + 30000;
      while (!stdout.includes('\n')) {
        if (Date.now() > end) throw new Error(`no listening line; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(stderr).toContain('roost serve: tiny-f32.gguf on cpu (1 threads');
      expect(stderr).toContain('weights q8_0, kv cache f16');
      const url = /^listening on (\S+)\n$/.exec(stdout)![1];
      const tokens = TOKENS.split(',').map(Number);
      const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: tokens, max_tokens: 0, echo: true, logprobs: 0 }) });
      expect(r.status).toBe(200);
      const body = (await r.json()) as { model: string; choices: Array<{ logprobs: { token_logprobs: Array<number | null> } }> };
      expect(body.model).toBe('tiny-f32.gguf');
      expect(body.choices[0].logprobs.token_logprobs).toEqual(score(Q8_GGUF, '--tokens', TOKENS).logprobs);
    } finally {
      p.kill('SIGTERM');
      await exited;
    }
  });

  describe('a corrupt GGUF is refused with the reader message', () => {
    const good = () => fs.readFileSync(F32_GGUF);
    // The first tensor info's offset field: found by the name that precedes it.
    const firstTensorOffsetAt = (b: Buffer) => {
      const name = b.indexOf('token_embd.weight');
      return name + 'token_embd.weight'.length + 4 + 2 * 8 + 4;  // n_dims, 2 dims, type
    };
    const corrupt: Array<[string, (b: Buffer) => Buffer, string]> = [
      ['truncated', (b) => b.subarray(0, b.length - 100), 'truncated: tensor'],
      ['a lying offset', (b) => { b.writeBigUInt64LE(1n << 40n, firstTensorOffsetAt(b)); return b; }, 'runs past the'],
      ['a misaligned offset', (b) => { b.writeBigUInt64LE(BigInt(b.readBigUInt64LE(firstTensorOffsetAt(b))) + 4n, firstTensorOffsetAt(b)); return b; }, 'is not a multiple of the alignment 32'],
      ['an unknown tensor type', (b) => { b.writeUInt32LE(77, firstTensorOffsetAt(b) - 4); return b; }, 'tensor token_embd.weight: unknown GGML type 77'],
      ['an unsupported tensor type', (b) => { b.writeUInt32LE(2, firstTensorOffsetAt(b) - 4); return b; }, 'unsupported type Q4_0'],
      ['a mis-shaped tensor', (b) => { b.writeBigUInt64LE(63n, firstTensorOffsetAt(b) - 4 - 16); return b; }, '(GGUF tensor token_embd.weight): tensor wte.weight has shape [512,63], expected [512,64]'],
      ['a huge tensor count', (b) => { b.writeBigUInt64LE(1n << 60n, 8); return b; }, 'tensor count'],
    ];
    test.each(corrupt)('%s: roost score exits 1', (_what, edit, message) => {
      const file = path.join(dir, `bad-${_what.replace(/\W+/g, '-')}.gguf`);
      fs.writeFileSync(file, edit(Buffer.from(good())));
      const r = roost('score', '--model', file, '--tokens', '1,2', '--device', 'cpu');
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(file);
      expect(r.stderr).toContain(message);
    });

    test('roost serve exits with the message', () => {
      const file = path.join(dir, 'bad-serve.gguf');
      fs.writeFileSync(file, good().subarray(0, 4000));
      const r = roost('serve', '--model', file, '--port', '0', '--device', 'cpu');
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${file}: truncated`);
    });
  });
});

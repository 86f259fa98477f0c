// Writes a random GPT-2 checkpoint in HuggingFace format (config.json +
// model.safetensors) so benchmarks need no downloaded weights.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface RandomGpt2Options {
  nLayer: number;
  nEmbd: number;
  nHead: number;
  vocabSize: number;
  nPositions: number;
  dtype: 'F32' | 'F16';
  std?: number;
  seed?: number;
  extraConfig?: Record<string, unknown>;
}

// Deterministic token ids in [0, vocab) (a linear congruential generator), the same in every engine
// that a benchmark compares.
export function randomTokens(n: number, seed: number, vocab: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) % 2147483648) % vocab);
}

// xorshift32 + Box-Muller: fast and reproducible; quality is irrelevant here.
function normalGenerator(seed: number, std: number): () => number {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return () => std * Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toF16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = ((b >>> 23) & 0xff) - 127 + 15;
  const mant = b & 0x7fffff;
  if (exp <= 0) return sign;  // flush tiny values: fine for random weights
  if (exp >= 31) return sign | 0x7c00;
  let h = sign | (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return h;
}

function toBF16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;  // round to nearest even
}

// One tensor to write: N(0, std) weights, ones or zeros.
export type RandomTensor = [name: string, shape: number[], kind: 'w' | 'one' | 'zero'];

// <dir>/model.safetensors holding `shapes` in order, in `dtype`, weights N(0, std) from `seed`.
export function writeRandomSafetensors(dir: string, shapes: RandomTensor[], dtype: 'F32' | 'F16' | 'BF16', std: number, seed: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const esize = dtype === 'F32' ? 4 : 2;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * esize;
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let headerText = JSON.stringify(header);
  headerText += ' '.repeat((8 - (headerText.length % 8)) % 8);
  const fd = fs.openSync(path.join(dir, 'model.safetensors'), 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerText.length));
  fs.writeSync(fd, len);
  fs.writeSync(fd, headerText);
  const normal = normalGenerator(seed, std);
  const half = dtype === 'BF16' ? toBF16 : toF16;
  for (const [, shape, kind] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const chunk = 1 << 20;
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      const buf = Buffer.alloc(m * esize);
      for (let i = 0; i < m; i++) {
        const v = kind === 'w' ? normal() : kind === 'one' ? 1 : 0;
        if (esize === 4) buf.writeFloatLE(v, i * 4);
        else buf.writeUInt16LE(half(v), i * 2);
      }
      fs.writeSync(fd, buf);
    }
  }
  fs.closeSync(fd);
}

export function writeRandomGpt2(dir: string, o: RandomGpt2Options): void {
  const C = o.nEmbd;
  const shapes: RandomTensor[] = [
    ['wte.weight', [o.vocabSize, C], 'w'],
    ['wpe.weight', [o.nPositions, C], 'w'],
  ];
  for (let l = 0; l < o.nLayer; l++) {
    const p = `h.${l}.`;
    shapes.push(
      [p + 'ln_1.weight', [C], 'one'], [p + 'ln_1.bias', [C], 'zero'],
      [p + 'attn.c_attn.weight', [C, 3 * C], 'w'], [p + 'attn.c_attn.bias', [3 * C], 'zero'],
      [p + 'attn.c_proj.weight', [C, C], 'w'], [p + 'attn.c_proj.bias', [C], 'zero'],
      [p + 'ln_2.weight', [C], 'one'], [p + 'ln_2.bias', [C], 'zero'],
      [p + 'mlp.c_fc.weight', [C, 4 * C], 'w'], [p + 'mlp.c_fc.bias', [4 * C], 'zero'],
      [p + 'mlp.c_proj.weight', [4 * C, C], 'w'], [p + 'mlp.c_proj.bias', [C], 'zero'],
    );
  }
  shapes.push(['ln_f.weight', [C], 'one'], ['ln_f.bias', [C], 'zero']);
  writeRandomSafetensors(dir, shapes, o.dtype, o.std ?? 0.02, o.seed ?? 1234);
  const config = {
    model_type: 'gpt2', vocab_size: o.vocabSize, n_embd: C, n_head: o.nHead, n_layer: o.nLayer,
    n_positions: o.nPositions, n_inner: null, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new',
    tokenizer_class: 'bytes', ...o.extraConfig,
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
}

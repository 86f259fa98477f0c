// bench/lib/gguf.ts: the GGUF file bench/decode hands to llama.cpp. A small
// reader checks the header, the metadata, the tensor table (dims fastest
// first, 32-byte aligned offsets) and that Conv1D weights arrive transposed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertGpt2ToGguf, convertLlamaToGguf } from '../bench/lib/gguf';
import { writeRandomGpt2 } from '../bench/lib/random-gpt2';
import { writeRandomLlama } from '../bench/lib/random-llama';

interface Parsed {
  version: number;
  kv: Map<string, unknown>;
  tensors: Map<string, { dims: number[]; type: number; offset: number }>;
  dataStart: number;
  buf: Buffer;
}

function parseGguf(file: string): Parsed {
  const buf = fs.readFileSync(file);
  let p = 0;
  const u32 = () => { const v = buf.readUInt32LE(p); p += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(p)); p += 8; return v; };
  const str = () => { const n = u64(); const s = buf.toString('utf8', p, p + n); p += n; return s; };
  const value = (type: number): unknown => {
    switch (type) {
      case 4: return u32();
      case 5: { const v = buf.readInt32LE(p); p += 4; return v; }
      case 6: { const v = buf.readFloatLE(p); p += 4; return v; }
      case 8: return str();
      case 9: { const t = u32(); const n = u64(); return Array.from({ length: n }, () => value(t)); }
      default: throw new Error(`unexpected GGUF value type ${type}`);
    }
  };
  expect(buf.toString('ascii', 0, 4)).toBe('GGUF');
  p = 4;
  const version = u32();
  const nTensors = u64(), nKv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) { const k = str(); kv.set(k, value(u32())); }
  const tensors = new Map<string, { dims: number[]; type: number; offset: number }>();
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    tensors.set(name, { dims, type: u32(), offset: u64() });
  }
  return { version, kv, tensors, dataStart: Math.ceil(p / 32) * 32, buf };
}

describe('GGUF conversion (bench/lib/gguf.ts)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-gguf-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const dtype of ['F32', 'F16'] as const) {
    test(`${dtype}: metadata, tensor table and transposed weights`, () => {
      const ckpt = path.join(dir, dtype);
      writeRandomGpt2(ckpt, { nLayer: 2, nEmbd: 16, nHead: 2, vocabSize: 300, nPositions: 32, dtype, std: 0.5 });
      const out = ckpt + '.gguf';
      convertGpt2ToGguf(ckpt, out);
      const g = parseGguf(out);
      expect(g.version).toBe(3);
      expect(g.kv.get('general.architecture')).toBe('gpt2');
      expect(g.kv.get('gpt2.block_count')).toBe(2);
      expect(g.kv.get('gpt2.embedding_length')).toBe(16);
      expect(g.kv.get('gpt2.feed_forward_length')).toBe(64);
      expect(g.kv.get('gpt2.context_length')).toBe(32);
      const tokens = g.kv.get('tokenizer.ggml.tokens') as string[];
      expect(tokens).toHaveLength(300);
      expect(new Set(tokens).size).toBe(300);
      expect(g.tensors.size).toBe(2 + 2 * 12 + 2);

      const wtype = dtype === 'F32' ? 0 : 1, esize = dtype === 'F32' ? 4 : 2;
      expect(g.tensors.get('token_embd.weight')).toMatchObject({ dims: [16, 300], type: wtype });
      expect(g.tensors.get('blk.0.attn_qkv.weight')).toMatchObject({ dims: [16, 48], type: wtype });
      expect(g.tensors.get('blk.1.ffn_down.weight')).toMatchObject({ dims: [64, 16], type: wtype });
      expect(g.tensors.get('blk.0.attn_norm.weight')).toMatchObject({ dims: [16], type: 0 });
      for (const t of g.tensors.values()) expect(t.offset % 32).toBe(0);

      // c_fc [in 16, out 64] in the checkpoint; in GGUF row n holds input weights of output n.
      const st = fs.readFileSync(path.join(ckpt, 'model.safetensors'));
      const hlen = Number(st.readBigUInt64LE(0));
      const src = JSON.parse(st.toString('utf8', 8, 8 + hlen))['h.1.mlp.c_fc.weight'];
      const at = (i: number, o: number) => 8 + hlen + src.data_offsets[0] + (i * 64 + o) * esize;
      const t = g.tensors.get('blk.1.ffn_up.weight')!;
      expect(t.dims).toEqual([16, 64]);
      for (const [i, o] of [[0, 0], [3, 5], [15, 63], [7, 40]]) {
        const ggufAt = g.dataStart + t.offset + (o * 16 + i) * esize;
        expect(g.buf.subarray(ggufAt, ggufAt + esize)).toEqual(st.subarray(at(i, o), at(i, o) + esize));
      }
    });
  }

  // bench/decode --arch llama --peer-llama-cpp: llama.cpp gave Roost's 16 greedy tokens on such a file (F32, F16,
  // BF16; 2 layers, 128 wide, 4 heads over 2 KV heads), which a wrong rotary permutation would not.
  test.each(['F16', 'BF16'] as const)('llama %s: metadata, layout, and q/k rows permuted to adjacent rotary pairs', (dtype) => {
    const ckpt = path.join(dir, 'llama-' + dtype);
    writeRandomLlama(ckpt, { nLayer: 2, hidden: 32, nHead: 4, nKvHead: 2, inner: 48, vocabSize: 300, maxPositions: 64 }, dtype, 3, 0.5);
    const out = ckpt + '.gguf';
    convertLlamaToGguf(ckpt, out);
    const g = parseGguf(out);
    expect(g.kv.get('general.architecture')).toBe('llama');
    expect([g.kv.get('llama.block_count'), g.kv.get('llama.embedding_length'), g.kv.get('llama.feed_forward_length')]).toEqual([2, 32, 48]);
    expect([g.kv.get('llama.attention.head_count'), g.kv.get('llama.attention.head_count_kv'), g.kv.get('llama.rope.dimension_count')]).toEqual([4, 2, 8]);
    expect(g.tensors.size).toBe(1 + 2 * 9 + 2);
    const wtype = dtype === 'F16' ? 1 : 30;
    expect(g.tensors.get('blk.0.attn_k.weight')).toMatchObject({ dims: [32, 16], type: wtype });
    expect(g.tensors.get('blk.1.ffn_gate.weight')).toMatchObject({ dims: [32, 48], type: wtype });
    expect(g.tensors.get('output.weight')).toMatchObject({ dims: [32, 300], type: wtype });
    expect(g.tensors.get('output_norm.weight')).toMatchObject({ dims: [32], type: 0 });

    const st = fs.readFileSync(path.join(ckpt, 'model.safetensors'));
    const hlen = Number(st.readBigUInt64LE(0));
    const header = JSON.parse(st.toString('utf8', 8, 8 + hlen));
    const row = (name: string, r: number) => st.subarray(8 + hlen + header[name].data_offsets[0] + r * 64, 8 + hlen + header[name].data_offsets[0] + (r + 1) * 64);
    const ggufRow = (name: string, r: number) => g.buf.subarray(g.dataStart + g.tensors.get(name)!.offset + r * 64, g.dataStart + g.tensors.get(name)!.offset + (r + 1) * 64);
    for (const [hf, gg, heads] of [['model.layers.1.self_attn.q_proj.weight', 'blk.1.attn_q.weight', 4], ['model.layers.0.self_attn.k_proj.weight', 'blk.0.attn_k.weight', 2]] as const)
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < 4; i++)
          for (let j = 0; j < 2; j++) expect(ggufRow(gg, h * 8 + 2 * i + j)).toEqual(row(hf, h * 8 + j * 4 + i));
    for (let r = 0; r < 16; r++) expect(ggufRow('blk.0.attn_v.weight', r)).toEqual(row('model.layers.0.self_attn.v_proj.weight', r));
  });

  test('Q8_0: matrices as blocks of 32 along each row, within half a step of the F32 weights', () => {
    const ckpt = path.join(dir, 'Q8');
    writeRandomGpt2(ckpt, { nLayer: 1, nEmbd: 32, nHead: 2, vocabSize: 300, nPositions: 32, dtype: 'F32', std: 0.5 });
    const out = ckpt + '.gguf';
    convertGpt2ToGguf(ckpt, out, { quantize: 'q8_0' });
    const g = parseGguf(out);
    expect(g.kv.get('general.file_type')).toBe(7);
    expect(g.tensors.get('token_embd.weight')).toMatchObject({ dims: [32, 300], type: 8 });
    // Learned positions stay F32, as llama-quantize leaves them and as Roost's --quantize q8_0 keeps them.
    expect(g.tensors.get('position_embd.weight')).toMatchObject({ dims: [32, 32], type: 0 });
    expect(g.tensors.get('blk.0.ffn_down.weight')).toMatchObject({ dims: [128, 32], type: 8 });
    expect(g.tensors.get('blk.0.attn_norm.weight')).toMatchObject({ dims: [32], type: 0 });
    expect(g.tensors.get('blk.0.ffn_up.bias')).toMatchObject({ dims: [128], type: 0 });

    // ffn_up: c_fc [in 32, out 128]; GGUF row o is one block of output o's 32 input weights.
    const st = fs.readFileSync(path.join(ckpt, 'model.safetensors'));
    const hlen = Number(st.readBigUInt64LE(0));
    const src = JSON.parse(st.toString('utf8', 8, 8 + hlen))['h.0.mlp.c_fc.weight'];
    const w = (i: number, o: number) => st.readFloatLE(8 + hlen + src.data_offsets[0] + (i * 128 + o) * 4);
    const t = g.tensors.get('blk.0.ffn_up.weight')!;
    expect(t.dims).toEqual([32, 128]);
    const half = (h: number) => (h & 0x8000 ? -1 : 1) * (1 + (h & 0x3ff) / 1024) * 2 ** (((h >> 10) & 0x1f) - 15);
    for (let o = 0; o < 128; o++) {
      const block = g.dataStart + t.offset + o * 34;
      const d = half(g.buf.readUInt16LE(block));
      let amax = 0, qmax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(w(i, o)));
      expect(Math.abs(d - amax / 127)).toBeLessThanOrEqual((amax / 127) * 2 ** -11);
      for (let i = 0; i < 32; i++) {
        const q = g.buf.readInt8(block + 2 + i);
        qmax = Math.max(qmax, Math.abs(q));
        expect(Math.abs(d * q - w(i, o))).toBeLessThanOrEqual(d / 2 + 127 * (amax / 127) * 2 ** -11 + 1e-7);
      }
      expect(qmax).toBe(127);
    }
  });
});

// Converts a HuggingFace GPT-2 checkpoint (config.json + one model.safetensors,
// F32 or F16, as bench/lib/random-gpt2 writes it) to GGUF v3 for llama.cpp's
// `gpt2` architecture, and a Llama one (F32 / F16 / BF16, as
// bench/lib/random-llama writes it) for its `llama` architecture, so
// bench/decode can run llama.cpp on the same weights.
// Layout notes (ggml): a tensor's dims are listed fastest first; a matrix used as
// mul_mat(W, x) is stored as n_out rows of n_in, so HF's Conv1D weights
// ([in, out]) are transposed. 1-D tensors (LayerNorm, biases) stay F32, as
// llama.cpp's own converter writes them. The head is tied to token_embd.
// The vocabulary is the checkpoint's vocab.json + merges.txt when it has them, else the
// 256 byte tokens (GPT-2's byte-to-unicode alphabet) and placeholders up to
// vocab_size, with no merges: benchmarks feed token ids.
import * as fs from 'node:fs';
import * as path from 'node:path';

const GGUF_TYPE = { UINT32: 4, INT32: 5, FLOAT32: 6, STRING: 8, ARRAY: 9 } as const;
const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
const ALIGN = 32;

type Kv = [string, 'u32' | 'f32' | 'str', number | string] | [string, 'strs', string[]] | [string, 'i32s', number[]];

class Writer {
  private chunks: Buffer[] = [];
  size = 0;
  push(b: Buffer) { this.chunks.push(b); this.size += b.length; }
  u32(v: number) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b); }
  i32(v: number) { const b = Buffer.alloc(4); b.writeInt32LE(v); this.push(b); }
  u64(v: number) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  f32(v: number) { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b); }
  str(s: string) { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
  pad() { const n = (ALIGN - (this.size % ALIGN)) % ALIGN; if (n) this.push(Buffer.alloc(n)); }
  buffer() { return Buffer.concat(this.chunks); }
}

// GPT-2's byte-to-unicode map: printable bytes map to themselves, the rest to U+0100 upwards.
function byteTokens(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : next++));
}

interface StTensor { dtype: string; shape: number[]; data_offsets: [number, number] }

// quantize 'q8_0': every matrix (2-D tensor) but the learned positions as Q8_0 blocks,
// quantized as llama.cpp's quantize_row_q8_0_ref does (docs/models.md, "8-bit weights");
// position_embd and 1-D tensors stay F32, as llama.cpp's llama-quantize leaves them
// (and as Roost's --quantize q8_0 does, so the two load the same weights).
export function convertGpt2ToGguf(dir: string, out: string, opts: { quantize?: 'q8_0' } = {}): void {
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const st = fs.readFileSync(path.join(dir, 'model.safetensors'));
  const hlen = Number(st.readBigUInt64LE(0));
  const header: Record<string, StTensor> = JSON.parse(st.subarray(8, 8 + hlen).toString('utf8'));
  const dataStart = 8 + hlen;
  const C = config.n_embd, V = config.vocab_size, L = config.n_layer;
  const dtype = header['wte.weight'].dtype;
  if (dtype !== 'F32' && dtype !== 'F16') throw new Error(`${dir}: GGUF conversion handles F32 and F16, not ${dtype}`);
  const esize = dtype === 'F32' ? 4 : 2;

  // [gguf name, safetensors name, transpose]
  const plan: Array<[string, string, boolean]> = [['token_embd.weight', 'wte.weight', false], ['position_embd.weight', 'wpe.weight', false]];
  for (let l = 0; l < L; l++) {
    const h = `h.${l}.`, b = `blk.${l}.`;
    plan.push(
      [b + 'attn_norm.weight', h + 'ln_1.weight', false], [b + 'attn_norm.bias', h + 'ln_1.bias', false],
      [b + 'attn_qkv.weight', h + 'attn.c_attn.weight', true], [b + 'attn_qkv.bias', h + 'attn.c_attn.bias', false],
      [b + 'attn_output.weight', h + 'attn.c_proj.weight', true], [b + 'attn_output.bias', h + 'attn.c_proj.bias', false],
      [b + 'ffn_norm.weight', h + 'ln_2.weight', false], [b + 'ffn_norm.bias', h + 'ln_2.bias', false],
      [b + 'ffn_up.weight', h + 'mlp.c_fc.weight', true], [b + 'ffn_up.bias', h + 'mlp.c_fc.bias', false],
      [b + 'ffn_down.weight', h + 'mlp.c_proj.weight', true], [b + 'ffn_down.bias', h + 'mlp.c_proj.bias', false],
    );
  }
  plan.push(['output_norm.weight', 'ln_f.weight', false], ['output_norm.bias', 'ln_f.bias', false]);

  // Tensor payloads in GGUF order and type.
  const tensors = plan.map(([name, src, transpose]): GgufTensor => {
    const t = header[src];
    if (!t) throw new Error(`${dir}: no tensor ${src}`);
    const raw = st.subarray(dataStart + t.data_offsets[0], dataStart + t.data_offsets[1]);
    const n = t.shape.reduce((a, b) => a * b, 1);
    let data: Buffer;
    let type: number = dtype === 'F32' ? GGML_TYPE.F32 : GGML_TYPE.F16;
    if (t.shape.length === 1 && dtype === 'F16') {  // widen to F32
      data = Buffer.alloc(n * 4);
      for (let i = 0; i < n; i++) data.writeFloatLE(halfToFloat(raw.readUInt16LE(i * 2)), i * 4);
      type = GGML_TYPE.F32;
    } else if (transpose) {
      const [rows, cols] = t.shape;  // [in, out] -> out rows of in
      const Arr = esize === 4 ? Uint32Array : Uint16Array;
      const src = new Arr(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
      const dst = new Arr(n);
      for (let r = 0; r < rows; r++)
        for (let c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
      data = Buffer.from(dst.buffer);
    } else {
      data = raw;
    }
    const dims = transpose ? [t.shape[0], t.shape[1]] : [...t.shape].reverse();  // fastest first
    if (opts.quantize === 'q8_0' && dims.length === 2 && name !== 'position_embd.weight') {
      const values = new Float32Array(n);
      for (let i = 0; i < n; i++) values[i] = type === GGML_TYPE.F32 ? data.readFloatLE(i * 4) : halfToFloat(data.readUInt16LE(i * 2));
      return { name, dims, type: GGML_TYPE.Q8_0 as number, data: quantizeQ8_0(values, dims[0], name) };
    }
    return { name, dims, type, data };
  });

  const { tokens, merges, eos } = vocabulary(dir, V, config.eos_token_id);
  const kvs: Kv[] = [
    ['general.architecture', 'str', 'gpt2'],
    ['general.name', 'str', path.basename(dir)],
    ['general.file_type', 'u32', opts.quantize === 'q8_0' ? 7 : dtype === 'F32' ? 0 : 1],  // llama_ftype MOSTLY_Q8_0 = 7
    ['gpt2.context_length', 'u32', config.n_positions],
    ['gpt2.embedding_length', 'u32', C],
    ['gpt2.feed_forward_length', 'u32', config.n_inner ?? 4 * C],
    ['gpt2.block_count', 'u32', L],
    ['gpt2.attention.head_count', 'u32', config.n_head],
    ['gpt2.attention.layer_norm_epsilon', 'f32', config.layer_norm_epsilon ?? 1e-5],
    ...tokenizerKvs(tokens, merges, eos),
  ];

  writeGguf(out, kvs, tensors);
}

interface GgufTensor { name: string; dims: number[]; type: number; data: Buffer }

// A GGUF v3 file: the key-values, then the tensor table and the 32-byte aligned payloads.
function writeGguf(out: string, kvs: Kv[], tensors: GgufTensor[]): void {
  const w = new Writer();
  w.push(Buffer.from('GGUF', 'ascii'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kvs.length);
  for (const [key, kind, value] of kvs) {
    w.str(key);
    if (kind === 'u32') { w.u32(GGUF_TYPE.UINT32); w.u32(value as number); }
    else if (kind === 'f32') { w.u32(GGUF_TYPE.FLOAT32); w.f32(value as number); }
    else if (kind === 'str') { w.u32(GGUF_TYPE.STRING); w.str(value as string); }
    else if (kind === 'strs') { w.u32(GGUF_TYPE.ARRAY); w.u32(GGUF_TYPE.STRING); w.u64((value as string[]).length); for (const s of value as string[]) w.str(s); }
    else { w.u32(GGUF_TYPE.ARRAY); w.u32(GGUF_TYPE.INT32); w.u64((value as number[]).length); for (const v of value as number[]) w.i32(v); }
  }
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset += t.data.length + ((ALIGN - (t.data.length % ALIGN)) % ALIGN);
  }
  w.pad();
  const fd = fs.openSync(out, 'w');
  fs.writeSync(fd, w.buffer());
  for (const t of tensors) {
    fs.writeSync(fd, t.data);
    const pad = (ALIGN - (t.data.length % ALIGN)) % ALIGN;
    if (pad) fs.writeSync(fd, Buffer.alloc(pad));
  }
  fs.closeSync(fd);
}

// The checkpoint's GPT-2 vocabulary (vocab.json + merges.txt) when it has one, so the
// GGUF file tokenizes as the folder does; else the 256 byte tokens and placeholders up
// to V with no merges (benchmarks feed token ids). eos: config's eos_token_id, else V - 1.
function vocabulary(dir: string, V: number, eosId: unknown): { tokens: string[]; merges: string[]; eos: number } {
  const eos = typeof eosId === 'number' ? eosId : V - 1;
  const vocabFile = path.join(dir, 'vocab.json'), mergesFile = path.join(dir, 'merges.txt');
  if (!fs.existsSync(vocabFile) || !fs.existsSync(mergesFile)) {
    const tokens = byteTokens();
    for (let i = 256; i < V; i++) tokens.push(`<|r${i}|>`);
    return { tokens, merges: [], eos };
  }
  const vocab = JSON.parse(fs.readFileSync(vocabFile, 'utf8')) as Record<string, number>;
  const tokens: string[] = new Array(V);
  for (const [t, id] of Object.entries(vocab)) tokens[id] = t;
  for (let i = 0; i < V; i++) if (tokens[i] === undefined) throw new Error(`${vocabFile}: no token with id ${i} (vocab_size ${V})`);
  const merges = fs.readFileSync(mergesFile, 'utf8').split(/\r?\n/).filter((l, i) => l !== '' && !(i === 0 && l.startsWith('#version')));
  return { tokens, merges, eos };
}

// The tokenizer.ggml.* keys of a GPT-2-style vocabulary; eos doubles as bos, as GPT-2's.
function tokenizerKvs(tokens: string[], merges: string[], eos: number): Kv[] {
  return [
    ['tokenizer.ggml.model', 'str', 'gpt2'],
    ['tokenizer.ggml.pre', 'str', 'gpt-2'],
    ['tokenizer.ggml.tokens', 'strs', tokens],
    ['tokenizer.ggml.token_type', 'i32s', tokens.map((_, i) => (i === eos ? 3 : 1))], // 3: CONTROL
    ['tokenizer.ggml.merges', 'strs', merges],
    ['tokenizer.ggml.bos_token_id', 'u32', eos],
    ['tokenizer.ggml.eos_token_id', 'u32', eos],
  ];
}

function bf16ToFloat(b: number): number {
  const v = new DataView(new ArrayBuffer(4));
  v.setUint32(0, b << 16);
  return v.getFloat32(0);
}

// HF's q_proj / k_proj rows are rotate-half pairs (i, i + D/2) per head; llama.cpp's
// `llama` rope pairs adjacent rows (2i, 2i + 1): row 2i + j of a head takes HF's
// row j * D/2 + i (convert_hf_to_gguf.py's permute), for rows of `rowBytes`.
function permuteRotary(raw: Buffer, heads: number, rowBytes: number): Buffer {
  const rows = raw.length / rowBytes, D = rows / heads, out = Buffer.alloc(raw.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < D / 2; i++)
      for (let j = 0; j < 2; j++) {
        const from = (h * D + j * (D / 2) + i) * rowBytes, to = (h * D + 2 * i + j) * rowBytes;
        raw.copy(out, to, from, from + rowBytes);
      }
  return out;
}

// A safetensors file read tensor by tensor: a TinyLlama-sized F16 file (2.2 GB) is
// more than one Node Buffer holds (2 GiB).
function openSafetensors(file: string): { header: Record<string, StTensor>; raw(t: StTensor): Buffer } {
  const fd = fs.openSync(file, 'r');
  const head = Buffer.alloc(8);
  fs.readSync(fd, head, 0, 8, 0);
  const hlen = Number(head.readBigUInt64LE(0));
  const json = Buffer.alloc(hlen);
  fs.readSync(fd, json, 0, hlen, 8);
  const raw = (t: StTensor) => {
    const [from, to] = t.data_offsets;
    const b = Buffer.alloc(to - from);
    for (let got = 0; got < b.length; ) got += fs.readSync(fd, b, got, b.length - got, 8 + hlen + from + got);
    return b;
  };
  return { header: JSON.parse(json.toString('utf8')), raw };
}

/** DIR-q8_0.gguf beside a GPT-2 checkpoint folder: its Q8_0 GGUF, written on first use (the file llama.cpp runs too). */
export function q8GgufOf(dir: string): string {
  const gguf = dir + '-q8_0.gguf';
  if (!fs.existsSync(gguf)) {
    process.stderr.write(`quantizing ${dir} to ${gguf} ...\n`);
    convertGpt2ToGguf(dir, gguf, { quantize: 'q8_0' });
  }
  return gguf;
}

export function convertLlamaToGguf(dir: string, out: string): void {
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const st = openSafetensors(path.join(dir, 'model.safetensors'));
  const header = st.header;
  const C = config.hidden_size, V = config.vocab_size, L = config.num_hidden_layers, H = config.num_attention_heads;
  const G = config.num_key_value_heads ?? H;
  const dtype = header['model.embed_tokens.weight'].dtype as 'F32' | 'F16' | 'BF16';
  const esize = dtype === 'F32' ? 4 : 2;
  if (config.tie_word_embeddings || !header['lm_head.weight']) throw new Error(`${dir}: GGUF conversion expects an untied lm_head`);

  // [gguf name, safetensors name, rotary heads to permute (0: none)]; nn.Linear [out, in] is ggml's layout as is.
  const plan: Array<[string, string, number]> = [['token_embd.weight', 'model.embed_tokens.weight', 0]];
  for (let l = 0; l < L; l++) {
    const h = `model.layers.${l}.`, b = `blk.${l}.`;
    plan.push(
      [b + 'attn_norm.weight', h + 'input_layernorm.weight', 0],
      [b + 'attn_q.weight', h + 'self_attn.q_proj.weight', H], [b + 'attn_k.weight', h + 'self_attn.k_proj.weight', G],
      [b + 'attn_v.weight', h + 'self_attn.v_proj.weight', 0], [b + 'attn_output.weight', h + 'self_attn.o_proj.weight', 0],
      [b + 'ffn_norm.weight', h + 'post_attention_layernorm.weight', 0],
      [b + 'ffn_gate.weight', h + 'mlp.gate_proj.weight', 0], [b + 'ffn_up.weight', h + 'mlp.up_proj.weight', 0],
      [b + 'ffn_down.weight', h + 'mlp.down_proj.weight', 0],
    );
  }
  plan.push(['output_norm.weight', 'model.norm.weight', 0], ['output.weight', 'lm_head.weight', 0]);
  const tensors = plan.map(([name, src, heads]): GgufTensor => {
    const t = header[src];
    if (!t) throw new Error(`${dir}: no tensor ${src}`);
    const raw = st.raw(t);
    const dims = [...t.shape].reverse();
    if (t.shape.length === 1) {  // norm weights widen to F32, as llama.cpp's converter writes them
      const n = t.shape[0], data = Buffer.alloc(n * 4);
      for (let i = 0; i < n; i++)
        data.writeFloatLE(esize === 4 ? raw.readFloatLE(i * 4) : dtype === 'F16' ? halfToFloat(raw.readUInt16LE(i * 2)) : bf16ToFloat(raw.readUInt16LE(i * 2)), i * 4);
      return { name, dims, type: GGML_TYPE.F32, data };
    }
    return { name, dims, type: GGML_TYPE[dtype], data: heads ? permuteRotary(raw, heads, t.shape[1] * esize) : raw };
  });
  const vocab = vocabulary(dir, V, undefined);  // benchmarks feed token ids: bytes and placeholders
  const kvs: Kv[] = [
    ['general.architecture', 'str', 'llama'],
    ['general.name', 'str', path.basename(dir)],
    ['general.file_type', 'u32', dtype === 'F32' ? 0 : dtype === 'F16' ? 1 : 32],  // llama_ftype MOSTLY_BF16 = 32
    ['llama.context_length', 'u32', config.max_position_embeddings],
    ['llama.embedding_length', 'u32', C],
    ['llama.feed_forward_length', 'u32', config.intermediate_size],
    ['llama.block_count', 'u32', L],
    ['llama.attention.head_count', 'u32', H],
    ['llama.attention.head_count_kv', 'u32', G],
    ['llama.attention.layer_norm_rms_epsilon', 'f32', config.rms_norm_eps ?? 1e-6],
    ['llama.rope.freq_base', 'f32', config.rope_theta ?? 10000],
    ['llama.rope.dimension_count', 'u32', C / H],
    ...tokenizerKvs(vocab.tokens, vocab.merges, vocab.eos),
  ];
  writeGguf(out, kvs, tensors);
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// Rows of `rowLength` floats to Q8_0 blocks (2-byte F16 scale, 32 int8), in float32
// arithmetic as llama.cpp's C: d = max|x| / 127, q = roundf(x * (1/d)).
function quantizeQ8_0(values: Float32Array, rowLength: number, name: string): Buffer {
  if (rowLength % 32 !== 0) throw new Error(`${name}: rows of ${rowLength} are not whole Q8_0 blocks of 32`);
  const blocks = values.length / 32;
  const out = Buffer.alloc(blocks * 34);
  const f = Math.fround;
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(values[b * 32 + i]));
    const d = f(amax / 127), id = d ? f(1 / d) : 0;
    out.writeUInt16LE(floatToHalf(d), b * 34);
    for (let i = 0; i < 32; i++) {
      const x = f(values[b * 32 + i] * id);
      out.writeInt8(Math.sign(x) * Math.floor(Math.abs(x) + 0.5), b * 34 + 2 + i);  // roundf: halves away from zero
    }
  }
  return out;
}

// float32 -> IEEE half, round to nearest even (cpp/dtype.h's f32_to_f16).
function floatToHalf(v: number): number {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setFloat32(0, v);
  const x = buf.getUint32(0);
  const sign = (x >>> 16) & 0x8000, e8 = (x >>> 23) & 0xff, mant = x & 0x7fffff;
  if (e8 === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const exp = e8 - 127 + 15;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    const m = mant | 0x800000, shift = 14 - exp;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1), mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = sign | (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return half;
}

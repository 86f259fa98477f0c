// Writes adapter folders (docs/adapters.md) with random weights, for
// benchmarks and tests: a soft prompt or (IA)^3 vectors for a gpt2 checkpoint.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** A safetensors file of F32 tensors: name -> [shape, values]. */
export function safetensorsF32(tensors: Record<string, [number[], ArrayLike<number>]>): Buffer {
  const header: Record<string, unknown> = {};
  const blobs: Buffer[] = [];
  let off = 0;
  for (const [name, [shape, values]] of Object.entries(tensors)) {
    const b = Buffer.from(Float32Array.from(values).buffer);
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + b.length] };
    blobs.push(b);
    off += b.length;
  }
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, ...blobs]);
}

export interface RandomAdapterOptions {
  kind: 'prompt_tuning' | 'ia3';
  /** Soft-prompt length (prompt_tuning). */
  promptTokens?: number;
  seed?: number;
}

/** Writes an adapter folder for the checkpoint at modelDir (its config.json gives the shapes). */
export function writeRandomAdapter(dir: string, modelDir: string, o: RandomAdapterOptions): void {
  const cfg = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
  const C: number = cfg.n_embd;
  const F: number = cfg.n_inner ?? 4 * C;
  let s = (o.seed ?? 7) >>> 0 || 1;
  const uniform = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296 - 0.5;
  };
  const vec = (n: number, center: number, spread: number) => Array.from({ length: n }, () => center + spread * uniform());
  const tensors: Record<string, [number[], number[]]> = {};
  const config: Record<string, unknown> = {
    peft_type: o.kind === 'ia3' ? 'IA3' : 'PROMPT_TUNING',
    base_model: { model_type: cfg.model_type, vocab_size: cfg.vocab_size, n_embd: C, n_layer: cfg.n_layer, n_inner: F },
  };
  if (o.kind === 'prompt_tuning') {
    const P = o.promptTokens ?? 16;
    config.num_virtual_tokens = P;
    tensors.prompt_embeddings = [[P, C], vec(P * C, 0, 0.2)];
  } else {
    for (let l = 0; l < cfg.n_layer; l++) {
      tensors[`h.${l}.attn.ia3_k`] = [[C], vec(C, 1, 0.4)];
      tensors[`h.${l}.attn.ia3_v`] = [[C], vec(C, 1, 0.4)];
      tensors[`h.${l}.mlp.ia3_ff`] = [[F], vec(F, 1, 0.4)];
    }
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), safetensorsF32(tensors));
}

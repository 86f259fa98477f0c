// Writes a random Llama-family checkpoint in HuggingFace's own layout
// (config.json + model.safetensors, model.* tensor names) for benchmarks:
// the TinyLlama-1.1B shape by default.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { type RandomTensor, writeRandomSafetensors } from './random-gpt2';

export interface LlamaShape {
  nLayer: number;
  hidden: number;
  nHead: number;
  nKvHead: number;
  inner: number;
  vocabSize: number;
  maxPositions: number;
}

// TinyLlama-1.1B: 22 layers, 2048 wide, 32 heads over 4 KV heads, 5632 inner, vocab 32000.
export const TINYLLAMA: LlamaShape = { nLayer: 22, hidden: 2048, nHead: 32, nKvHead: 4, inner: 5632, vocabSize: 32000, maxPositions: 2048 };

export function writeRandomLlama(dir: string, s: LlamaShape, dtype: 'F32' | 'F16' | 'BF16', seed = 1234, std = 0.02): void {
  const C = s.hidden, D = C / s.nHead, kv = s.nKvHead * D, F = s.inner;
  const shapes: RandomTensor[] = [['model.embed_tokens.weight', [s.vocabSize, C], 'w']];
  for (let l = 0; l < s.nLayer; l++) {
    const p = `model.layers.${l}.`;
    shapes.push(
      [p + 'input_layernorm.weight', [C], 'one'],
      [p + 'self_attn.q_proj.weight', [C, C], 'w'], [p + 'self_attn.k_proj.weight', [kv, C], 'w'],
      [p + 'self_attn.v_proj.weight', [kv, C], 'w'], [p + 'self_attn.o_proj.weight', [C, C], 'w'],
      [p + 'post_attention_layernorm.weight', [C], 'one'],
      [p + 'mlp.gate_proj.weight', [F, C], 'w'], [p + 'mlp.up_proj.weight', [F, C], 'w'], [p + 'mlp.down_proj.weight', [C, F], 'w'],
    );
  }
  shapes.push(['model.norm.weight', [C], 'one'], ['lm_head.weight', [s.vocabSize, C], 'w']);
  writeRandomSafetensors(dir, shapes, dtype, std, seed);
  const config = {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: s.vocabSize, hidden_size: C, num_hidden_layers: s.nLayer,
    num_attention_heads: s.nHead, num_key_value_heads: s.nKvHead, intermediate_size: F, hidden_act: 'silu',
    max_position_embeddings: s.maxPositions, rms_norm_eps: 1e-5, rope_theta: 10000.0, tie_word_embeddings: false,
    torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16', tokenizer_class: 'bytes',
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
}

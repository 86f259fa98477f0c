// The native addon (build/Release/roost.node) and the TypeScript types of its
// whole surface: this file is the one description of what crosses the
// Node-API boundary (cpp/binding/*). Validation with friendly messages belongs
// in the TS callers; the addon only guards types (TypeError naming the
// argument) and invariants (errors with a code).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { packageRoot } from '../package-root';

/** err.code of every error the engine raises (cpp/common.h). */
export type NativeErrorCode = 'E_CHECKPOINT' | 'E_CONFIG' | 'E_ARGUMENT' | 'E_STATE' | 'E_INTERNAL' | 'E_KV_FULL';

/** An Error thrown or rejected by the addon: message is the C++ message. */
export interface NativeError extends Error {
  code: NativeErrorCode;
}

export function isNativeError(e: unknown): e is NativeError {
  const code = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^E_(CHECKPOINT|CONFIG|ARGUMENT|STATE|INTERNAL|KV_FULL)$/.test(code);
}

/** Kernel instruction sets (cpp/ops/ops.h isa_name). */
export type IsaName = 'reference' | 'avx2' | 'avx512' | (string & {});

export interface LoadOptions {
  /** Compute threads of this engine; 0 or absent = every core the process may use. */
  threads?: number;
  /** Tokens per forward pass; longer inputs run in several (default 512). */
  maxStepTokens?: number;
  /** Where the model runs (cpp/device.h): "cpu" (default), "cuda" (E_ARGUMENT when unavailable, saying why), "auto". */
  device?: Device;
  /**
   * Bytes of the KV block pool of a paged model (gpt2, bigbird, llama without
   * a sliding window; cpp/kv_pool.h); 0 or absent: half the memory available
   * once the weights are loaded (MemAvailable, what os.freemem() reports).
   */
  kvMemory?: number;
  /** Reuse cached full KV blocks of a shared prompt prefix (default true). */
  prefixCache?: boolean;
  /**
   * "q8_0": weight matrices quantized to Q8_0 at load (docs/models.md, "8-bit weights");
   * absent: kept as the checkpoint stores them. The CUDA backend refuses q8_0 (E_CONFIG).
   */
  quantize?: Quantize;
  /**
   * The KV cache's element type (docs/design.md, "The KV cache"): "f16" halves
   * what decode attention reads; "auto" (default) is f16 beside Q8_0 weights and
   * on CUDA, f32 for float weights on the CPU. CUDA refuses "f32" (E_ARGUMENT).
   */
  kvCacheDtype?: KvCacheDtype;
}

export type Quantize = 'q8_0';

export type KvCacheDtype = 'auto' | 'f32' | 'f16';

export type Device = 'cpu' | 'cuda' | 'auto';

/** What this build and machine offer for device "cuda". */
export interface CudaInfo {
  /** The addon was compiled with the CUDA backend (nvcc was found). */
  built: boolean;
  /** A CUDA device is usable now. */
  available: boolean;
  /** Device 0's name, "" when none. */
  device: string;
  /** Why CUDA is not available ("" when it is). */
  reason: string;
}

export interface EngineInfo {
  modelType: string;
  /** A one-token step after a sample is a decode unlike prefill (perceiver_ar): replays go a token a step. */
  decodeDiffersFromPrefill: boolean;
  /** retro (docs/retro.md): chunk size m and neighbours per chunk k; 0 for other models. */
  retroChunkSize: number;
  retroNeighbours: number;
  vocabSize: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** Largest total length of a sequence; 0 = bounded only by memory. */
  maxContext: number;
  /** -1 when the checkpoint names none. */
  eosTokenId: number;
  /** "bytes" for byte-level models, "" otherwise. */
  tokenizerClass: string;
  /** name -> id, from config.json special_tokens. */
  specialTokens: Record<string, number>;
  threads: number;
  isa: IsaName;
  /** Where the model runs: "cpu" or "cuda". */
  device: 'cpu' | 'cuda';
  /** The KV cache's element type, "auto" resolved (LoadOptions.kvCacheDtype). */
  kvCacheDtype: 'f32' | 'f16';
}

export interface SequenceParams {
  /** 0 = greedy; default 1. */
  temperature?: number;
  /** 0 = off (default). */
  topK?: number;
  /** 1 = off (default). */
  topP?: number;
  /** Integer 0 .. 2^53 (or a bigint up to 2^64-1); default 0. */
  seed?: number | bigint;
  /** [token, bias] pairs added to the logits before sampling. */
  logitBias?: Array<[number, number]>;
  /** How many top alternatives to report per position (default 0). */
  logprobs?: number;
  /** 0..1, 0 = off (default): tokens with p < minP * p_max (after temperature) are dropped. */
  minP?: number;
  /** OpenAI's: logit -= frequencyPenalty * count + presencePenalty * (count > 0), over the sampled tokens. Default 0. */
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** > 0, 1 = off (default): logits of prompt and sampled tokens become l > 0 ? l / r : l * r. */
  repetitionPenalty?: number;
  /** While fewer tokens than this are sampled, stopTokenIds cannot be sampled (default 0). */
  minTokens?: number;
  /** The ids that end this sequence (eos unless ignored, the request's stop_token_ids): what minTokens masks. */
  stopTokenIds?: number[];
  /** A loaded adapter's name (loadAdapter); absent = the base model. */
  adapter?: string;
  /** kNN memory (cpp/knn_memory.h): interpolates every predicted distribution. */
  memory?: MemoryParams;
}

/** kNN memory of a sequence (TRIME / kNN-LM, docs/retrieval.md). */
export interface MemoryParams {
  /** A store loaded with loadMemory; absent = local memory only. */
  datastore?: string;
  /** Neighbours from each memory, 1 .. 1024 (default 16). */
  k?: number;
  /** Weight of the memory distribution, 0 .. 1 (default 0.25). */
  lambda?: number;
  /** Of the softmax over minus squared distances, > 0 (default 1). */
  temperature?: number;
  /** The sequence's own earlier positions too (default false). */
  local?: boolean;
}

/** An adapter loaded into an engine (cpp/models/adapter.h). */
export interface AdapterInfo {
  name: string;
  type: 'prompt_tuning' | 'ia3';
  /** Positions a soft prompt takes before the first token (0 for ia3). */
  promptTokens: number;
}

export interface StepRequest {
  seq: number;
  /** New tokens appended to the sequence (a prompt chunk, or the last sampled token). */
  tokens: Int32Array | number[];
  /** Sample the next token after them. */
  sample: boolean;
  /** Report log p(tokens[j] | everything before) for every new token. */
  promptLogprobs?: boolean;
  /** Report the final layer norm's output at every new token (models of the gpt2 family). */
  hidden?: boolean;
  /**
   * One token the sequence sampled before a preemption, fed again: it runs as
   * the decode row it was, never from the prefix cache (exactly one token).
   */
  replay?: boolean;
}

/** [token id, log-prob] */
export type TokenLogprob = [number, number];

export interface StepResult {
  seq: number;
  sampled: boolean;
  /** When sampled. */
  token?: number;
  /** Raw log p(token) (log_softmax of the logits before bias, penalties and temperature). */
  logprob?: number;
  /** When sampled: the `logprobs` best tokens by raw log-prob, best first. */
  top?: TokenLogprob[];
  /** When promptLogprobs was asked: one entry per new token, NaN where there is no previous logit. */
  promptLogprobs?: Float64Array;
  /** When promptLogprobs was asked and the sequence's logprobs > 0: the top alternatives at each new token. */
  promptTop?: TokenLogprob[][];
  /** Leading tokens of the request taken from the prefix cache instead of computed. */
  cachedTokens?: number;
  /** When hidden was asked: [tokens, nEmbd] row-major, the head's input at each new token. */
  hidden?: Float32Array;
}

export interface EngineStats {
  sequences: number;
  /** KV caches and recurrent states in use. */
  stateBytes: number;
  weightBytes: number;
  /** The KV pool of a paged model (0 otherwise): blocks used by sequences, cached (prefix cache, unreferenced), free. */
  kvBlocksUsed: number;
  kvBlocksCached: number;
  kvBlocksFree: number;
  /** Positions per block (0: the model is not paged). */
  kvBlockRows: number;
  kvBlockBytes: number;
  /** The engine reuses cached prefixes: a paged model, or block_recurrent's state copies, with the cache on. */
  prefixCache: boolean;
  /** Bytes of block_recurrent's cached state copies (cpp/state_cache.h). */
  stateCacheBytes: number;
}

/** One loaded model (cpp/binding/engine_wrap.h). */
export interface NativeEngine {
  info(): EngineInfo;
  /** Returns the new sequence id. */
  createSequence(params?: SequenceParams): number;
  /** Frees at once, or right after the running step if the sequence is in it. */
  freeSequence(seq: number): void;
  /**
   * Preemption: drops the sequence's KV state (blocks back to the pool) and
   * keeps its sampler and id; its tokens are fed again later. E_STATE while a
   * step over it is in flight.
   */
  resetSequence(seq: number): void;
  /**
   * retro (docs/retro.md): the k neighbours (k * 2m tokens, row-major) of the
   * sequence's chunk `chunk`, given before the step that completes it.
   * E_ARGUMENT for another model type, a chunk already complete, a wrong count.
   */
  setNeighbours(seq: number, chunk: number, tokens: number[] | Int32Array): void;
  /** Tokens consumed so far. */
  sequenceLength(seq: number): number;
  /**
   * Leading tokens of `tokens` (appended to the sequence) that its next step
   * would take from the prefix cache as it stands; 0 while a step over it runs.
   */
  cachedPrefix(seq: number, tokens: number[] | Int32Array): number;
  /**
   * One batched forward step plus sampling, off the JS thread. Rejects with
   * E_ARGUMENT (unknown sequence, token out of range, context exceeded, a
   * sequence listed twice) and E_KV_FULL (the KV pool cannot hold the step)
   * before touching any state, E_STATE if a step is running.
   */
  step(reqs: StepRequest[]): Promise<StepResult[]>;
  stats(): EngineStats;
  /**
   * Loads the adapter folder `dir` (adapter_config.json + adapter_model.safetensors)
   * under `name`. Throws E_CONFIG / E_CHECKPOINT naming the file for a bad folder
   * or one made for another model, E_ARGUMENT for a name in use.
   */
  loadAdapter(name: string, dir: string): AdapterInfo;
  /** Forgets an adapter; sequences already using it keep it until they end. False if unknown. */
  unloadAdapter(name: string): boolean;
  adapters(): AdapterInfo[];
  /**
   * Loads the kNN memory folder `dir` (keys.f16, values.i32) under `name`;
   * returns its entries. Throws E_CHECKPOINT naming the file for a bad folder,
   * E_ARGUMENT for a name in use or a model without hidden states.
   */
  loadMemory(name: string, dir: string): number;
  /** Forgets a kNN memory; sequences already using it keep it. False if unknown. */
  unloadMemory(name: string): boolean;
  /**
   * Exact search of kNN memory `name`: the k nearest entries to each query row
   * ([M, nEmbd]), nearest first (padding: dist Infinity, value -1). Runs on
   * the engine's threads and blocks the caller (roost eval); E_STATE during a step.
   */
  searchMemory(name: string, queries: Float32Array, k: number): { dist: Float32Array; value: Int32Array };
}

export interface NativeEngineClass {
  /** Loads a checkpoint folder off the JS thread; rejects with E_CHECKPOINT / E_CONFIG naming the file. */
  load(dir: string, opts?: LoadOptions): Promise<NativeEngine>;
}

export interface NativeAddon {
  Engine: NativeEngineClass;
  /** The kernel ISA in use now. */
  isa(): IsaName;
  /** The best ISA this CPU supports. */
  detectedIsa(): IsaName;
  /** Forces an ISA process-wide; throws E_ARGUMENT for an unknown one or one the CPU lacks. */
  setIsa(name: IsaName): void;
  cuda(): CudaInfo;
}

let addon: NativeAddon | undefined;

/** Loads the addon once (works from src/ under ts-jest and from dist/src/). */
export function native(): NativeAddon {
  if (addon) return addon;
  const file = path.join(packageRoot(), 'build', 'Release', 'roost.node');
  if (!fs.existsSync(file)) {
    throw new Error(`the native addon is not built (${file} is missing): run \`npm install\` or \`npm run build:native\``);
  }
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  addon = require(file) as NativeAddon;
  return addon;
}

/**
 * The addon's Engine class, loaded on first use (so importing this module
 * never needs the addon built): `await Engine.load(dir, { threads })`.
 */
export const Engine: NativeEngineClass = {
  load: (dir: string, opts: LoadOptions = {}) => native().Engine.load(dir, opts),
};

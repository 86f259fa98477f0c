// Adapters served beside the base model (docs/adapters.md): loading the
// folders of `--adapters DIR`, the check that each was trained on the served
// weights, and which adapter a request asks for (`adapter`, or `model` as
// "base:adapter" or the adapter's own name, as vLLM names LoRA adapters).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { AdapterInfo, NativeEngine } from '../native';
import { RequestError } from './errors';
import { checkGuardedFileSync, FileGuardError, parseJsonFile, readGuardedFileSync } from './file-guard';
import { isGgufFile } from './tokenizer';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
/** The engine reads at most this much of adapter_config.json (cpp/models/adapter.cpp kMaxAdapterConfigBytes). */
export const ADAPTER_CONFIG_MAX_BYTES = 1 << 20;
/** Prompt-tuning and IA3 adapters are kilobytes to megabytes; a bigger file is not one. */
export const ADAPTER_WEIGHTS_MAX_BYTES = 1 << 30;
/** Weight files hashed for base_model_sha256: any checkpoint the engine can map. */
const WEIGHT_FILE_MAX_BYTES = 2 ** 40;
const INDEX_MAX_BYTES = 64 << 20; // cpp/safetensors.cpp kMaxIndexBytes
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A folder that cannot be served as an adapter; the message names it and why. */
export class AdapterLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdapterLoadError';
  }
}

/**
 * sha256 over a checkpoint's weight files (model.safetensors, or its shards in
 * name order): what adapter_config.json's base_model_sha256 records
 * (tools/reference/adapters.py base_sha256 computes the same).
 */
export function weightsSha256(modelDir: string): string {
  const h = createHash('sha256');
  const buf = Buffer.alloc(1 << 20);
  for (const f of weightFiles(modelDir)) {
    const fd = openWeightFile(f);
    try {
      for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
  }
  return h.digest('hex');
}

/** weightsSha256 off the event loop (the server computes it on the first runtime adapter load). */
export async function weightsSha256Async(modelDir: string): Promise<string> {
  const h = createHash('sha256');
  for (const f of weightFiles(modelDir)) {
    const fd = openWeightFile(f);
    for await (const chunk of fs.createReadStream('', { fd, highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  }
  return h.digest('hex');
}

/** The weight files of a checkpoint, in hashing order. */
function weightFiles(modelDir: string): string[] {
  if (isGgufFile(modelDir)) return [modelDir];
  const gguf = path.join(modelDir, 'model.gguf');
  if (fs.existsSync(gguf)) return [gguf];
  const single = path.join(modelDir, 'model.safetensors');
  if (fs.existsSync(single)) return [single];
  const indexFile = path.join(modelDir, 'model.safetensors.index.json');
  const index = parseJsonFile(indexFile, readGuardedFileSync(indexFile, INDEX_MAX_BYTES)) as { weight_map?: unknown };
  if (!index || typeof index.weight_map !== 'object' || index.weight_map === null) throw new FileGuardError(`${indexFile}: weight_map is missing`);
  return [...new Set(Object.values(index.weight_map as Record<string, string>))].sort().map((f) => path.join(modelDir, String(f)));
}

/** A descriptor of a weight file, checked to be a regular file (never a FIFO to wait on). */
function openWeightFile(file: string): number {
  checkGuardedFileSync(file, WEIGHT_FILE_MAX_BYTES);
  return fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
}

/** Loads one adapter folder into the engine under `name`. */
export function loadAdapter(engine: NativeEngine, name: string, dir: string, modelDir: string, baseSha?: () => string): AdapterInfo {
  if (!NAME.test(name)) {
    throw new AdapterLoadError(`${dir}: adapter name ${JSON.stringify(name)} must be 1-64 letters, digits, '.', '_' or '-' (not starting with a symbol)`);
  }
  const configPath = path.join(dir, ADAPTER_CONFIG);
  if (!fs.existsSync(configPath)) throw new AdapterLoadError(`${dir}: not an adapter folder (no ${ADAPTER_CONFIG})`);
  let config: unknown;
  try {
    // Bounded and non-blocking: a path may name a FIFO or /dev/zero (the engine re-checks when it opens them).
    config = parseJsonFile(configPath, readGuardedFileSync(configPath, ADAPTER_CONFIG_MAX_BYTES));
    checkGuardedFileSync(path.join(dir, ADAPTER_WEIGHTS), ADAPTER_WEIGHTS_MAX_BYTES);
  } catch (e) {
    if (e instanceof FileGuardError) throw new AdapterLoadError(e.message);
    throw e;
  }
  let info: AdapterInfo;
  try {
    info = engine.loadAdapter(name, dir); // validates shapes against the model first: the clearer message
  } catch (e) {
    throw new AdapterLoadError((e as Error).message);
  }
  const sha = (config as { base_model_sha256?: unknown })?.base_model_sha256;
  if (sha !== undefined) {
    const have = typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha) ? (baseSha ? baseSha() : weightsSha256(modelDir)) : undefined;
    if (sha !== have) {
      engine.unloadAdapter(name);
      if (have === undefined) throw new AdapterLoadError(`${configPath}: base_model_sha256 must be 64 lowercase hex digits`);
      throw new AdapterLoadError(
        `${configPath}: adapter "${name}" was trained on other weights (base_model_sha256 ${String(sha).slice(0, 12)}..., ` +
          `the served model's weights are ${have.slice(0, 12)}...)`,
      );
    }
  }
  return info;
}

/**
 * Every adapter under `dir`: each sub-folder is one, named by the folder (or
 * `dir` itself when it holds adapter_config.json). Throws AdapterLoadError at
 * the first folder that is not a valid adapter of this model.
 */
export function loadAdapterDir(engine: NativeEngine, dir: string, modelDir: string): AdapterInfo[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new AdapterLoadError(`--adapters ${dir}: no such folder`);
  }
  if (!stat.isDirectory()) throw new AdapterLoadError(`--adapters ${dir}: not a folder`);
  let sha: string | undefined;
  const baseSha = () => (sha ??= weightsSha256(modelDir));
  if (fs.existsSync(path.join(dir, ADAPTER_CONFIG))) return [loadAdapter(engine, path.basename(path.resolve(dir)), dir, modelDir, baseSha)];
  const subdirs = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  if (subdirs.length === 0) throw new AdapterLoadError(`--adapters ${dir}: holds no adapter folders`);
  return subdirs.map((name) => loadAdapter(engine, name, path.join(dir, name), modelDir, baseSha));
}

/** What a request runs on: the name to report in `model`, and the adapter (if any). */
export interface Target {
  model: string;
  adapter: AdapterInfo | null;
}

/**
 * Resolves `model` (null, the base id, "base:adapter" or an adapter's name)
 * and `adapter` (an adapter's name) against what is served.
 */
export function resolveTarget(modelId: string, adapters: ReadonlyMap<string, AdapterInfo>, model: string | null, adapter: string | null): Target {
  let fromModel: AdapterInfo | null = null;
  if (model !== null && model !== modelId) {
    const name = model.startsWith(modelId + ':') ? model.slice(modelId.length + 1) : model;
    const a = adapters.get(name);
    if (!a) {
      const known = [modelId, ...[...adapters.keys()].map((n) => `${modelId}:${n}`)];
      throw new RequestError('model_not_found', `The model ${JSON.stringify(model)} does not exist: this server serves ${known.map((k) => JSON.stringify(k)).join(', ')}`, 'model');
    }
    fromModel = a;
  }
  let fromField: AdapterInfo | null = null;
  if (adapter !== null) {
    const a = adapters.get(adapter);
    if (!a) {
      const names = [...adapters.keys()];
      throw new RequestError(
        'invalid_parameter',
        `unknown adapter ${JSON.stringify(adapter)}: ${names.length ? `this server has ${names.map((n) => JSON.stringify(n)).join(', ')}` : 'this server serves no adapters'}`,
        'adapter',
      );
    }
    fromField = a;
  }
  if (fromModel && fromField && fromModel !== fromField) {
    throw new RequestError('invalid_parameter', `adapter ${JSON.stringify(adapter)} contradicts model ${JSON.stringify(model)}`, 'adapter');
  }
  const chosen = fromField ?? fromModel;
  return { model: model ?? (chosen ? `${modelId}:${chosen.name}` : modelId), adapter: chosen };
}

// Adapters served beside the base model (docs/adapters.md): loading the
// folders of `--adapters DIR`, the check that each was trained on the served
// weights, and which adapter a request asks for (`adapter`, or `model` as
// "base:adapter" or the adapter's own name, as vLLM names LoRA adapters).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { AdapterInfo, NativeEngine } from '../native';
import { RequestError } from './errors';

export const ADAPTER_CONFIG = 'adapter_config.json';
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
  const single = path.join(modelDir, 'model.safetensors');
  let files: string[];
  if (fs.existsSync(single)) {
    files = [single];
  } else {
    const index = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.safetensors.index.json'), 'utf8'));
    files = [...new Set(Object.values(index.weight_map as Record<string, string>))].sort().map((f) => path.join(modelDir, f));
  }
  const h = createHash('sha256');
  const buf = Buffer.alloc(1 << 20);
  for (const f of files) {
    const fd = fs.openSync(f, 'r');
    try {
      for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
  }
  return h.digest('hex');
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
    config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  } catch (e) {
    throw new AdapterLoadError(`${configPath}: invalid JSON (${(e as Error).message})`);
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

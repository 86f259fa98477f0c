// What every command shares: the model flags (--model, --adapter, --device,
// --threads), finding the model folder, loading it, and the server's runtime
// around it, so generate, score and eval run the server's path.
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Command } from 'commander';

import { AdapterLoadError, loadAdapter } from '../engine/adapters';
import type { ModelRuntime } from '../engine/completion';
import { RequestError } from '../engine/errors';
import { RuntimeHolder } from '../engine/runtime';
import { DEFAULT_SCHEDULER_OPTIONS } from '../engine/scheduler';
import { isGgufFile, loadTokenizer, Tokenizer } from '../engine/tokenizer';
import { AdapterInfo, Device, Engine, KvCacheDtype, NativeEngine, Quantize } from '../native';
import { packageRoot } from '../package-root';
import { flag, integer, oneOf, UsageError } from './flags';

/** The engine's own limit on --threads (cpp/binding/engine_wrap.cpp). */
const MAX_THREADS = 4096;

export interface ModelFlags {
  model?: string;
  adapter?: string;
  device: Device;
  threads?: number;
  quantize?: Quantize;
  kvCacheDtype: KvCacheDtype;
}

/** Adds the model flags to a command. */
export function modelFlags(cmd: Command): Command {
  return cmd
    .addOption(flag('--model <dir>', 'the model folder, a GGUF file, or the name of a folder under models/ ("default": the shipped model) (required)'))
    .addOption(flag('--adapter <dir>', 'an adapter folder (LoRA or prompt tuning) to load beside the model'))
    .addOption(flag('--device <device>', 'where the engine runs: cpu, cuda, or auto (CUDA when a GPU is usable)', oneOf<Device>('cpu', 'cuda', 'auto'), 'auto' as Device))
    .addOption(
      flag(
        '--threads <n>',
        'CPU compute threads (default: every core this process may use)',
        integer(1, 'a positive integer', MAX_THREADS, `at most ${MAX_THREADS} (the engine's limit)`),
      ),
    )
    .addOption(flag('--quantize <format>', 'quantize the weight matrices at load: q8_0 (docs/models.md, "8-bit weights"; default: as the checkpoint stores them)', oneOf<Quantize>('q8_0')))
    .addOption(
      flag(
        '--kv-cache-dtype <type>',
        'the KV cache element type: auto (f16 beside Q8_0 weights and on CUDA, else f32), f32 or f16 (docs/design.md, "The KV cache")',
        oneOf<KvCacheDtype>('auto', 'f32', 'f16'),
        'auto' as KvCacheDtype,
      ),
    );
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** models/DEFAULT names the shipped model that `--model default` (npm start) serves. */
function defaultModelName(): string {
  const file = path.join(packageRoot(), 'models', 'DEFAULT');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    throw new UsageError(`--model default: ${file} is missing; name a model folder instead`);
  }
}

/** `--model default` or a bare name is models/<name> of the package when that folder exists. */
export function resolveModel(value: string | undefined): string {
  if (value === undefined) throw new UsageError('--model is required');
  if (value === '') throw new UsageError('--model must not be empty');
  if (isGgufFile(value)) return path.resolve(value);
  if (value === 'default' && !isDir(path.join(packageRoot(), 'models', 'default'))) value = defaultModelName();
  const bare = !/[\\/]/.test(value) && value !== '.' && value !== '..';
  const shipped = bare ? path.join(packageRoot(), 'models', value) : undefined;
  if (shipped && isDir(shipped)) return shipped;
  if (isDir(value)) return path.resolve(value);
  throw new UsageError(`--model: no model folder or .gguf file at ${value}` + (shipped ? ` (nor ${shipped})` : ''));
}

export interface Loaded {
  engine: NativeEngine;
  tokenizer: Tokenizer;
  /** The model folder. */
  dir: string;
  /** --adapter: the adapter folder loaded beside the model. */
  adapter?: AdapterInfo;
}

export async function load(flags: ModelFlags): Promise<Loaded> {
  const dir = resolveModel(flags.model);
  const tokenizer = loadTokenizer(dir);
  const engine = await Engine.load(dir, {
    device: flags.device,
    ...(flags.quantize ? { quantize: flags.quantize } : {}),
    kvCacheDtype: flags.kvCacheDtype,
    ...(flags.threads === undefined ? {} : { threads: flags.threads }),
  });
  if (flags.adapter === undefined) return { engine, tokenizer, dir };
  try {
    return { engine, tokenizer, dir, adapter: loadAdapter(engine, path.basename(path.resolve(flags.adapter)), flags.adapter, dir) };
  } catch (e) {
    if (e instanceof AdapterLoadError) throw new UsageError(`--adapter: ${e.message}`);
    throw e;
  }
}

/**
 * The server's runtime and scheduler around the loaded engine, so every
 * command runs the server's path. `stepTokens`: the longest prompt score and
 * eval send, so each goes in one step (src/engine/scoring.ts).
 */
export function runtime(l: Loaded, stepTokens = DEFAULT_SCHEDULER_OPTIONS.stepTokens): ModelRuntime {
  return new RuntimeHolder().attach(l.engine, l.tokenizer, path.basename(l.dir), {
    maxBatch: 1,
    stepTokens: Math.max(stepTokens, DEFAULT_SCHEDULER_OPTIONS.stepTokens),
    requestTimeoutMs: 0,
  });
}

/**
 * A refusal of the shared request validation in the CLI's words: a client
 * error (4xx) becomes a usage error (exit 2) naming the flag that carried
 * the field; anything else passes through (exit 1).
 */
export function asUsageError(e: unknown, flags: Record<string, string>): unknown {
  if (!(e instanceof RequestError) || e.status >= 500) return e;
  const param = e.param ?? '';
  const flag = flags[param.replace(/\[.*$/, '')];
  if (flag === undefined) return new UsageError(e.message);
  return new UsageError(param === e.message.slice(0, param.length) && !param.includes('[') ? flag + e.message.slice(param.length) : `${flag}: ${e.message}`);
}

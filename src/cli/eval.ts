// roost eval: perplexity and bits per byte of a text file, scored in
// overlapping windows when it is longer than the context (src/engine/scoring.ts).
import { Command } from 'commander';

import { isEncoderDecoder } from '../engine/encoder-decoder';
import { FileGuardError, readGuardedFile } from '../engine/file-guard';
import { scoreLong, scoreTokens } from '../engine/scoring';
import { knnFolder, readKnnMeta } from '../retrieval/knn';
import { MemorySetting, scoreWithMemory } from '../retrieval/knn-eval';
import { flag, integer, Parse, required, UsageError } from './flags';
import { load, ModelFlags, modelFlags, runtime } from './model';

/** eval's window when the model's context is unbounded and --context is not given. */
const DEFAULT_EVAL_WINDOW = 1024;
/** The largest text `roost eval` reads: it is tokenized whole, in memory. */
const EVAL_FILE_MAX_BYTES = 64 << 20;

interface EvalFlags extends ModelFlags {
  file?: string;
  context?: number;
  memory?: string;
  memoryK: number[];
  memoryLambda: number[];
  memoryTemperature: number[];
  memoryLocal?: boolean;
}

/** A comma-separated list of numbers each passing `ok` (eval scores every combination from one search). */
function numbers(ok: (x: number) => boolean, what: string): Parse<number[]> {
  return (v, name) =>
    v.split(',').map((part) => {
      const n = part.trim() === '' ? NaN : Number(part);
      if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`${name} must be ${what}, or a comma-separated list of them (got ${v})`);
      return n;
    });
}

export function evalCommand(): Command {
  const cmd = new Command('eval')
    .description('Print the perplexity and bits per byte of a UTF-8 text file as JSON.')
    .usage('--model DIR --file F [--context N] [options]');
  return modelFlags(cmd)
    .addOption(flag('--file <f>', `the text file (UTF-8, at most ${EVAL_FILE_MAX_BYTES >> 20} MiB) (required)`))
    .addOption(
      flag('--context <n>', `the scoring window in tokens (default: the model's context, or ${DEFAULT_EVAL_WINDOW} when it has no limit)`, integer(2, 'an integer >= 2')),
    )
    .addOption(flag('--memory <dir>', 'kNN memory: a datastore built with --knn (or its knn/ folder); exact search (docs/retrieval.md)'))
    .addOption(flag('--memory-k <k>', 'neighbours from each memory, 1 to 1024 (a list scores each)', numbers((x) => Number.isInteger(x) && x >= 1 && x <= 1024, 'an integer from 1 to 1024'), [16], '16'))
    .addOption(flag('--memory-lambda <l>', 'weight of the memory distribution, 0 to 1 (a list scores each)', numbers((x) => x >= 0 && x <= 1, 'a number from 0 to 1'), [0.25], '0.25'))
    .addOption(flag('--memory-temperature <t>', 'of the softmax over minus squared distances', numbers((x) => x > 0, 'a number > 0'), [1], '1'))
    .addOption(flag('--memory-local', "local memory: each window's own earlier positions (alone without --memory)"))
    .action(runEval);
}

async function runEval(flags: EvalFlags): Promise<void> {
  const file = required(flags.file, '--file');
  let bytes: Buffer;
  try {
    bytes = await readGuardedFile(file, EVAL_FILE_MAX_BYTES);
  } catch (e) {
    if (e instanceof FileGuardError) throw new UsageError(`--file: cannot read ${e.message}`);
    throw e;
  }
  const context = flags.context;
  const l = await load(flags);
  if (isEncoderDecoder(l.engine.info())) {
    throw new UsageError('roost eval scores a text under a decoder-only model; this is an encoder-decoder model (t5): score a target given an input with roost score --text INPUT --target TARGET');
  }
  const tokens = l.tokenizer.encode(bytes.toString('utf8'));
  if (tokens.length < 2) throw new UsageError(`--file: ${file} holds ${tokens.length} token(s); eval needs at least 2`);
  // A soft prompt takes its positions out of every window.
  const reserved = l.adapter?.promptTokens ?? 0;
  const max = l.engine.info().maxContext > 0 ? l.engine.info().maxContext - reserved : 0;
  if (context !== undefined && max > 0 && context > max) {
    throw new UsageError(`--context ${context} is longer than the model's context (${max}${reserved ? ` after the adapter's ${reserved} soft-prompt positions` : ''})`);
  }
  const window = context ?? (max > 0 ? max : DEFAULT_EVAL_WINDOW);
  if (flags.memory !== undefined || flags.memoryLocal) return evalWithMemory(flags, l.engine, tokens, bytes.length, window);
  const rt = runtime(l, window);
  const r = await scoreLong((ids) => scoreTokens(rt, ids, l.adapter?.name), tokens, window);
  let nll = 0; // nats
  for (let t = 1; t < tokens.length; t++) nll -= r.logprobs[t]!;
  const scored = tokens.length - 1;
  const result = {
    bits_per_byte: nll / Math.LN2 / bytes.length,
    perplexity: Math.exp(nll / scored),
    tokens: tokens.length,
    scored_tokens: scored,
    bytes: bytes.length,
    nll,
    window: r.window,
    stride: r.stride,
    windows: r.windows,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

/** One JSON line per (k, lambda) setting: the fields of a plain eval with memory, plus `memory` and `without`. */
async function evalWithMemory(flags: EvalFlags, engine: Awaited<ReturnType<typeof load>>['engine'], tokens: number[], bytes: number, window: number): Promise<void> {
  if (flags.adapter !== undefined) throw new UsageError('--memory cannot be combined with --adapter');
  let dir: string | null = null;
  let entries = 0;
  if (flags.memory !== undefined) {
    dir = knnFolder(flags.memory);
    if (dir === null) throw new UsageError(`--memory: ${flags.memory} holds no kNN memory (keys.f16); build one with \`roost datastore build --knn\``);
    try {
      entries = engine.loadMemory('eval', dir);
    } catch (e) {
      throw new UsageError(`--memory: ${(e as Error).message}`);
    }
  }
  const temperature = flags.memoryTemperature;
  const settings: MemorySetting[] = [];
  for (const k of flags.memoryK)
    for (const lambda of flags.memoryLambda)
      for (const t of temperature) settings.push({ external: dir !== null, local: flags.memoryLocal ?? false, k, lambda, temperature: t });
  const started = Date.now();
  const r = await scoreWithMemory(engine, tokens, window, dir === null ? null : 'eval', settings);
  const seconds = (Date.now() - started) / 1000;
  const nllOf = (lp: Array<number | null>) => lp.reduce<number>((a, x, t) => (t === 0 ? a : a - x!), 0);
  const plain = nllOf(r.plain);
  const scored = tokens.length - 1;
  const meta = dir === null ? null : readKnnMeta(dir);
  settings.forEach((s, i) => {
    const nll = nllOf(r.withMemory[i]!);
    const result = {
      bits_per_byte: nll / Math.LN2 / bytes,
      perplexity: Math.exp(nll / scored),
      tokens: tokens.length,
      scored_tokens: scored,
      bytes,
      nll,
      window: r.window,
      stride: r.stride,
      windows: r.windows,
      memory: {
        datastore: dir,
        entries,
        ...(meta ? { built_by: meta.model } : {}),
        k: s.k,
        lambda: s.lambda,
        temperature: s.temperature,
        local: s.local,
        search: 'exact: batched GEMM over the F16 keys (cpp/knn_memory.h)',
        seconds,
      },
      without: { bits_per_byte: plain / Math.LN2 / bytes, nll: plain },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  });
}

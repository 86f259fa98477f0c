// roost serve / generate / score / eval. generate, score and eval run on the
// server's path (runtime, scheduler, request validation, context check).
// Usage errors exit 2, runtime errors exit 1; messages go to stderr, results
// to stdout.

// The engine runs its own compute threads; libuv's pool only waits on them and
// must not fight them for the cores (docs/peers.md). Set before anything
// touches the pool.
process.env.UV_THREADPOOL_SIZE ??= '2';

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { AdapterLoadError, loadAdapter } from './engine/adapters';
import { type ModelRuntime, startCompletion } from './engine/completion';
import { RequestError } from './engine/errors';
import { FileGuardError, readGuardedFile } from './engine/file-guard';
import { parseCompletionBody } from './engine/params';
import { RuntimeHolder } from './engine/runtime';
import { DEFAULT_SCHEDULER_OPTIONS, MAX_TIMER_MS } from './engine/scheduler';
import { scoreLong, scoreTokens } from './engine/scoring';
import { loadTokenizer, Tokenizer } from './engine/tokenizer';
import { AdapterInfo, Device, Engine, isNativeError, NativeEngine } from './native';
import { packageRoot } from './package-root';
import { serve } from './server';

class UsageError extends Error {}

type Values = Record<string, string | boolean | undefined>;
type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

const COMMON: OptionSpec = {
  model: { type: 'string' },
  adapter: { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

interface Command {
  usage: string;
  options: OptionSpec;
  run(values: Values): Promise<void>;
}

const COMMON_USAGE = '[--adapter DIR] [--device cpu|cuda|auto] [--threads N]';
/** eval's window when the model's context is unbounded and --context is not given. */
const DEFAULT_EVAL_WINDOW = 1024;
/** The largest text `roost eval` reads: it is tokenized whole, in memory. */
const EVAL_FILE_MAX_BYTES = 64 << 20;
/** The engine's own limit on --threads (cpp/binding/engine_wrap.cpp). */
const MAX_THREADS = 4096;

const COMMANDS: Record<string, Command> = {
  generate: {
    usage: `roost generate --model DIR --prompt TEXT --max-tokens N [--temperature T] [--top-p P] [--top-k K] [--seed S] ${COMMON_USAGE}`,
    options: {
      ...COMMON,
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
    },
    run: runGenerate,
  },
  score: {
    usage: `roost score --model DIR (--tokens 1,2,3 | --text TEXT) ${COMMON_USAGE}`,
    options: { ...COMMON, tokens: { type: 'string' }, text: { type: 'string' } },
    run: runScore,
  },
  eval: {
    usage: `roost eval --model DIR --file F [--context N] ${COMMON_USAGE}`,
    options: { ...COMMON, file: { type: 'string' }, context: { type: 'string' } },
    run: runEval,
  },
};

function usage(): string {
  return ['usage:', ...Object.values(COMMANDS).map((c) => '  ' + c.usage)].join('\n');
}

// ---------------------------------------------------------------- flag parsing

/**
 * parseArgs refuses `--max-tokens -3` as ambiguous; join a string option with
 * a following value that starts with one dash (a negative number, a prompt
 * "-x") so the value reaches the validation below and its message.
 */
function joinDashValues(args: string[], options: OptionSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    const next = args[i + 1];
    if (name && options[name]?.type === 'string' && next !== undefined && next.startsWith('-') && !next.startsWith('--')) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function str(values: Values, flag: string): string | undefined {
  const v = values[flag];
  return typeof v === 'string' ? v : undefined;
}

function required(values: Values, flag: string): string {
  const v = str(values, flag);
  if (v === undefined) throw new UsageError(`--${flag} is required`);
  return v;
}

/** `tooLarge` words the message for a value past max when `what` does not say the bound. */
function integerFlag(values: Values, flag: string, min: number, what: string, max = Number.MAX_SAFE_INTEGER, tooLarge = what): number | undefined {
  const v = str(values, flag);
  if (v === undefined) return undefined;
  // BigInt keeps the comparison exact past 2^53, where Number would round.
  const isInt = /^[+-]?\d+$/.test(v.trim());
  if (!isInt || BigInt(v.trim()) < BigInt(min)) throw new UsageError(`--${flag} must be ${what} (got ${v})`);
  if (BigInt(v.trim()) > BigInt(max)) throw new UsageError(`--${flag} must be ${tooLarge} (got ${v})`);
  return Number(v.trim());
}

function numberFlag(values: Values, flag: string, ok: (x: number) => boolean, what: string): number | undefined {
  const v = str(values, flag);
  if (v === undefined) return undefined;
  const n = v.trim() === '' ? NaN : Number(v);
  if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`--${flag} must be ${what} (got ${v})`);
  return n;
}

/** A duration flag in seconds, as ms that fit a Node timer (a longer one fires at once). */
function secondsFlag(values: Values, flag: string, min: 'zero' | 'positive'): number | undefined {
  const maxSeconds = MAX_TIMER_MS / 1000;
  const s = numberFlag(
    values,
    flag,
    (x) => (min === 'zero' ? x >= 0 : x > 0) && x <= maxSeconds,
    `a number of seconds ${min === 'zero' ? 'from 0 (none)' : 'above 0 and'} up to ${maxSeconds}`,
  );
  return s === undefined ? undefined : Math.round(s * 1000);
}

const threadsFlag = (values: Values) => integerFlag(values, 'threads', 1, 'a positive integer', MAX_THREADS, `at most ${MAX_THREADS} (the engine's limit)`);

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** `--model default` or a bare name is models/<name> of the package when that folder exists. */
/** models/DEFAULT names the shipped model that `--model default` (npm start) serves. */
function defaultModelName(): string {
  const file = path.join(packageRoot(), 'models', 'DEFAULT');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    throw new UsageError(`--model default: ${file} is missing; name a model folder instead`);
  }
}

function resolveModel(value: string): string {
  if (value === '') throw new UsageError('--model must not be empty');
  if (value === 'default' && !isDir(path.join(packageRoot(), 'models', 'default'))) value = defaultModelName();
  const bare = !/[\\/]/.test(value) && value !== '.' && value !== '..';
  const shipped = bare ? path.join(packageRoot(), 'models', value) : undefined;
  if (shipped && isDir(shipped)) return shipped;
  if (isDir(value)) return path.resolve(value);
  throw new UsageError(`--model: no model folder at ${value}` + (shipped ? ` (nor ${shipped})` : ''));
}

interface Loaded {
  engine: NativeEngine;
  tokenizer: Tokenizer;
  /** The model folder. */
  dir: string;
  /** --adapter: the adapter folder loaded beside the model. */
  adapter?: AdapterInfo;
}

async function load(values: Values): Promise<Loaded> {
  const device = str(values, 'device') ?? 'auto';
  if (!['cpu', 'cuda', 'auto'].includes(device)) throw new UsageError(`--device must be cpu, cuda or auto (got ${device})`);
  const threads = threadsFlag(values);
  const dir = resolveModel(required(values, 'model'));
  const tokenizer = loadTokenizer(dir);
  const engine = await Engine.load(dir, { device: device as Device, ...(threads === undefined ? {} : { threads }) });
  const adapterDir = str(values, 'adapter');
  if (adapterDir === undefined) return { engine, tokenizer, dir };
  try {
    return { engine, tokenizer, dir, adapter: loadAdapter(engine, path.basename(path.resolve(adapterDir)), adapterDir, dir) };
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
function runtime(l: Loaded, stepTokens = DEFAULT_SCHEDULER_OPTIONS.stepTokens): ModelRuntime {
  return new RuntimeHolder().attach(l.engine, l.tokenizer, path.basename(l.dir), {
    maxBatch: 1,
    stepTokens: Math.max(stepTokens, DEFAULT_SCHEDULER_OPTIONS.stepTokens),
    requestTimeoutMs: 0,
  });
}

/**
 * A flag's text as the JSON value an HTTP client would send, so the request
 * validation (src/engine/params.ts) judges it: numbers as numbers (unless
 * rounding would change them), anything else as the string, which it refuses
 * naming the flag.
 */
function jsonValue(v: string | undefined): unknown {
  if (v === undefined) return undefined;
  const n = v.trim() === '' ? NaN : Number(v);
  if (!Number.isFinite(n) || (/^[+-]?\d+$/.test(v.trim()) && !Number.isSafeInteger(n))) return v;
  return n;
}

/**
 * A refusal of the shared request validation in the CLI's words: a client
 * error (4xx) becomes a usage error (exit 2) naming the flag that carried
 * the field; anything else passes through (exit 1).
 */
function asUsageError(e: unknown, flags: Record<string, string>): unknown {
  if (!(e instanceof RequestError) || e.status >= 500) return e;
  const param = e.param ?? '';
  const flag = flags[param.replace(/\[.*$/, '')];
  if (flag === undefined) return new UsageError(e.message);
  return new UsageError(param === e.message.slice(0, param.length) && !param.includes('[') ? flag + e.message.slice(param.length) : `${flag}: ${e.message}`);
}

// ---------------------------------------------------------------- commands

const GENERATE_FLAGS = { prompt: '--prompt', max_tokens: '--max-tokens', temperature: '--temperature', top_p: '--top-p', top_k: '--top-k', seed: '--seed' };

async function runGenerate(values: Values): Promise<void> {
  const body: Record<string, unknown> = { prompt: required(values, 'prompt'), max_tokens: required(values, 'max-tokens') };
  for (const [field, flag] of Object.entries(GENERATE_FLAGS)) {
    if (field !== 'prompt') body[field] = jsonValue(str(values, flag.slice(2)));
  }
  const l = await load(values);
  const rt = runtime(l);
  if (l.adapter) body.adapter = l.adapter.name;
  try {
    // Streamed: each piece of text goes out as soon as it is whole UTF-8.
    const params = parseCompletionBody({ ...body, stream: true }, { vocabSize: rt.info.vocabSize });
    const run = startCompletion(rt, params, {
      onDelta(_index, text) {
        if (text !== '') process.stdout.write(text);
      },
    });
    await run.result;
  } catch (e) {
    throw asUsageError(e, GENERATE_FLAGS);
  }
}

function parseTokenList(v: string): number[] {
  if (!/^\s*\d+\s*(,\s*\d+\s*)*$/.test(v)) {
    throw new UsageError(`--tokens must be a comma-separated list of token ids, e.g. 1,2,3 (got ${JSON.stringify(v)})`);
  }
  return v.split(',').map((s) => Number(s.trim()));
}

async function runScore(values: Values): Promise<void> {
  const tokensFlag = str(values, 'tokens');
  const text = str(values, 'text');
  if ((tokensFlag === undefined) === (text === undefined)) throw new UsageError('give exactly one of --tokens or --text');
  const listed = tokensFlag !== undefined ? parseTokenList(tokensFlag) : undefined;
  const l = await load(values);
  const tokens = listed ?? l.tokenizer.encode(text!);
  if (tokens.length === 0) throw new UsageError('--text must not be empty: it encodes to no tokens');
  try {
    const logprobs = await scoreTokens(runtime(l, tokens.length), tokens, l.adapter?.name);
    process.stdout.write(JSON.stringify({ tokens, logprobs }) + '\n');
  } catch (e) {
    const err = asUsageError(e, { prompt: listed ? '--tokens' : '--text' });
    if (e instanceof RequestError && e.code === 'context_length_exceeded') (err as Error).message += ' (roost eval scores texts longer than the context)';
    throw err;
  }
}

async function runEval(values: Values): Promise<void> {
  const file = required(values, 'file');
  let bytes: Buffer;
  try {
    bytes = await readGuardedFile(file, EVAL_FILE_MAX_BYTES);
  } catch (e) {
    if (e instanceof FileGuardError) throw new UsageError(`--file: cannot read ${e.message}`);
    throw e;
  }
  const context = integerFlag(values, 'context', 2, 'an integer >= 2');
  const l = await load(values);
  const tokens = l.tokenizer.encode(bytes.toString('utf8'));
  if (tokens.length < 2) throw new UsageError(`--file: ${file} holds ${tokens.length} token(s); eval needs at least 2`);
  // A soft prompt takes its positions out of every window.
  const reserved = l.adapter?.promptTokens ?? 0;
  const max = l.engine.info().maxContext > 0 ? l.engine.info().maxContext - reserved : 0;
  if (context !== undefined && max > 0 && context > max) {
    throw new UsageError(`--context ${context} is longer than the model's context (${max}${reserved ? ` after the adapter's ${reserved} soft-prompt positions` : ''})`);
  }
  const window = context ?? (max > 0 ? max : DEFAULT_EVAL_WINDOW);
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

// ---------------------------------------------------------------- entry

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined) {
      process.stderr.write(usage() + '\n');
      return 2;
    }
    if (name === '--help' || name === '-h' || name === 'help') {
      process.stdout.write(usage() + '\n');
      return 0;
    }
    const command = COMMANDS[name];
    if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}\n${usage()}`);
    let values: Values;
    try {
      values = parseArgs({
        args: joinDashValues(rest, command.options),
        options: command.options,
        strict: true,
        allowPositionals: false,
      }).values as Values;
    } catch (e) {
      throw new UsageError(`${(e as Error).message}\nusage: ${command.usage}`);
    }
    if (values.help) {
      process.stdout.write(`usage: ${command.usage}\n`);
      return 0;
    }
    await command.run(values);
    return 0;
  } catch (e) {
    const prefix = name && COMMANDS[name] ? `roost ${name}: ` : 'roost: ';
    if (e instanceof UsageError) {
      process.stderr.write(prefix + e.message + '\n');
      return 2;
    }
    const err = e as Error & { code?: string };
    const code = isNativeError(e) || /^E_/.test(String(err.code ?? '')) ? ` [${err.code}]` : '';
    process.stderr.write(`${prefix}${err?.message ?? String(e)}${code}\n`);
    return 1;
  }
}

/** bin/roost.js calls this: exit code through process.exitCode so stdout drains. */
export function run(): void {
  // A reader that goes away (`roost generate ... | head`) is not an error of ours.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`roost: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

// ---------------------------------------------------------------- serve (src/server.ts)

COMMANDS.serve = {
  usage:
    'roost serve --model DIR [--adapters DIR] [--allow-adapter-loading] [--host H] [--port P] [--max-batch N] [--max-queue N] [--max-request-share F] [--api-key K] ' +
    `[--request-timeout SECONDS] [--stall-timeout SECONDS] [--drain-seconds SECONDS] ${COMMON_USAGE}`,
  options: {
    ...COMMON,
    host: { type: 'string' },
    port: { type: 'string' },
    'max-batch': { type: 'string' },
    'max-queue': { type: 'string' },
    'max-request-share': { type: 'string' },
    'api-key': { type: 'string' },
    'request-timeout': { type: 'string' },
    'stall-timeout': { type: 'string' },
    'drain-seconds': { type: 'string' },
    adapters: { type: 'string' },
    'allow-adapter-loading': { type: 'boolean' },
  },
  async run(values: Values): Promise<void> {
    const device = str(values, 'device') ?? 'auto';
    if (!['cpu', 'cuda', 'auto'].includes(device)) throw new UsageError(`--device must be cpu, cuda or auto (got ${device})`);
    const port = integerFlag(values, 'port', 0, 'an integer from 0 to 65535 (0 = a free port)') ?? 8080;
    if (port > 65535) throw new UsageError(`--port must be an integer from 0 to 65535 (0 = a free port) (got ${port})`);
    const requestTimeoutMs = secondsFlag(values, 'request-timeout', 'zero');
    const stallTimeoutMs = secondsFlag(values, 'stall-timeout', 'positive');
    const drainMs = secondsFlag(values, 'drain-seconds', 'zero');
    const apiKey = str(values, 'api-key');
    if (apiKey === '') throw new UsageError('--api-key must not be empty');
    await serve({
      model: resolveModel(required(values, 'model')),
      host: str(values, 'host') ?? '127.0.0.1',
      port,
      device: device as 'cpu' | 'cuda' | 'auto',
      threads: threadsFlag(values),
      maxBatch: integerFlag(values, 'max-batch', 1, 'a positive integer'),
      maxQueue: integerFlag(values, 'max-queue', 0, 'an integer >= 0'),
      maxRequestShare: numberFlag(values, 'max-request-share', (x) => x > 0 && x <= 1, 'a number above 0 and at most 1'),
      apiKey,
      requestTimeoutMs,
      stallTimeoutMs,
      drainMs,
      adapters: str(values, 'adapters') ?? str(values, 'adapter'),
      allowAdapterLoading: values['allow-adapter-loading'] === true,
    });
  },
};

if (require.main === module) run();

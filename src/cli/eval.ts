// roost eval: perplexity and bits per byte of a text file, scored in
// overlapping windows when it is longer than the context (src/engine/scoring.ts).
import { Command } from 'commander';

import { isEncoderDecoder } from '../engine/encoder-decoder';
import { FileGuardError, readGuardedFile } from '../engine/file-guard';
import { scoreLong, scoreTokens } from '../engine/scoring';
import { flag, integer, required, UsageError } from './flags';
import { load, ModelFlags, modelFlags, runtime } from './model';

/** eval's window when the model's context is unbounded and --context is not given. */
const DEFAULT_EVAL_WINDOW = 1024;
/** The largest text `roost eval` reads: it is tokenized whole, in memory. */
const EVAL_FILE_MAX_BYTES = 64 << 20;

interface EvalFlags extends ModelFlags {
  file?: string;
  context?: number;
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

// roost score: the log-probability of each token of a text (or of a list of
// token ids) under the model, as JSON on stdout.
import { Command } from 'commander';

import { isEncoderDecoder, scoreTarget } from '../engine/encoder-decoder';
import { RequestError } from '../engine/errors';
import { FileGuardError, parseJsonFile, readGuardedFileSync } from '../engine/file-guard';
import { scoreTokens } from '../engine/scoring';
import { flag, UsageError } from './flags';
import { asUsageError, load, ModelFlags, modelFlags, runtime } from './model';

interface ScoreFlags extends ModelFlags {
  tokens?: number[];
  text?: string;
  target?: string;
  targetTokens?: number[];
  neighbours?: string;
}

export function scoreCommand(): Command {
  const cmd = new Command('score')
    .description('Print {"tokens", "logprobs"}: each token\'s log-probability given the ones before it (the first is null).')
    .usage('--model DIR (--tokens 1,2,3 | --text TEXT) [--target-tokens 4,5 | --target TEXT] [options]');
  return modelFlags(cmd)
    .addOption(flag('--tokens <ids>', 'the token ids to score, comma-separated (this or --text)', parseTokenList))
    .addOption(flag('--text <text>', "the text to score, tokenized with the model's tokenizer (this or --tokens)"))
    .addOption(flag('--target <text>', 'encoder-decoder models: the decoder text to score given --text/--tokens as the input'))
    .addOption(flag('--target-tokens <ids>', 'encoder-decoder models: the decoder token ids to score, comma-separated', parseTokenList))
    .addOption(flag('--neighbours <file>', 'retro: a JSON list, per chunk, of its k neighbours (lists of 2m token ids) or null (docs/retro.md)'))
    .action(runScore);
}

function parseTokenList(v: string): number[] {
  if (!/^\s*\d+\s*(,\s*\d+\s*)*$/.test(v)) {
    throw new UsageError(`--tokens must be a comma-separated list of token ids, e.g. 1,2,3 (got ${JSON.stringify(v)})`);
  }
  return v.split(',').map((s) => Number(s.trim()));
}

async function runScore(flags: ScoreFlags): Promise<void> {
  const { tokens: listed, text } = flags;
  if ((listed === undefined) === (text === undefined)) throw new UsageError('give exactly one of --tokens or --text');
  const l = await load(flags);
  const tokens = listed ?? l.tokenizer.encode(text!);
  if (tokens.length === 0) throw new UsageError('--text must not be empty: it encodes to no tokens');
  const encDec = isEncoderDecoder(l.engine.info());
  if (flags.target !== undefined && flags.targetTokens !== undefined) throw new UsageError('give at most one of --target or --target-tokens');
  const wantsTarget = flags.target !== undefined || flags.targetTokens !== undefined;
  if (wantsTarget !== encDec) {
    throw new UsageError(encDec
      ? 'this is an encoder-decoder model: give --target TEXT or --target-tokens IDS (scored given --text/--tokens as the input)'
      : '--target and --target-tokens are for encoder-decoder models (model_type t5) only');
  }
  if (encDec) {
    const target = flags.targetTokens ?? l.tokenizer.encode(flags.target!);
    if (target.length === 0) throw new UsageError('--target must not be empty: it encodes to no tokens');
    const V = l.engine.info().vocabSize;
    for (const [flagName, ids] of [['--tokens', tokens], ['--target-tokens', target]] as const) {
      const bad = ids.find((t) => t >= V);
      if (bad !== undefined) throw new UsageError(`${flagName}: token id ${bad} is outside the vocabulary (0..${V - 1})`);
    }
    const logprobs = await scoreTarget(l.engine, tokens, target);
    process.stdout.write(JSON.stringify({ tokens: target, logprobs }) + '\n');
    return;
  }
  try {
    const neighbours = flags.neighbours === undefined ? undefined : readNeighbours(flags.neighbours);
    const logprobs = await scoreTokens(runtime(l, tokens.length), tokens, l.adapter?.name, neighbours);
    process.stdout.write(JSON.stringify({ tokens, logprobs }) + '\n');
  } catch (e) {
    const err = asUsageError(e, { prompt: listed ? '--tokens' : '--text' });
    if (e instanceof RequestError && e.code === 'context_length_exceeded') (err as Error).message += ' (roost eval scores texts longer than the context)';
    throw err;
  }
}

/** k * 2m token ids per chunk as JSON text: 256 MiB is far past any context Roost serves. */
const NEIGHBOURS_MAX_BYTES = 256 << 20;

/** --neighbours FILE: [[k lists of 2m ids] | null, ...] per chunk, flattened per chunk for the engine. */
function readNeighbours(path: string): Array<number[] | null> {
  let v: unknown;
  try {
    v = parseJsonFile(path, readGuardedFileSync(path, NEIGHBOURS_MAX_BYTES));
  } catch (e) {
    if (e instanceof FileGuardError) throw new UsageError(`--neighbours: cannot read ${e.message}`);
    throw e;
  }
  const isIds = (r: unknown) => Array.isArray(r) && r.every((t) => Number.isInteger(t));
  if (!Array.isArray(v) || !v.every((c) => c === null || (Array.isArray(c) && c.every(isIds)))) {
    throw new UsageError(`--neighbours ${path}: must be a JSON list, per chunk, of null or a list of neighbours (lists of token ids)`);
  }
  return v.map((c) => (c === null ? null : (c as number[][]).flat()));
}

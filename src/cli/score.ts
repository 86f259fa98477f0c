// roost score: the log-probability of each token of a text (or of a list of
// token ids) under the model, as JSON on stdout.
import { readFileSync } from 'node:fs';

import { Command } from 'commander';

import { RequestError } from '../engine/errors';
import { scoreTokens } from '../engine/scoring';
import { flag, UsageError } from './flags';
import { asUsageError, load, ModelFlags, modelFlags, runtime } from './model';

interface ScoreFlags extends ModelFlags {
  tokens?: number[];
  text?: string;
  neighbours?: string;
}

export function scoreCommand(): Command {
  const cmd = new Command('score')
    .description('Print {"tokens", "logprobs"}: each token\'s log-probability given the ones before it (the first is null).')
    .usage('--model DIR (--tokens 1,2,3 | --text TEXT) [options]');
  return modelFlags(cmd)
    .addOption(flag('--tokens <ids>', 'the token ids to score, comma-separated (this or --text)', parseTokenList))
    .addOption(flag('--text <text>', "the text to score, tokenized with the model's tokenizer (this or --tokens)"))
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

/** --neighbours FILE: [[k lists of 2m ids] | null, ...] per chunk, flattened per chunk for the engine. */
function readNeighbours(path: string): Array<number[] | null> {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`--neighbours ${path}: ${(e as Error).message}`);
  }
  const isIds = (r: unknown) => Array.isArray(r) && r.every((t) => Number.isInteger(t));
  if (!Array.isArray(v) || !v.every((c) => c === null || (Array.isArray(c) && c.every(isIds)))) {
    throw new UsageError(`--neighbours ${path}: must be a JSON list, per chunk, of null or a list of neighbours (lists of token ids)`);
  }
  return v.map((c) => (c === null ? null : (c as number[][]).flat()));
}

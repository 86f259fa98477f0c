// roost score: the log-probability of each token of a text (or of a list of
// token ids) under the model, as JSON on stdout.
import { Command } from 'commander';

import { RequestError } from '../engine/errors';
import { scoreTokens } from '../engine/scoring';
import { flag, UsageError } from './flags';
import { asUsageError, load, ModelFlags, modelFlags, runtime } from './model';

interface ScoreFlags extends ModelFlags {
  tokens?: number[];
  text?: string;
}

export function scoreCommand(): Command {
  const cmd = new Command('score')
    .description('Print {"tokens", "logprobs"}: each token\'s log-probability given the ones before it (the first is null).')
    .usage('--model DIR (--tokens 1,2,3 | --text TEXT) [options]');
  return modelFlags(cmd)
    .addOption(flag('--tokens <ids>', 'the token ids to score, comma-separated (this or --text)', parseTokenList))
    .addOption(flag('--text <text>', "the text to score, tokenized with the model's tokenizer (this or --tokens)"))
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
    const logprobs = await scoreTokens(runtime(l, tokens.length), tokens, l.adapter?.name);
    process.stdout.write(JSON.stringify({ tokens, logprobs }) + '\n');
  } catch (e) {
    const err = asUsageError(e, { prompt: listed ? '--tokens' : '--text' });
    if (e instanceof RequestError && e.code === 'context_length_exceeded') (err as Error).message += ' (roost eval scores texts longer than the context)';
    throw err;
  }
}

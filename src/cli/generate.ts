// roost generate: one completion, streamed to stdout as it is sampled. The
// sampling flags go through the request validation HTTP uses
// (src/engine/params.ts), so they are judged, and their defaults taken, there.
// With --datastore the request carries a `retrieval` field and runs the
// server's retrieval (src/retrieval/retro.ts completionRetrieval): a retro
// model retrieves per chunk as it generates, another model gets passages
// before its prompt; the same seed gives the server's tokens.
import * as path from 'node:path';

import { Command } from 'commander';

import { startCompletion } from '../engine/completion';
import { parseCompletionBody } from '../engine/params';
import { Datastores } from '../retrieval/registry';
import { completionRetrieval } from '../retrieval/retro';
import { flag, required, UsageError } from './flags';
import { asUsageError, load, ModelFlags, modelFlags, runtime } from './model';

interface GenerateFlags extends ModelFlags {
  prompt?: string;
  maxTokens?: string;
  temperature?: string;
  topP?: string;
  topK?: string;
  seed?: string;
  datastore?: string;
  retrievalMode?: string;
  retrievalK?: string;
}

/** Request field -> the flag that carries it. */
const FIELDS = {
  prompt: '--prompt',
  max_tokens: '--max-tokens',
  temperature: '--temperature',
  top_p: '--top-p',
  top_k: '--top-k',
  seed: '--seed',
  'retrieval.datastore': '--datastore',
  'retrieval.mode': '--retrieval-mode',
  'retrieval.k': '--retrieval-k',
};

/** The request validation's defaults, for --help. */
const DEFAULTS = parseCompletionBody({ prompt: 'x' }, { vocabSize: 1 });

export function generateCommand(): Command {
  const cmd = new Command('generate')
    .description('Complete a prompt with the model and print the text as it is generated.')
    .usage('--model DIR --prompt TEXT --max-tokens N [options]');
  return modelFlags(cmd)
    .addOption(flag('--prompt <text>', 'the text to continue (required)'))
    .addOption(flag('--max-tokens <n>', 'how many tokens to generate at most (required)'))
    .addOption(flag('--temperature <t>', `sampling temperature from 0 to 2; 0 is greedy (default: ${DEFAULTS.temperature})`))
    .addOption(flag('--top-p <p>', `nucleus sampling: keep the smallest set of tokens whose probability reaches P (default: ${DEFAULTS.topP}, off)`))
    .addOption(flag('--top-k <k>', `keep only the K most likely tokens; 0 or -1 is off (default: ${DEFAULTS.topK}, off)`))
    .addOption(flag('--seed <s>', 'the sampling seed, for a repeatable run (default: a random seed each run)'))
    .addOption(
      flag(
        '--datastore <dir>',
        "retrieve from the datastore folder DIR as `roost serve --datastore` does for the `retrieval` field: a retro model per chunk as it generates (docs/retro.md), another model passages before the prompt (docs/retrieval.md)",
      ),
    )
    .addOption(flag('--retrieval-mode <mode>', 'with --datastore: dense, bm25 or hybrid (default: hybrid)'))
    .addOption(flag('--retrieval-k <k>', "with --datastore: passages per prompt, or a retro model's neighbours per chunk (default: 4; a retro model's num_neighbours)"))
    .action(runGenerate);
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

async function runGenerate(flags: GenerateFlags): Promise<void> {
  const body: Record<string, unknown> = {
    prompt: required(flags.prompt, '--prompt'),
    max_tokens: jsonValue(required(flags.maxTokens, '--max-tokens')),
    temperature: jsonValue(flags.temperature),
    top_p: jsonValue(flags.topP),
    top_k: jsonValue(flags.topK),
    seed: jsonValue(flags.seed),
  };
  if (flags.datastore === undefined && (flags.retrievalMode !== undefined || flags.retrievalK !== undefined)) {
    throw new UsageError(`${flags.retrievalMode !== undefined ? '--retrieval-mode' : '--retrieval-k'} needs --datastore`);
  }
  const name = flags.datastore === undefined ? undefined : path.basename(path.resolve(flags.datastore));
  if (name !== undefined) body.retrieval = { datastore: name, k: jsonValue(flags.retrievalK), mode: flags.retrievalMode };
  const l = await load(flags);
  const rt = runtime(l);
  if (l.adapter) body.adapter = l.adapter.name;
  const stores = name === undefined ? undefined : new Datastores({ [name]: path.resolve(flags.datastore!) });
  if (stores) {
    stores.open(l.tokenizer);
    for (const [, why] of stores.errors()) throw new UsageError(`--datastore: ${why}`);
  }
  const out = process.stdout;
  let last = '';
  try {
    // Streamed: each piece of text goes out as soon as it is whole UTF-8.
    const parsed = parseCompletionBody({ ...body, stream: true }, { vocabSize: rt.info.vocabSize });
    const { params } = completionRetrieval(rt, stores, parsed);
    const run = startCompletion(rt, params, {
      onDelta(_index, text) {
        if (text === '') return;
        out.write(text);
        last = text;
      },
    });
    await run.result;
  } catch (e) {
    throw asUsageError(e, FIELDS);
  }
  // At a terminal the shell prompt starts on its own line; a pipe gets the text exactly.
  if (out.isTTY && last !== '' && !last.endsWith('\n')) out.write('\n');
}

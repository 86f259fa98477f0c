// roost corpus build: a novelty corpus (a text and its suffix array) for the
// `novelty` field and `roost novelty` (src/novelty/corpus.ts, docs/novelty.md).
//   roost corpus build --file TEXT --out DIR [--model M]
// Over the text's bytes (byte-level models), or with --model over the ids of
// that model's tokenizer (subword models). Written into DIR.tmp-<pid> and
// renamed to DIR when complete.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command } from 'commander';

import { FileGuardError, readGuardedFile } from '../engine/file-guard';
import { loadTokenizer } from '../engine/tokenizer';
import { Corpus } from '../novelty/corpus';
import { ensureKjvCorpus } from '../novelty/kjv';
import { flag, required, UsageError } from './flags';
import { resolveModel } from './model';

/** The largest text indexed (4 bytes of suffix array per unit, and the construction's 3 more arrays). */
const CORPUS_MAX_BYTES = 256 << 20;

interface BuildFlags {
  file?: string;
  out?: string;
  model?: string;
  kjv?: boolean;
}

async function build(flags: BuildFlags): Promise<void> {
  const started = Date.now();
  if (flags.kjv) {
    if (flags.file || flags.model) throw new UsageError('--kjv takes no --file or --model: it indexes the shipped models\' training text over bytes');
    const dir = ensureKjvCorpus(flags.out ? path.resolve(flags.out) : undefined);
    process.stdout.write(JSON.stringify({ corpus: dir, ...Corpus.open(dir).describe(), seconds: (Date.now() - started) / 1000 }) + '\n');
    return;
  }
  const file = required(flags.file, '--file');
  const out = path.resolve(required(flags.out, '--out'));
  if (fs.existsSync(out)) throw new UsageError(`--out: ${out} already exists`);
  let text: Buffer;
  try {
    text = await readGuardedFile(file, CORPUS_MAX_BYTES);
  } catch (e) {
    if (e instanceof FileGuardError) throw new UsageError(`--file: cannot read ${e.message}`);
    throw e;
  }
  const model = flags.model ? resolveModel(flags.model) : undefined;
  const tokenizer = model ? { tokenizer: loadTokenizer(model), model: path.basename(model) } : undefined;
  const tmp = `${out}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  const c = Corpus.build(tmp, text, path.basename(file), tokenizer);
  fs.renameSync(tmp, out);
  process.stdout.write(JSON.stringify({ corpus: out, ...c.describe(), seconds: (Date.now() - started) / 1000 }) + '\n');
}

export function corpusCommand(): Command {
  const cmd = new Command('corpus').description('Index a training text for novelty (docs/novelty.md).').usage('build [options]');
  cmd.addCommand(
    new Command('build')
      .description('Build a suffix array of a text into a new corpus folder.')
      .usage('--file TEXT --out DIR [--model DIR] | --kjv [--out DIR]')
      .addOption(flag('--file <file>', 'the training text (required unless --kjv)'))
      .addOption(flag('--out <dir>', 'the new corpus folder; must not exist (required unless --kjv)'))
      .addOption(flag('--model <dir>', "index the ids of this model's tokenizer (subword models) instead of bytes (byte-level models; default)"))
      .addOption(flag('--kjv', "the shipped models' training text (Debian's bible-kjv up to James 1:1), into models/data/kjv-corpus unless --out; kept if already built"))
      .action(build),
  );
  return cmd;
}

// roost novelty: RAVEN's analysis of a model (src/novelty/analysis.ts,
// docs/novelty.md). Each line of --prompts is a held-out passage: its first
// --prompt-words words are the prompt; the human text is what follows them
// in the file, --length units long (bytes for a byte corpus, tokens for a
// token corpus); the model continues each prompt for as many units (eos
// ignored, so every sample has the full length), once per --temperature.
// Everything is measured against the --corpus folder; a JSON report goes to
// stdout (or --out), the figure to --plot (SVG).
//   roost novelty --model default --corpus models/data/kjv-corpus --prompts models/data/revelation-heldout.txt
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command } from 'commander';

import { startCompletion } from '../engine/completion';
import { FileGuardError, readGuardedFile } from '../engine/file-guard';
import { parseCompletionBody } from '../engine/params';
import { RuntimeHolder } from '../engine/runtime';
import type { Tokenizer } from '../engine/tokenizer';
import { markdownTable, plotSvg, pool, type Curve } from '../novelty/analysis';
import { Corpus, CorpusError, type Novelty } from '../novelty/corpus';
import { flag, integer, required, UsageError } from './flags';
import { load, ModelFlags, modelFlags } from './model';

interface NoveltyFlags extends ModelFlags {
  corpus?: string;
  prompts?: string;
  promptWords: number;
  length: number;
  temperature: number[];
  seed: number;
  maxBatch: number;
  out?: string;
  plot?: string;
}

/** --prompts is held-out text (Revelation 19-22 is 13 KB): a bound that no such file reaches. */
const PROMPTS_MAX_BYTES = 64 << 20;

const temperatures = (v: string, name: string): number[] =>
  v.split(',').map((t) => {
    const x = Number(t.trim());
    if (t.trim() === '' || !Number.isFinite(x) || x < 0 || x > 2) throw new UsageError(`${name} must be comma-separated temperatures from 0 to 2 (got ${v})`);
    return x;
  });

export function noveltyCommand(): Command {
  const cmd = new Command('novelty')
    .description("RAVEN's analysis: novel n-grams (n = 1..10) of the model's continuations against held-out human text of the same length, both against the training corpus.")
    .usage('--model DIR --corpus DIR --prompts FILE [options]');
  return modelFlags(cmd)
    .addOption(flag('--corpus <dir>', 'the corpus folder of the model\'s training text (roost corpus build) (required)'))
    .addOption(flag('--prompts <file>', 'held-out human text, one passage per line, that the model never trained on (required)'))
    .addOption(flag('--prompt-words <n>', 'words of each line that make its prompt', integer(1, 'a positive integer', 64), 4))
    .addOption(flag('--length <units>', 'units (bytes or tokens, as the corpus) of each continuation, human and generated', integer(10, 'an integer from 10 to 4096', 4096), 128))
    .addOption(flag('--temperature <t,...>', 'one model curve per temperature (0: greedy; top_p 1)', temperatures, [1, 0], '1,0'))
    .addOption(flag('--seed <s>', 'sampling seed of the first prompt (prompt i: s + i)', integer(0, 'an integer >= 0'), 0))
    .addOption(flag('--max-batch <n>', 'sequences decoded together', integer(1, 'a positive integer', 256), 16))
    .addOption(flag('--out <file>', 'write the JSON report here instead of stdout'))
    .addOption(flag('--plot <file>', 'write the figure (SVG) here'))
    .action(runNovelty);
}

/** The first `units` units of a text, in the corpus's unit. */
function cut(text: string, units: number, unit: Corpus['unit'], tokenizer: Tokenizer): { text: string; units: number } {
  if (unit === 'bytes') {
    const b = Buffer.from(text, 'utf8').subarray(0, units);
    return { text: b.toString('utf8'), units: b.length };
  }
  const ids = tokenizer.encode(text).slice(0, units);
  return { text: tokenizer.decode(ids), units: ids.length };
}

async function runNovelty(flags: NoveltyFlags): Promise<void> {
  const corpusDir = path.resolve(required(flags.corpus, '--corpus'));
  const promptsFile = required(flags.prompts, '--prompts');
  let corpus: Corpus;
  try {
    corpus = Corpus.open(corpusDir);
  } catch (e) {
    if (e instanceof CorpusError) throw new UsageError(`--corpus: ${e.message}`);
    throw e;
  }
  let file: string;
  try {
    file = (await readGuardedFile(promptsFile, PROMPTS_MAX_BYTES)).toString('utf8');
  } catch (e) {
    if (e instanceof FileGuardError) throw new UsageError(`--prompts: cannot read ${e.message}`);
    throw e;
  }
  const l = await load(flags);
  const tok = l.tokenizer;
  const rt = new RuntimeHolder().attach(l.engine, tok, path.basename(l.dir), { maxBatch: flags.maxBatch, requestTimeoutMs: 0 });

  // Prompts and their human continuations, from the lines with enough text after them.
  const samples: Array<{ prompt: string; human: { text: string; units: number } }> = [];
  let at = 0;
  for (const line of file.split('\n')) {
    const start = at;
    at += line.length + 1;
    const words = line.match(new RegExp(`^(\\S+\\s+){${flags.promptWords}}`));
    if (!words) continue;
    const prompt = words[0].replace(/\s+$/, '');
    const human = cut(file.slice(start + prompt.length), flags.length, corpus.unit, tok);
    if (human.units === flags.length) samples.push({ prompt, human });
  }
  if (samples.length === 0) throw new UsageError(`--prompts: no line of ${promptsFile} has ${flags.promptWords} words and ${flags.length} units after them`);

  const measure = (text: string) => corpus.noveltyOfText(text, tok);
  const curves: Curve[] = [pool('human (held out)', samples.map((s) => ({ novelty: measure(s.human.text), units: s.human.units })))];
  const examples: Record<string, string> = { 'human (held out)': samples[0].prompt + samples[0].human.text };
  for (const t of flags.temperature) {
    const runs = samples.map((s, i) => {
      const p = parseCompletionBody(
        { prompt: s.prompt, max_tokens: flags.length, temperature: t, top_p: 1, seed: flags.seed + i, ignore_eos: true },
        { vocabSize: rt.info.vocabSize },
      );
      return startCompletion(rt, p).result;
    });
    const texts = (await Promise.all(runs)).map((r) => r.choices[0].text);
    const label = t === 0 ? 'model, greedy' : `model, T=${t}`;
    const measured: Array<{ novelty: Novelty; units: number }> = texts.map((x) => {
      const c = cut(x, flags.length, corpus.unit, tok);
      return { novelty: measure(c.text), units: c.units };
    });
    curves.push(pool(label, measured));
    examples[label] = samples[0].prompt + texts[0];
  }

  const report = {
    model: path.basename(l.dir),
    corpus: { dir: flags.corpus, ...corpus.describe() },
    prompts: { file: promptsFile, samples: samples.length, prompt_words: flags.promptWords },
    length: flags.length,
    unit: corpus.unit,
    curves,
    examples,
    table: markdownTable(corpus.unit, curves),
  };
  const json = JSON.stringify(report, null, 2) + '\n';
  if (flags.out) fs.writeFileSync(flags.out, json);
  else process.stdout.write(json);
  if (flags.plot) {
    fs.writeFileSync(flags.plot, plotSvg(`${report.model}: novelty against its training text (${samples.length} x ${flags.length} ${corpus.unit})`, corpus.unit, curves));
  }
}

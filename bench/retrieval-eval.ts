// In-context retrieval on held-out verses with close parallels elsewhere in
// the Bible (docs/retrieval.md "Measurements"):
//  - the verses: the 50 held-out (James..Revelation) verses with the largest
//    share of their word trigrams found in one verse of the training text
//    (Genesis..Hebrews); that training verse is "the parallel" (only 3 share
//    half or more, 49 a quarter: the held-out books quote little verbatim);
//  - recall@4: a retrieved chunk overlaps the parallel verse by >= 16 bytes;
//    retrievers: the datastore's dense (trained embedder, usearch), bm25, hybrid,
//    and the same bag-of-features embedder with an untrained (random) table
//    (exact search), to show what training buys;
//  - two queries: the verse itself (how good the retriever is) and what the
//    server uses, the prompt's end (the 512 bytes before the verse + its label);
//  - bits per byte of the verse (text after its label, and the newline) with
//    the prompt alone (the 1024 bytes before it + label) and with the k = 4
//    passages laid before it (src/retrieval/in-context.ts), by the engine.
// Run (after `roost datastore build --model default --file TRAIN --out DIR`):
//   NODE_PATH=... node dist/bench/retrieval-eval.js --datastore DIR --train TRAIN --model models/bigbird --out bench/results/retrieval-eval.json
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { RuntimeHolder } from '../src/engine/runtime';
import { scoreTokens } from '../src/engine/scoring';
import { loadTokenizer } from '../src/engine/tokenizer';
import { Engine } from '../src/native';
import { Datastore, Passage, RetrievalMode } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { passageBlock, QUERY_CHARS } from '../src/retrieval/in-context';
import { words } from '../src/retrieval/text';
import { packageRoot } from '../src/package-root';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
};
const K = 4;
const CHUNK = 64;

interface Verse { start: number; end: number; label: string; text: string }
function verses(text: string, base = 0): Verse[] {
  const out: Verse[] = [];
  let at = 0;
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0) out.push({ start: base + at, end: base + at + line.length + 1, label: line.slice(0, sp + 1), text: line.slice(sp + 1) });
    at += line.length + 1;
  }
  return out;
}
const trigrams = (t: string) => {
  const w = words(t);
  return new Set(w.slice(2).map((_, i) => `${w[i]} ${w[i + 1]} ${w[i + 2]}`));
};

async function main() {
  const train = fs.readFileSync(arg('train'), 'latin1');
  const held = fs.readFileSync(path.join(packageRoot(), 'models', 'data', 'kjv-heldout.txt'), 'latin1');
  const modelDir = arg('model');
  const tokenizer = loadTokenizer(modelDir);
  const embedder = Embedder.load();
  const ds = Datastore.open(arg('datastore'), tokenizer, embedder);

  // The parallels.
  const tv = verses(train);
  const index = new Map<string, number[]>();
  tv.forEach((v, i) => trigrams(v.text).forEach((g) => (index.get(g) ?? index.set(g, []).get(g)!).push(i)));
  const hv = verses(held);
  const cands: Array<{ v: Verse; pos: number; parallel: Verse; share: number }> = [];
  let pos = 0;
  for (const v of hv) {
    const g = trigrams(v.text);
    const counts = new Map<number, number>();
    for (const x of g) for (const i of index.get(x) ?? []) counts.set(i, (counts.get(i) ?? 0) + 1);
    let best = -1, bestN = 0;
    for (const [i, n] of counts) if (n > bestN) [best, bestN] = [i, n];
    if (g.size >= 4 && bestN / g.size >= 0.2) cands.push({ v, pos, parallel: tv[best], share: bestN / g.size });
    pos += v.end - v.start;
  }
  cands.sort((a, b) => b.share - a.share || a.pos - b.pos);
  const set = cands.slice(0, 50);

  // An untrained table of the same shape: exact cosine search over the training chunks.
  const cfg = JSON.parse(fs.readFileSync(path.join(embedder.dir, 'config.json'), 'utf8'));
  const rnd = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-untrained-'));
  fs.copyFileSync(path.join(embedder.dir, 'config.json'), path.join(rnd, 'config.json'));
  fs.copyFileSync(path.join(embedder.dir, 'vocab.json'), path.join(rnd, 'vocab.json'));
  let seed = 7;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) - 0.5;
  const w = Buffer.alloc((cfg.vocab_size + cfg.trigram_buckets) * cfg.dim * 4);
  for (let i = 0; i < w.length / 4; i++) w.writeFloatLE(rand(), i * 4);
  fs.writeFileSync(path.join(rnd, 'weights.f32'), w);
  // Exact cosine search over the training chunks with other embedders: the untrained table, and any --exact NAME=DIR.
  const nChunks = Math.ceil(train.length / CHUNK);
  const exactSearch = (e: Embedder) => {
    const D = e.dim;
    const table = new Float32Array(nChunks * D);
    for (let i = 0; i < nChunks; i++) table.set(e.embed(train.slice(i * CHUNK, (i + 1) * CHUNK)), i * D);
    return (q: string): Passage[] => {
      const v = e.embed(q);
      const scored = Array.from({ length: nChunks }, (_, i) => {
        let s = 0;
        for (let j = 0; j < D; j++) s += v[j] * table[i * D + j];
        return { i, s };
      }).sort((a, b) => b.s - a.s);
      return scored.slice(0, K).map(({ i, s }) => ({ id: `x#${i}`, score: s, text: train.slice(i * CHUNK, (i + 1) * CHUNK) }));
    };
  };
  const extra: Record<string, (q: string) => Passage[]> = { dense_untrained_exact: exactSearch(Embedder.load(rnd)), dense_exact: exactSearch(embedder) };
  fs.rmSync(rnd, { recursive: true });
  const exactArg = process.argv.indexOf('--exact');
  if (exactArg >= 0) {
    for (const spec of process.argv[exactArg + 1].split(',')) {
      const [name, dir] = spec.split('=');
      extra[`${name}_exact`] = exactSearch(Embedder.load(dir));
    }
  }
  const hit = (ps: Passage[], par: Verse) =>
    ps.some((p) => {
      const i = Number(p.id.split('#')[1]);
      return Math.min(par.end, (i + 1) * CHUNK) - Math.max(par.start, i * CHUNK) >= Math.min(16, par.end - par.start);
    });

  const retrievers: Record<string, (q: string) => Passage[]> = {
    dense: (q) => ds.search(q, K, 'dense'),
    bm25: (q) => ds.search(q, K, 'bm25'),
    hybrid: (q) => ds.search(q, K, 'hybrid' as RetrievalMode),
    ...extra,
  };
  const promptOf = (c: (typeof set)[number]) => held.slice(Math.max(0, c.pos - 1024), c.pos) + c.v.label;
  const recall: Record<string, { verse_query: number; prompt_query: number }> = {};
  for (const [name, r] of Object.entries(retrievers)) {
    recall[name] = {
      verse_query: set.filter((c) => hit(r(c.v.text), c.parallel)).length / set.length,
      prompt_query: set.filter((c) => hit(r(promptOf(c).slice(-QUERY_CHARS)), c.parallel)).length / set.length,
    };
    console.log(name, JSON.stringify(recall[name]));
  }

  if (process.argv.includes('--no-bpb')) {
    console.log(JSON.stringify({ verses: set.length, recall_at_4: recall }));
    return;
  }
  // Bits per byte of the verses, by the engine.
  const engine = await Engine.load(modelDir, { threads: 2 });
  const rt = new RuntimeHolder().attach(engine, tokenizer, 'eval', { maxBatch: 1, stepTokens: 8192 });
  const verseBits = async (before: string, target: string) => {
    const a = tokenizer.encode(before), b = tokenizer.encode(target);
    const lp = await scoreTokens(rt, [...a, ...b]);
    let nll = 0;
    for (let t = a.length; t < a.length + b.length; t++) nll -= lp[t]!;
    return nll / Math.LN2;
  };
  const bits: Record<string, number> = { none: 0, hybrid_prompt_query: 0, hybrid_verse_query: 0, dense_prompt_query: 0, dense_verse_query: 0 };
  let bytes = 0;
  for (const c of set) {
    const target = c.v.text + '\n';
    bytes += Buffer.byteLength(target);
    const prompt = promptOf(c);
    bits.none += await verseBits(prompt, target);
    for (const mode of ['hybrid', 'dense'] as const) {
      bits[`${mode}_prompt_query`] += await verseBits(passageBlock(ds.search(prompt.slice(-QUERY_CHARS), K, mode)) + prompt, target);
      bits[`${mode}_verse_query`] += await verseBits(passageBlock(ds.search(c.v.text, K, mode)) + prompt, target);
    }
  }
  const bpb = Object.fromEntries(Object.entries(bits).map(([k, v]) => [k, v / bytes]));
  console.log(JSON.stringify(bpb));
  const result = {
    verses: set.length,
    selection: 'held-out verses by the largest share of their word trigrams found in one training verse (>= 0.2), top 50 (shares 1.0 .. ~0.25: few held-out verses have close parallels in Genesis..Hebrews)',
    examples: set.slice(0, 5).map((c) => ({ verse: c.v.label.trim(), parallel: c.parallel.label.trim(), share: c.share })),
    k: K,
    recall_at_4: recall,
    bits_per_byte: bpb,
    verse_bytes: bytes,
    model: path.basename(modelDir),
    prompt: 'the 1024 bytes of held-out text before the verse + its label; retrieval query = the last 512 characters of that prompt, or the verse itself',
  };
  fs.writeFileSync(arg('out'), JSON.stringify(result, null, 2) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

// A preempted retro sequence (Scheduler.preemptNewest: its engine state is
// dropped and recomputed from prompt + sampled tokens) asks the neighbours of
// its chunks again as they are recomputed. The server's live retrieval
// (src/retrieval/retro.ts RetroRetrieval) answers a chunk asked again with its
// first answer: no second search, no second entry in `retrieved`, and the
// sequence goes on with the same tokens as without the preemption.
//
// A retro model's K/V is not in the paged pool (docs/design.md "Not paged"),
// so `--kv-memory` cannot provoke this: the engine here is the real one
// (test/fixtures/retro/chunk8: m 8, k 2, bytes) with one step refused with
// E_KV_FULL, as the paged pool refuses a step it cannot hold (before
// touching any state), once the retro sequence has retrieved 5 chunks.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { load, runtime, type Loaded } from '../src/cli/model';
import { Scheduler, type SchedulerEngine, type SequenceSpec } from '../src/engine/scheduler';
import { Datastore } from '../src/retrieval/datastore';
import { Embedder } from '../src/retrieval/embedder';
import { RetroRetrieval } from '../src/retrieval/retro';
import { writeDatastore } from './datastore.helpers';

const MODEL = path.join(__dirname, 'fixtures', 'retro', 'chunk8');
const M = 8;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-retro-preempt-'));
const STORE = path.join(root, 'bible');
const TEXTS = {
  psalm: 'The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he leadeth me beside the still waters.',
  flood: 'And the waters prevailed exceedingly upon the earth; and all the high hills, that were under the whole heaven, were covered.',
  light: 'And God said, Let there be light: and there was light. And God saw the light, that it was good.',
};

let l: Loaded;
let store: Datastore;
beforeAll(async () => {
  l = await load({ model: MODEL, device: 'cpu', threads: 1 });
  writeDatastore(STORE, { tokenizer: l.tokenizer, embedder: Embedder.load(), model: 'retro-chunk8', vocabSize: l.tokenizer.vocabSize, chunkTokens: M }, Object.entries(TEXTS));
  store = Datastore.open(STORE, l.tokenizer, Embedder.load());
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** X: retro with live retrieval, 40 tokens; Y: no retrieval, 60 tokens, admitted first (so X is the newest, the one preempted). */
async function run(preemptAt: number | null) {
  let xTokens = 0;
  let refused = false;
  const engine: SchedulerEngine = {
    createSequence: (p) => l.engine.createSequence(p),
    freeSequence: (s) => l.engine.freeSequence(s),
    resetSequence: (s) => l.engine.resetSequence(s),
    setNeighbours: (s, u, t) => l.engine.setNeighbours(s, u, t),
    stats: () => l.engine.stats(),
    step(batch) {
      if (preemptAt !== null && !refused && xTokens >= preemptAt) {
        refused = true;
        return Promise.reject(Object.assign(new Error('the KV pool cannot hold the step'), { code: 'E_KV_FULL' }));
      }
      return l.engine.step(batch);
    },
  };
  const sched = new Scheduler(engine, { maxBatch: 4, requestTimeoutMs: 0 });
  const retrieval = new RetroRetrieval(runtime(l), store, { datastore: 'bible', k: null, mode: 'bm25', returnPassages: true });
  const searches = jest.spyOn(store, 'search');
  const hook = retrieval.forChoice(0);
  const asked: number[] = [];
  const retro: SequenceSpec['retro'] = {
    chunkSize: hook.chunkSize,
    neighbours(u, tokens) {
      asked.push(u);
      return hook.neighbours(u, tokens);
    },
  };
  const seq = (prompt: string, maxTokens: number, onToken: () => void, r?: SequenceSpec['retro']) => {
    const out = { tokens: [] as number[], logprobs: [] as number[], finish: '' };
    const spec: SequenceSpec = {
      prompt: [...Buffer.from(prompt)],
      params: { temperature: 0.7, seed: 5n, logitBias: [[256, -100]] },
      maxTokens,
      promptLogprobs: false,
      ...(r ? { retro: r } : {}),
      listener: {
        onToken(t, lp) {
          out.tokens.push(t);
          out.logprobs.push(lp);
          onToken();
          return false;
        },
        onFinish(reason, error) {
          out.finish = error ? error.message : reason;
        },
      },
    };
    return { spec, out };
  };
  const y = seq('In the beginning God created', 60, () => {});
  const x = seq('And the waters of the', 40, () => xTokens++, retro);
  const yDone = sched.submit([y.spec]).done;
  const xDone = sched.submit([x.spec]).done;
  await Promise.all([yDone, xDone]);
  const searched = searches.mock.calls.length;
  searches.mockRestore();
  return { x: x.out, y: y.out, preemptions: sched.totals.preemptions, asked, searches: searched, retrieved: retrieval.records.get(0)! };
}

test('a recomputed chunk is neither searched nor listed again, and the tokens are those of a run without the preemption', async () => {
  const plain = await run(null);
  const preempted = await run(20);
  // X fed its 21 prompt bytes and 39 sampled ones: chunks 0..6.
  const chunks = Array.from({ length: Math.floor((21 + 39) / M) }, (_, u) => u);
  expect(plain.preemptions).toBe(0);
  expect(plain.asked).toEqual(chunks);
  expect(preempted.preemptions).toBe(1);
  // Preempted with 20 sampled tokens (41 positions: chunks 0..4 asked): recomputing asks 0..4 again.
  expect(preempted.asked).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]);
  expect(preempted.searches).toBe(chunks.length);
  expect(preempted.retrieved.map((r) => r.chunk)).toEqual(chunks);
  expect(preempted.retrieved).toEqual(plain.retrieved);
  for (const o of [plain, preempted]) expect([o.x.finish, o.y.finish, o.x.tokens.length, o.y.tokens.length]).toEqual(['length', 'length', 40, 60]);
  expect(preempted.x.tokens).toEqual(plain.x.tokens);
  expect(preempted.y.tokens).toEqual(plain.y.tokens);
  for (let i = 0; i < plain.x.logprobs.length; i++) expect(Math.abs(preempted.x.logprobs[i] - plain.x.logprobs[i])).toBeLessThanOrEqual(1e-5);
});

// The completion layer over a scripted engine: exact token sequences check
// UTF-8-safe streaming, stop strings across tokens and the end of sequence.
import * as path from 'node:path';

import { ModelRuntime, startCompletion } from '../src/engine/completion';
import { parseCompletionBody } from '../src/engine/params';
import { Scheduler } from '../src/engine/scheduler';
import { loadTokenizer } from '../src/engine/tokenizer';
import type { EngineInfo, NativeEngine, StepRequest, StepResult } from '../src/native';
import { FakeEngine } from './scheduler.fake-engine';

const BYTES = path.join(__dirname, 'fixtures', 'gpt2-bytes');

/** Samples the scripted bytes in order, whatever was fed. */
class ScriptedEngine extends FakeEngine {
  private pos = new Map<number, number>();
  constructor(private readonly script: number[]) {
    super(260, 0);
  }
  async step(reqs: StepRequest[]): Promise<StepResult[]> {
    const out = await super.step(reqs);
    return out.map((r) => {
      if (!r.sampled) return r;
      const i = this.pos.get(r.seq) ?? 0;
      this.pos.set(r.seq, i + 1);
      return { ...r, token: this.script[i], logprob: -0.25 };
    });
  }
}

function runtime(script: number[]): ModelRuntime {
  const engine = new ScriptedEngine(script);
  const info: EngineInfo = {
    modelType: 'gpt2', decodeDiffersFromPrefill: false, vocabSize: 260, nEmbd: 1, nLayer: 1, nHead: 1, maxContext: 0, eosTokenId: 256,
    tokenizerClass: 'bytes', specialTokens: { eos: 256, fim_prefix: 257, fim_middle: 258, fim_suffix: 259 }, threads: 1, isa: 'reference',
  };
  return {
    engine: engine as unknown as NativeEngine,
    info,
    tokenizer: loadTokenizer(BYTES),
    scheduler: new Scheduler(engine),
    modelId: 'scripted',
  };
}

async function stream(script: number[], body: Record<string, unknown>) {
  const rt = runtime(script);
  const deltas: string[] = [];
  const ends: string[] = [];
  const run = startCompletion(rt, parseCompletionBody({ prompt: 'x', stream: true, ...body }, { vocabSize: 260 }), {
    onDelta: (_i, text) => deltas.push(text),
    onChoiceEnd: (_i, reason) => ends.push(reason),
  });
  const result = await run.result;
  return { deltas, ends, result };
}

const utf8 = (s: string) => Array.from(Buffer.from(s, 'utf8'));

test('a multi-byte character is released whole, with the token that completes it', async () => {
  const script = [...utf8('é'), ...utf8('€'), ...utf8('😀'), 65];
  const { deltas, result } = await stream(script, { max_tokens: script.length });
  expect(deltas).toEqual(['', 'é', '', '', '€', '', '', '', '😀', 'A']);
  expect(result.choices[0].text).toBe('é€😀A');
});

test('a stop string that spans tokens and a multi-byte character never leaks', async () => {
  const script = [...utf8('ab€cd'), ...utf8('€x')];
  const { deltas, ends, result } = await stream(script, { max_tokens: script.length, stop: ['€c'] });
  expect(deltas.join('')).toBe('ab');
  expect(deltas.some((d) => d.includes('€'))).toBe(false);
  expect(ends).toEqual(['stop']);
  expect(result.choices[0]).toMatchObject({ text: 'ab', finish_reason: 'stop' });
});

test('held-back text is released at max_tokens and at the end of sequence', async () => {
  const a = await stream(utf8('ab#'), { max_tokens: 3, stop: ['##'] });
  expect(a.deltas).toEqual(['a', 'b', '#']);
  expect(a.ends).toEqual(['length']);
  const b = await stream([...utf8('ab#'), 256, 65], { max_tokens: 10, stop: ['##'] });
  expect(b.deltas.join('')).toBe('ab#');
  expect(b.ends).toEqual(['stop']);
  expect(b.result.usage.completion_tokens).toBe(4);
});

test('logprobs of a partial character use the bytes: form; offsets follow the token strings', async () => {
  const rt = runtime([...utf8('é'), 65]);
  const run = startCompletion(rt, parseCompletionBody({ prompt: 'x', max_tokens: 3, logprobs: 0 }, { vocabSize: 260 }));
  const lp = (await run.result).choices[0].logprobs!;
  expect(lp.tokens).toEqual(['bytes:\\xc3', 'bytes:\\xa9', 'A']);
  expect(lp.token_logprobs).toEqual([-0.25, -0.25, -0.25]);
  expect(lp.text_offset).toEqual([0, 10, 20]);
});

test('suffix builds <fim_prefix> prefix <fim_suffix> suffix <fim_middle>', async () => {
  const rt = runtime([65]);
  const eng = rt.engine as unknown as FakeEngine;
  startCompletion(rt, parseCompletionBody({ prompt: 'ab', suffix: 'c', max_tokens: 1 }, { vocabSize: 260 }));
  await new Promise((r) => setTimeout(r, 20));
  expect(eng.steps[0][0].tokens).toEqual([257, 97, 98, 259, 99, 258]);
});

// Helpers of the engine and adapter tests: prompt log-probs of one engine
// step (the engine is the unit under test there), and tokens sampled through
// the server's scheduler, the one generation loop.
import { Scheduler } from '../src/engine/scheduler';
import type { NativeEngine, SequenceParams } from '../src/native';

/** [null, log p(t1 | t0), ...] from one step (natural log; with a soft prompt entry 0 is a number too). */
export async function promptLogprobs(engine: NativeEngine, tokens: ArrayLike<number>, adapter?: string): Promise<Array<number | null>> {
  const seq = engine.createSequence(adapter ? { temperature: 0, adapter } : { temperature: 0 });
  try {
    const [r] = await engine.step([{ seq, tokens: Int32Array.from(tokens), sample: false, promptLogprobs: true }]);
    return Array.from(r.promptLogprobs!, (lp) => (Number.isNaN(lp) ? null : lp));
  } finally {
    engine.freeSequence(seq);
  }
}

/** `n` tokens sampled after `prompt` by the scheduler, not stopping at end of sequence. */
export function sampleTokens(engine: NativeEngine, prompt: ArrayLike<number>, n: number, params: SequenceParams): Promise<number[]> {
  const out: number[] = [];
  return new Promise((resolve, reject) => {
    new Scheduler(engine, { maxBatch: 1, requestTimeoutMs: 0 }).submit([
      {
        prompt: Array.from(prompt),
        params,
        maxTokens: n,
        promptLogprobs: false,
        listener: {
          onToken(token) {
            out.push(token);
            return false;
          },
          onFinish(reason, error) {
            if (reason === 'length') resolve(out);
            else reject(error ?? new Error(`the sequence ended with ${reason}`));
          },
        },
      },
    ]);
  });
}

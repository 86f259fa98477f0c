// A stand-in for the native engine in scheduler unit tests only (the HTTP and
// WebSocket tests use the real engine). Deterministic: the token after t is
// (t + 1) % vocab with log-prob -1; prompt log-probs are -0.5 (NaN first).
import type { SequenceParams, StepRequest, StepResult } from '../src/native';
import type { SchedulerEngine } from '../src/engine/scheduler';

export class FakeEngine implements SchedulerEngine {
  readonly live = new Map<number, { params: SequenceParams; length: number }>();
  readonly steps: StepRequest[][] = [];
  readonly freed: number[] = [];
  stepping = false;
  /** Make the next step reject (once). */
  failNext = false;
  /** Delay of one step, ms. */
  constructor(
    public vocab = 100,
    public delayMs = 1,
  ) {}
  private nextId = 1;
  private deferred = new Set<number>();

  createSequence(params: SequenceParams = {}): number {
    const id = this.nextId++;
    this.live.set(id, { params, length: 0 });
    return id;
  }

  freeSequence(seq: number): void {
    if (!this.live.has(seq)) throw Object.assign(new Error(`unknown sequence ${seq}`), { code: 'E_ARGUMENT' });
    this.freed.push(seq);
    if (this.stepping) this.deferred.add(seq);
    else this.live.delete(seq);
  }

  async step(reqs: StepRequest[]): Promise<StepResult[]> {
    if (this.stepping) throw Object.assign(new Error('a step is running'), { code: 'E_STATE' });
    for (const r of reqs) if (!this.live.has(r.seq)) throw Object.assign(new Error(`unknown sequence ${r.seq}`), { code: 'E_ARGUMENT' });
    this.steps.push(reqs.map((r) => ({ ...r, tokens: Array.from(r.tokens) })));
    this.stepping = true;
    await new Promise((r) => setTimeout(r, this.delayMs));
    this.stepping = false;
    for (const s of this.deferred) this.live.delete(s);
    this.deferred.clear();
    if (this.failNext) {
      this.failNext = false;
      throw Object.assign(new Error('boom'), { code: 'E_INTERNAL' });
    }
    return reqs.map((r) => {
      const s = this.live.get(r.seq);
      const before = s?.length ?? 0;
      if (s) s.length += r.tokens.length;
      const out: StepResult = { seq: r.seq, sampled: r.sample };
      if (r.sample) {
        out.token = (r.tokens[r.tokens.length - 1] + 1) % this.vocab;
        out.logprob = -1;
        out.top = [[out.token, -1]];
      }
      if (r.promptLogprobs) out.promptLogprobs = Float64Array.from(r.tokens, (_, j) => (before + j === 0 ? NaN : -0.5));
      return out;
    });
  }

  stats() {
    return { sequences: this.live.size, stateBytes: this.live.size * 1000, weightBytes: 1 };
  }
}

// Continuous batching: "loop in TypeScript, step in C++". One engine.step runs
// at a time; between steps new sequences join (up to maxBatch), finished or
// cancelled ones leave and their engine state is freed at once. Long prompts
// are fed in chunks under a per-step token budget, decode tokens first, so
// running streams keep flowing while a long prompt prefills.
//
// Batch slots go to requests that can use them: a request paused by flow
// control (its client is not reading) keeps its sequences' state in the
// engine but holds no slot ("parked"), and while several requests want slots
// they are split max-min fairly (fairShares), so one request's n / best_of
// cannot crowd out the others: its extra sequences park until slots free.
// Engine sequences are bounded by maxBatch + maxParked.
import { prefillTake } from './chunking';
import type { NativeEngine, SequenceParams, StepRequest, StepResult, TokenLogprob } from '../native';
import { RequestError } from './errors';

/** The part of the engine the scheduler drives (a fake in scheduler unit tests). */
export type SchedulerEngine = Pick<NativeEngine, 'createSequence' | 'freeSequence' | 'step'> &
  Partial<Pick<NativeEngine, 'resetSequence' | 'stats' | 'cachedPrefix' | 'setNeighbours' | 'info'>>;

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

/** What a sequence's owner hears, in order: admitted, prompt chunks, prefilled, tokens, finish. */
export interface SequenceListener {
  /** The sequence got an engine slot (it left the queue). */
  onAdmitted?(): void;
  /** Log-probs of prompt tokens [start, start + logprobs.length) (NaN: no previous logit). */
  onPromptLogprobs?(start: number, logprobs: ArrayLike<number>, top: TokenLogprob[][] | undefined): void;
  /** The whole prompt is in the engine. */
  onPrefilled?(): void;
  /**
   * A sampled token. `last` is true when max_tokens is reached with it. Return
   * true to stop the sequence here (end of sequence, a stop string).
   */
  onToken(token: number, logprob: number, top: TokenLogprob[] | undefined, last: boolean): boolean;
  /** Called once; the engine sequence is already freed. */
  onFinish(reason: FinishReason, error?: RequestError): void;
}

export interface SequenceSpec {
  prompt: number[];
  params: SequenceParams;
  /** Tokens to sample; 0 = only run the prompt (for prompt log-probs). */
  maxTokens: number;
  promptLogprobs: boolean;
  listener: SequenceListener;
  /**
   * retro (docs/retro.md): the neighbours (k * 2m tokens, null: none) of chunk u
   * of prompt + output (its m tokens given), asked once, before the step
   * whose tokens complete that chunk. A promise (a retrieval under way) parks
   * the sequence until it settles while the other sequences go on stepping.
   */
  retro?: { chunkSize: number; neighbours(chunk: number, tokens: number[]): RetroNeighbours | Promise<RetroNeighbours> };
}

/** A retro chunk's neighbours: k * 2m token ids, or null (none: the chunk gets no CCA term). */
export type RetroNeighbours = number[] | null;

export interface SchedulerOptions {
  /** Sequences per step. */
  maxBatch: number;
  /** Requests waiting for a slot beyond what fits at once; more are refused as overloaded. */
  maxQueue: number;
  /** Tokens per step across all sequences; decode tokens are counted first. */
  stepTokens: number;
  /** Per-request deadline from submission, in ms; 0 = none; at most MAX_TIMER_MS. */
  requestTimeoutMs: number;
  /**
   * Sequences kept in the engine without a batch slot (paused by their client
   * or parked for fairness), beyond maxBatch; past it nothing new is admitted.
   */
  maxParked: number;
  /**
   * The largest share of maxBatch (0 < share <= 1, at least one slot) one
   * request's n / best_of sequences may hold while another request wants a
   * slot; 1 leaves the max-min fair split alone. Slots a capped request cannot
   * use stay free for requests that arrive.
   */
  maxRequestShare: number;
  /**
   * The engine reuses cached prefix blocks (a paged model with its prefix
   * cache on): the 2nd.. sequences of an n / best_of request wait until the
   * first has prefilled their common prompt, then take its blocks.
   */
  prefixCache: boolean;
}

export const DEFAULT_SCHEDULER_OPTIONS: SchedulerOptions = {
  maxBatch: 64,
  maxQueue: 256,
  stepTokens: 512,
  requestTimeoutMs: 10 * 60 * 1000,
  maxParked: 1024,
  maxRequestShare: 1,
  prefixCache: false,
};

/** The longest delay a Node timer takes (a longer one fires at once). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A stream whose client has read nothing for this long is ended and its
 * sequences freed, by the transport that notices (SSE and WebSocket alike).
 */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/**
 * Max-min fair split of `capacity` slots over requests wanting `wants[i]`
 * (in arrival order): every request gets an equal share or all it wants, what
 * one leaves goes to the others, and an indivisible remainder goes to the
 * oldest. Sum of the result = min(capacity, sum of wants).
 */
export function fairShares(wants: number[], capacity: number): number[] {
  const alloc = wants.map(() => 0);
  let left = capacity;
  let open = wants.flatMap((w, i) => (w > 0 ? [i] : []));
  while (left > 0 && open.length > 0) {
    const each = Math.max(1, Math.floor(left / open.length));
    const still: number[] = [];
    for (const i of open) {
      const give = Math.min(each, wants[i] - alloc[i], left);
      alloc[i] += give;
      left -= give;
      if (alloc[i] < wants[i]) still.push(i);
    }
    open = still;
  }
  return alloc;
}

/** Timings the metrics layer records (src/http/metrics.ts). */
export interface SchedulerObserver {
  /** One engine step: its wall time, the JS time since the previous step ended, tokens fed. */
  onStep?(stepSeconds: number, gapSeconds: number, prefillTokens: number, decodeTokens: number): void;
  onQueueTime?(seconds: number): void;
  /** A sequence was preempted for KV memory (Scheduler.preemptNewest). */
  onPreemption?(): void;
  /** Prefill tokens of a step: computed by the engine, and taken from its prefix cache. */
  onPrefill?(computed: number, cached: number): void;
}

type TaskState = 'waiting' | 'prefill' | 'decode' | 'done';

interface Task {
  spec: SequenceSpec;
  req: ScheduledRequest;
  state: TaskState;
  seq: number;
  /** Prompt tokens already in the engine. */
  fed: number;
  /** The sampled token to feed next (decode). */
  next: number;
  generated: number;
  /** Tokens of the chunk in the running step (prefill). */
  chunk: number;
  /** Holds a batch slot this step (else parked: state kept, out of the step). */
  slot: boolean;
  /** Every token sampled so far (a preempted sequence feeds prompt + these again). */
  out: number[];
  /** After a preemption in decode: the tokens to prefill again (prompt + out), no log-probs, no onPrefilled. */
  replay?: number[];
  /** Prompt positions whose log-probs the listener already has (a preemption in prefill runs them again). */
  reported: number;
  /** totals.steps when last preempted: not re-admitted before another step has run (no preempt/admit livelock). */
  preemptedAt?: number;
  /** retro: chunks whose neighbours were asked (given to the engine, or still being retrieved). */
  retroChunks?: number;
  /** retro: retrievals under way; the sequence sits out of steps until they are 0. */
  retroPending?: number;
  /** retro: bumped when the engine state is reset, so a retrieval asked before is dropped. */
  retroEpoch?: number;
}

/** A submitted request: its sequences, cancellation and flow control. */
export class ScheduledRequest {
  /** Settles when every sequence has finished (never rejects). */
  readonly done: Promise<void>;
  readonly submittedAt = performance.now();
  /** @internal */ tasks: Task[] = [];
  /** @internal */ paused = false;
  /** @internal */ timer: NodeJS.Timeout | undefined;
  private resolve!: () => void;
  private remaining: number;

  constructor(private readonly scheduler: Scheduler, count: number) {
    this.remaining = count;
    this.done = new Promise((r) => (this.resolve = r));
  }

  /** Stops every unfinished sequence now (engine state freed at once, or right after a running step). */
  cancel(error?: RequestError): void {
    this.scheduler.cancelRequest(this, error);
  }

  /** Flow control: a paused request's sequences sit out of steps, keeping their state but no batch slot. */
  setPaused(paused: boolean): void {
    if (this.paused === paused) return;
    this.paused = paused;
    if (!paused) this.scheduler.kick();
  }

  get finished(): boolean {
    return this.remaining === 0;
  }

  /** @internal */
  taskDone(): void {
    if (--this.remaining === 0) {
      if (this.timer) clearTimeout(this.timer);
      this.resolve();
    }
  }
}

export class Scheduler {
  readonly options: SchedulerOptions;
  private waiting: ScheduledRequest[] = [];
  private waitingSequences = 0;
  /** Unfinished requests, in arrival order. */
  private live = new Set<ScheduledRequest>();
  private active: Task[] = [];
  private bySeq = new Map<number, Task>();
  private looping = false;
  private draining = false;
  private lastStepEnd = 0;
  private idleWaiters: Array<() => void> = [];
  /** Totals since start, for metrics and the overhead benchmark. */
  readonly totals = {
    steps: 0,
    stepSeconds: 0,
    gapSeconds: 0,
    prefillTokens: 0,
    decodeTokens: 0,
    /** Prefill tokens the engine computed (prefillTokens less prefix-cache hits). */
    prefillComputed: 0,
    /** Prefill tokens taken from the prefix cache. */
    prefixHitTokens: 0,
    /** Sequences preempted for KV memory (their state dropped, recomputed later). */
    preemptions: 0,
  };
  /** KV blocks admissions of the current allocate() have counted on (kvFits). */
  private admitBlocks = 0;
  /**
   * perceiver_ar: a one-token step is its sliding decode, not the prefill of
   * the same tokens (docs/models.md), so a preempted sequence's replay
   * prefills the prompt, then feeds each sampled token as a replayed step of
   * its own (the decode it was), which leaves the state its decode had.
   */
  private readonly replayByToken: boolean;

  constructor(
    private readonly engine: SchedulerEngine,
    options: Partial<SchedulerOptions> = {},
    private readonly observer: SchedulerObserver = {},
  ) {
    this.options = { ...DEFAULT_SCHEDULER_OPTIONS, ...options };
    for (const k of ['maxBatch', 'stepTokens'] as const) {
      if (!Number.isInteger(this.options[k]) || this.options[k] < 1) throw new Error(`${k} must be an integer >= 1 (got ${this.options[k]})`);
    }
    for (const k of ['maxQueue', 'maxParked'] as const) {
      if (!Number.isInteger(this.options[k]) || this.options[k] < 0) throw new Error(`${k} must be an integer >= 0 (got ${this.options[k]})`);
    }
    const share = this.options.maxRequestShare;
    if (!(share > 0 && share <= 1)) throw new Error(`maxRequestShare must be a number above 0 and at most 1 (got ${share})`);
    const t = this.options.requestTimeoutMs;
    if (!Number.isInteger(t) || t < 0 || t > MAX_TIMER_MS) {
      throw new Error(`requestTimeoutMs must be an integer from 0 to ${MAX_TIMER_MS} (a Node timer's longest delay) (got ${t})`);
    }
    this.replayByToken = engine.info?.().decodeDiffersFromPrefill === true;
  }

  /** Requests with a sequence running in the engine. */
  get runningRequests(): number {
    const reqs = new Set<ScheduledRequest>();
    for (const t of this.active) reqs.add(t.req);
    return reqs.size;
  }

  /** Requests with a sequence still waiting for a slot. */
  get waitingRequests(): number {
    return this.waiting.length;
  }

  /** Sequences in the engine (holding a slot or parked). */
  get activeSequences(): number {
    return this.active.length;
  }

  /** Sequences in the engine without a batch slot in the last step (paused by their client, or parked for fairness). */
  get parkedSequences(): number {
    return this.active.reduce((a, t) => a + (t.slot ? 0 : 1), 0);
  }

  /**
   * Queues a request's sequences. Throws RequestError overloaded (queue full)
   * or shutting_down; otherwise the sequences start at the next step boundary.
   */
  submit(specs: SequenceSpec[]): ScheduledRequest {
    if (this.draining) throw new RequestError('shutting_down', 'the server is shutting down and accepts no new requests');
    if (specs.length === 0) throw new Error('submit: no sequences');
    const fitsNow =
      this.slotDemand() + specs.length <= this.options.maxBatch &&
      this.active.length + this.waitingSequences + specs.length <= this.options.maxBatch + this.options.maxParked;
    const queued = this.queuedBeyondCapacity();
    if (!fitsNow && queued >= this.options.maxQueue) {
      throw new RequestError(
        'overloaded',
        `the server is overloaded: ${queued} requests are waiting (--max-queue ${this.options.maxQueue}); retry later`,
        null,
        1,
      );
    }
    const req = new ScheduledRequest(this, specs.length);
    req.tasks = specs.map((spec) => ({
      spec,
      req,
      state: 'waiting',
      seq: -1,
      fed: 0,
      next: -1,
      generated: 0,
      chunk: 0,
      slot: false,
      out: [],
      reported: 0,
    }));
    this.waiting.push(req);
    this.live.add(req);
    this.waitingSequences += specs.length;
    if (this.options.requestTimeoutMs > 0) {
      req.timer = setTimeout(() => {
        req.cancel(new RequestError('request_timeout', `the request did not finish within ${this.options.requestTimeoutMs / 1000} s`));
      }, this.options.requestTimeoutMs);
      req.timer.unref();
    }
    this.kick();
    return req;
  }

  /** @internal Use ScheduledRequest.cancel. */
  cancelRequest(req: ScheduledRequest, error?: RequestError): void {
    for (const t of req.tasks) {
      if (t.state !== 'done') this.finish(t, error ? 'error' : 'cancelled', error);
    }
    // The loop stops when every running request is paused; a slot freed then must still admit the queue.
    if (this.waiting.length > 0) this.kick();
  }

  /** Starts the loop if it is idle. */
  kick(): void {
    if (this.looping) return;
    this.looping = true;
    // A microtask later, so a caller that submits several requests in one tick batches them.
    queueMicrotask(() => {
      this.loop().catch((e) => {
        // loop() catches step failures itself; anything here is a bug. Do not wedge the server.
        process.emitWarning(`scheduler loop failed: ${(e as Error).stack ?? e}`);
        this.looping = false;
      });
    });
  }

  /**
   * Graceful shutdown: refuse new requests, wait for running ones up to
   * deadlineMs, then cancel the rest with shutting_down.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    const idle = new Promise<void>((r) => (this.isIdle() ? r() : this.idleWaiters.push(r)));
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), deadlineMs)));
    const timedOut = await Promise.race([idle.then(() => false), expired]);
    if (timer) clearTimeout(timer);
    if (timedOut) {
      const err = new RequestError('shutting_down', 'the server shut down before the request finished');
      for (const req of [...this.waiting, ...new Set(this.active.map((t) => t.req))]) req.cancel(err);
      await idle;
    }
  }

  /** Sequences in the engine that want a slot (those of requests their clients have not paused). */
  private activeDemand(): number {
    return this.active.reduce((a, t) => a + (t.req.paused ? 0 : 1), 0);
  }

  /** Sequences that want a slot, in the engine or waiting (a paused request's wait until it resumes). */
  private slotDemand(): number {
    let n = this.activeDemand();
    for (const req of this.waiting) if (!req.paused) for (const t of req.tasks) if (t.state === 'waiting') n++;
    return n;
  }

  /** Waiting requests that will not get a slot at the next step boundary (the queue proper). */
  private queuedBeyondCapacity(): number {
    let seqs = this.activeDemand();
    let queued = 0;
    for (const req of this.waiting) {
      if (req.paused) continue;
      for (const t of req.tasks) if (t.state === 'waiting') seqs++;
      if (seqs > this.options.maxBatch) queued++;
    }
    return queued;
  }

  private isIdle(): boolean {
    return this.active.length === 0 && this.waiting.length === 0;
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.allocate();
        const { batch, tasks, prefillTokens, decodeTokens } = this.buildStep();
        if (batch.length === 0) break;
        const t0 = performance.now();
        const gap = this.lastStepEnd > 0 ? (t0 - this.lastStepEnd) / 1000 : 0;
        let results: StepResult[];
        try {
          results = await this.engine.step(batch);
        } catch (e) {
          this.lastStepEnd = performance.now();
          if ((e as { code?: string }).code === 'E_KV_FULL' && this.preemptNewest()) continue;
          const err = new RequestError('engine_error', `the engine failed a step: ${(e as Error).message}`);
          for (const t of tasks) if (t.state !== 'done') this.finish(t, 'error', err);
          continue;
        }
        const t1 = performance.now();
        this.lastStepEnd = t1;
        const stepSeconds = (t1 - t0) / 1000;
        this.totals.steps++;
        this.totals.stepSeconds += stepSeconds;
        this.totals.gapSeconds += gap;
        this.totals.prefillTokens += prefillTokens;
        this.totals.decodeTokens += decodeTokens;
        this.observer.onStep?.(stepSeconds, gap, prefillTokens, decodeTokens);
        let hit = 0;
        for (const r of results) hit += r.cachedTokens ?? 0;
        this.totals.prefixHitTokens += hit;
        this.totals.prefillComputed += prefillTokens - hit;
        this.observer.onPrefill?.(prefillTokens - hit, hit);
        for (const r of results) this.apply(r);
      }
    } finally {
      this.looping = false;
      // The gap before the next step measures JS overhead only while busy.
      this.lastStepEnd = 0;
    }
    if (this.isIdle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Decides who holds the batch slots this step: each request with a sequence
   * that wants one (not paused by its client) gets its fair share
   * (fairShares), first for its sequences already in the engine, then for its
   * waiting ones, which join here (while the engine holds fewer than
   * maxBatch + maxParked sequences). The rest park.
   */
  private allocate(): void {
    const reqs: ScheduledRequest[] = [];
    const wants: number[] = [];
    for (const req of this.live) {
      if (req.paused) continue;
      let w = 0;
      for (const t of req.tasks) if (t.state !== 'done') w++;
      if (w > 0) {
        reqs.push(req);
        wants.push(w);
      }
    }
    for (const t of this.active) t.slot = false;
    this.admitBlocks = 0;
    // With others wanting slots, no request holds more than maxRequestShare of the batch.
    const cap = Math.max(1, Math.floor(this.options.maxRequestShare * this.options.maxBatch));
    const shares = fairShares(wants.length > 1 ? wants.map((w) => Math.min(w, cap)) : wants, this.options.maxBatch);
    const seqLimit = this.options.maxBatch + this.options.maxParked;
    reqs.forEach((req, r) => {
      let left = shares[r];
      for (const t of req.tasks) {
        if (left === 0) break;
        if (t.state === 'prefill' || t.state === 'decode') {
          t.slot = true;
          left--;
        }
      }
      for (const t of req.tasks) {
        if (left === 0 || this.active.length >= seqLimit) break;
        if (t.state !== 'waiting') continue;
        if (this.admit(t)) left--;
      }
    });
  }

  /**
   * Whether a waiting sequence's prompt fits the KV memory of a paged engine:
   * free + cached blocks, less those admissions this round counted on, must
   * hold its blocks and one block of growth for each running sequence. With
   * nothing running it is admitted anyway (a prompt larger than all the
   * memory then fails its step with the engine's E_KV_FULL message).
   */
  private kvFits(task: Task): boolean {
    const st = this.engine.stats?.();
    if (!st || !st.kvBlockRows || this.active.length === 0) return true;
    const need = Math.ceil((task.replay ?? task.spec.prompt).length / st.kvBlockRows) + 1;
    if (st.kvBlocksFree + st.kvBlocksCached - this.admitBlocks < need + this.active.length) return false;
    this.admitBlocks += need;
    return true;
  }

  /**
   * The engine's KV memory cannot hold the next step: the newest sequence in
   * the engine gives its blocks back and waits to be recomputed (vLLM's
   * preemption by recompute). Its sampler stays in the engine, so a seeded
   * stream continues with the same tokens. False when there is nothing to
   * preempt (one sequence alone does not fit: its step fails).
   */
  private preemptNewest(): boolean {
    if (!this.engine.resetSequence || this.active.length < 2) return false;
    const t = this.active[this.active.length - 1];
    this.engine.resetSequence(t.seq);
    // A fresh engine state: its chunks' neighbours are asked again (retrievals under way are dropped).
    t.retroChunks = 0;
    t.retroPending = 0;
    t.retroEpoch = (t.retroEpoch ?? 0) + 1;
    this.active.pop();
    this.bySeq.delete(t.seq);
    // In decode: prompt + sampled tokens go in again; in prefill (of the prompt
    // or of a replay) the same input starts over.
    if (t.state === 'decode') t.replay = t.spec.prompt.concat(t.out);
    t.fed = 0;
    t.preemptedAt = this.totals.steps;
    t.chunk = 0;
    t.slot = false;
    t.state = 'waiting';
    this.waitingSequences++;
    if (!this.waiting.includes(t.req)) this.waiting.unshift(t.req);
    this.totals.preemptions++;
    this.observer.onPreemption?.();
    return true;
  }

  /** Gives a waiting sequence its engine state and a slot; false if the engine refused it. */
  private admit(task: Task): boolean {
    const req = task.req;
    const again = task.seq >= 0; // preempted before
    if (again && this.active.length > 0 && this.totals.steps <= (task.preemptedAt ?? -1)) return false;
    if (!this.kvFits(task)) return false;
    try {
      // A preempted sequence keeps its engine id (and sampler).
      if (task.seq < 0) task.seq = this.engine.createSequence(task.spec.params);
    } catch (e) {
      this.finish(task, 'error', new RequestError('engine_error', `the engine refused a sequence: ${(e as Error).message}`));
      return false;
    }
    this.waitingSequences--;
    task.state = 'prefill';
    task.slot = true;
    this.active.push(task);
    this.bySeq.set(task.seq, task);
    if (!req.tasks.some((t) => t.state === 'waiting')) {
      const i = this.waiting.indexOf(req);
      if (i >= 0) this.waiting.splice(i, 1);
    }
    if (again) return true; // re-admitted after a preemption: the listener knows it already
    if (task === req.tasks[0]) this.observer.onQueueTime?.((performance.now() - req.submittedAt) / 1000);
    task.spec.listener.onAdmitted?.();
    return true;
  }

  /**
   * Slotted sequences to prefill, round-robin over requests (each request's
   * first, then each one's second, ...): a newcomer's prompt is not queued
   * behind all 64 prompts of an n: 64 request that arrived just before it.
   */
  private prefillOrder(): Task[] {
    const byReq = new Map<ScheduledRequest, Task[]>();
    for (const t of this.active) {
      if (t.state !== 'prefill' || !t.slot) continue;
      // With the prefix cache, a request's later sequences wait for its first to prefill the shared prompt.
      const first = t.req.tasks[0];
      if (this.options.prefixCache && t !== first && first.state === 'prefill' && first.replay === undefined && t.replay === undefined) continue;
      const list = byReq.get(t.req);
      if (list) list.push(t);
      else byReq.set(t.req, [t]);
    }
    const lists = [...byReq.values()];
    const longest = lists.reduce((a, l) => Math.max(a, l.length), 0);
    const order: Task[] = [];
    for (let i = 0; i < longest; i++) for (const l of lists) if (i < l.length) order.push(l[i]);
    return order;
  }

  private buildStep() {
    const batch: StepRequest[] = [];
    const tasks: Task[] = [];
    let decodeTokens = 0;
    for (const t of this.active) {
      if (t.state !== 'decode' || !t.slot) continue;
      if (!this.giveNeighbours(t, t.spec.prompt.length + t.out.length)) continue;
      batch.push({ seq: t.seq, tokens: [t.next], sample: true });
      tasks.push(t);
      decodeTokens++;
    }
    // Prefill gets what decode leaves, but never nothing: a long prompt must progress.
    const floor = Math.max(1, Math.min(64, this.options.stepTokens >> 3));
    let budget = Math.max(this.options.stepTokens - decodeTokens, floor);
    let prefillTokens = 0;
    for (const t of this.prefillOrder()) {
      if (budget <= 0) break;
      const prompt = t.replay ?? t.spec.prompt;
      // replayByToken: the replay's sampled tokens go in one a step.
      const byToken = t.replay !== undefined && this.replayByToken && t.fed >= t.spec.prompt.length;
      const stop = t.replay !== undefined && this.replayByToken ? (byToken ? t.fed + 1 : t.spec.prompt.length) : prompt.length;
      const left = stop - t.fed;
      const promptLogprobs = t.spec.promptLogprobs && t.replay === undefined;
      // Leading tokens the prefix cache holds cost no compute: they ride
      // beyond the budget, so a cached 2,048-token prefix is one step, not four.
      const cached = promptLogprobs || byToken || !this.engine.cachedPrefix ? 0 : Math.min(left, this.engine.cachedPrefix(t.seq, prompt.slice(t.fed, stop)));
      const take = cached + prefillTake(left - cached, budget);
      const end = t.fed + take;
      if (!this.giveNeighbours(t, end)) continue;
      t.chunk = take;
      batch.push({
        seq: t.seq,
        tokens: prompt.slice(t.fed, end),
        sample: end === prompt.length && t.spec.maxTokens > 0,
        promptLogprobs: promptLogprobs && end > t.reported,
        ...(byToken ? { replay: true } : {}),
      });
      tasks.push(t);
      budget -= take - cached;
      prefillTokens += take;
    }
    return { batch, tasks, prefillTokens, decodeTokens };
  }

  /**
   * retro: asks the neighbours of every chunk that positions before `end`
   * complete (the step feeds up to end - 1) and gives them to the engine;
   * false when the sequence cannot step now: a retrieval is still under way
   * (it sits out, keeping its slot, and the loop is kicked when the
   * neighbours arrive) or the engine refused them (finished with the error).
   */
  private giveNeighbours(t: Task, end: number): boolean {
    const r = t.spec.retro;
    if (!r) return true;
    const m = r.chunkSize;
    const prompt = t.replay ?? t.spec.prompt;
    const tokenAt = (p: number) => (p < prompt.length ? prompt[p] : t.out[p - t.spec.prompt.length]);
    try {
      if (!(m >= 1)) throw new Error('neighbours are only taken by model_type retro');
      for (let u = t.retroChunks ?? 0; (u + 1) * m <= end; u++) {
        const tokens = Array.from({ length: m }, (_, j) => tokenAt(u * m + j));
        const nb = r.neighbours(u, tokens);
        t.retroChunks = u + 1;
        if (nb instanceof Promise) this.awaitNeighbours(t, u, nb);
        else if (nb) this.engine.setNeighbours!(t.seq, u, nb);
      }
    } catch (e) {
      this.refuseNeighbours(t, e);
      return false;
    }
    return (t.retroPending ?? 0) === 0;
  }

  /** A retrieval under way for chunk u: its neighbours go to the engine when it settles (if the sequence still wants them). */
  private awaitNeighbours(t: Task, u: number, nb: Promise<RetroNeighbours>): void {
    const epoch = t.retroEpoch ?? 0;
    t.retroPending = (t.retroPending ?? 0) + 1;
    const stale = () => t.state === 'done' || (t.retroEpoch ?? 0) !== epoch;
    nb.then(
      (tokens) => {
        if (stale()) return;
        try {
          if (tokens) this.engine.setNeighbours!(t.seq, u, tokens);
        } catch (e) {
          this.refuseNeighbours(t, e);
          return;
        }
        if (--t.retroPending! === 0) this.kick();
      },
      (e) => {
        if (stale()) return;
        this.refuseNeighbours(t, e instanceof RequestError ? e : new RequestError('engine_error', `the retrieval for chunk ${u} failed: ${(e as Error).message}`));
      },
    );
  }

  private refuseNeighbours(t: Task, e: unknown): void {
    const err = e instanceof RequestError ? e : new RequestError('engine_error', `the engine refused neighbours: ${(e as Error).message}`);
    this.finish(t, 'error', err);
    // A slot freed while the loop is idle must still admit the queue.
    if (this.waiting.length > 0) this.kick();
  }

  private apply(r: StepResult): void {
    const t = this.bySeq.get(r.seq);
    if (!t || t.state === 'done') return; // cancelled while the step ran
    const l = t.spec.listener;
    if (t.state === 'prefill') {
      const start = t.fed;
      t.fed += t.chunk;
      t.chunk = 0;
      if (t.replay !== undefined) {
        // A preempted sequence's tokens are in again: on with decoding (the step sampled the next token).
        if (t.fed < t.replay.length) return;
        t.replay = undefined;
        t.state = 'decode';
      } else {
        if (t.spec.promptLogprobs && r.promptLogprobs && t.fed > t.reported) {
          const skip = Math.max(0, t.reported - start); // positions reported before a preemption
          l.onPromptLogprobs?.(start + skip, r.promptLogprobs.subarray(skip), r.promptTop?.slice(skip));
          t.reported = t.fed;
        }
        if (t.state !== 'prefill') return; // the listener cancelled
        if (t.fed < t.spec.prompt.length) return;
        l.onPrefilled?.();
        if (t.state !== 'prefill') return;
        if (t.spec.maxTokens === 0) {
          this.finish(t, 'length');
          return;
        }
        t.state = 'decode';
      }
    }
    if (!r.sampled || r.token === undefined) return;
    t.generated++;
    t.out.push(r.token);
    const last = t.generated >= t.spec.maxTokens;
    const stop = l.onToken(r.token, r.logprob ?? NaN, r.top, last);
    if ((t.state as TaskState) === 'done') return; // the listener cancelled
    if (stop) this.finish(t, 'stop');
    else if (last) this.finish(t, 'length');
    else t.next = r.token;
  }

  private finish(t: Task, reason: FinishReason, error?: RequestError): void {
    const wasWaiting = t.state === 'waiting';
    t.state = 'done';
    if (wasWaiting) {
      this.waitingSequences--;
      const req = t.req;
      if (!req.tasks.some((x) => x.state === 'waiting')) {
        const i = this.waiting.indexOf(req);
        if (i >= 0) this.waiting.splice(i, 1);
      }
      if (t.seq >= 0) this.engine.freeSequence(t.seq); // preempted: its engine sequence (sampler) is still there
    } else if (t.seq >= 0) {
      this.bySeq.delete(t.seq);
      const i = this.active.indexOf(t);
      if (i >= 0) this.active.splice(i, 1);
      try {
        this.engine.freeSequence(t.seq);
      } catch {
        // Already gone in the engine (a failed step may have dropped it); nothing to free.
      }
    }
    try {
      t.spec.listener.onFinish(reason, error);
    } finally {
      t.req.taskDone();
      if (t.req.finished) this.live.delete(t.req);
      if (!this.looping && this.isIdle()) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }
}

// Prometheus metrics through prom-client, one Registry per app (tests build
// several apps in one process). Gauges read the scheduler and the engine at
// scrape time; histograms and counters are fed by the observers.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { CompletionObserver, ModelRuntime } from '../engine/completion';
import { engineStats } from '../engine/runtime';
import type { SchedulerObserver } from '../engine/scheduler';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  readonly registry = new Registry();
  readonly completion: CompletionObserver;
  readonly scheduler: SchedulerObserver;
  private readonly errors: Counter<'code'>;

  constructor(runtime: () => ModelRuntime | null, opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    const gauge = (name: string, help: string, read: (rt: ModelRuntime) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const rt = runtime();
          this.set(rt ? read(rt) : 0);
        },
      });
    gauge('roost_requests_running', 'Requests with a sequence in the engine', (rt) => rt.scheduler.runningRequests);
    gauge('roost_requests_waiting', 'Requests waiting for an engine slot', (rt) => rt.scheduler.waitingRequests);
    gauge('roost_sequences_running', 'Sequences the scheduler runs', (rt) => rt.scheduler.activeSequences);
    gauge('roost_sequences_parked', 'Sequences kept without a batch slot (client not reading, or parked for fairness)', (rt) => rt.scheduler.parkedSequences);
    gauge('roost_engine_sequences', 'Sequences alive in the engine (each holds a KV cache / state)', (rt) => engineStats(rt).sequences);
    gauge('roost_kv_memory_bytes', 'Bytes of KV caches and recurrent states in use', (rt) => engineStats(rt).stateBytes);
    gauge('roost_weight_memory_bytes', 'Bytes of model weights', (rt) => engineStats(rt).weightBytes);
    new Gauge({
      name: 'roost_kv_blocks',
      help: 'KV pool blocks of a paged model by state: used by sequences, cached (prefix cache, evictable), free',
      labelNames: ['state'],
      registers,
      collect() {
        const rt = runtime();
        const st = rt ? engineStats(rt) : undefined;
        this.set({ state: 'used' }, st?.kvBlocksUsed ?? 0);
        this.set({ state: 'cached' }, st?.kvBlocksCached ?? 0);
        this.set({ state: 'free' }, st?.kvBlocksFree ?? 0);
      },
    });

    const requests = new Counter({ name: 'roost_requests_total', help: 'Completion requests by outcome', labelNames: ['outcome'], registers });
    const promptTokens = new Counter({ name: 'roost_prompt_tokens_total', help: 'Prompt tokens of accepted requests', registers });
    const generated = new Counter({ name: 'roost_generation_tokens_total', help: 'Tokens generated', registers });
    const ttft = new Histogram({ name: 'roost_time_to_first_token_seconds', help: 'From submission to the first generated token', buckets: LATENCY_BUCKETS, registers });
    const itl = new Histogram({ name: 'roost_inter_token_latency_seconds', help: 'Between consecutive tokens of a sequence', buckets: LATENCY_BUCKETS, registers });
    const queue = new Histogram({ name: 'roost_queue_time_seconds', help: 'From submission to an engine slot', buckets: LATENCY_BUCKETS, registers });
    const step = new Histogram({ name: 'roost_step_seconds', help: 'Wall time of one engine step', buckets: LATENCY_BUCKETS, registers });
    const gap = new Histogram({
      name: 'roost_step_gap_seconds',
      help: 'JS time between one step returning and the next starting (scheduling, detokenizing, writing to clients)',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const prefillComputed = new Counter({ name: 'roost_prefill_tokens_computed_total', help: 'Prompt tokens the engine computed (not taken from the prefix cache)', registers });
    const prefixHits = new Counter({ name: 'roost_prefix_cache_hit_tokens_total', help: 'Prompt tokens taken from the prefix cache', registers });
    const preemptions = new Counter({ name: 'roost_preemptions_total', help: 'Sequences preempted for KV memory (recomputed later)', registers });
    const stepTokens = new Counter({ name: 'roost_step_tokens_total', help: 'Tokens fed to the engine', labelNames: ['kind'], registers });
    this.errors = new Counter({ name: 'roost_http_errors_total', help: 'Error responses by code', labelNames: ['code'], registers });

    this.completion = {
      onAccepted: (n) => promptTokens.inc(n),
      onFirstToken: (s) => ttft.observe(s),
      onInterToken: (s) => itl.observe(s),
      onGenerated: (n) => generated.inc(n),
      onFinished: (outcome) => requests.inc({ outcome }),
    };
    this.scheduler = {
      onStep: (s, g, prefill, decode) => {
        step.observe(s);
        if (g > 0) gap.observe(g);
        if (prefill) stepTokens.inc({ kind: 'prefill' }, prefill);
        if (decode) stepTokens.inc({ kind: 'decode' }, decode);
      },
      onQueueTime: (s) => queue.observe(s),
      onPrefill: (computed, cached) => {
        if (computed) prefillComputed.inc(computed);
        if (cached) prefixHits.inc(cached);
      },
      onPreemption: () => preemptions.inc(),
    };
  }

  countError(code: string): void {
    this.errors.inc({ code });
  }
}

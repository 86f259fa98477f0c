// One load level: a closed loop (a fixed number of workers, each sending its
// next request when the previous one ends) or an open loop (requests arrive as
// a Poisson process at a rate, whatever the server's state), bounded by a
// request count and/or a duration. Then the level's figures.
import * as os from 'node:os';

import { poissonArrivals } from './distributions';
import { countError, emptyErrorReport, ErrorReport } from './errors';
import { Progress } from './progress';
import { summarize, Summary } from './stats';
import type { RequestResult, Transport } from './transport';
import type { Workload } from './workload';

export interface LevelOptions {
  label?: string;
  mode: 'closed' | 'open';
  /** Closed loop: workers. */
  concurrency?: number;
  /** Open loop: arrivals per second. */
  rate?: number;
  /** Open loop: at most this many requests in flight (an arrival waits for a free slot); 0 = unbounded. */
  maxConcurrency?: number;
  /** Stop sending after this many requests (0 / undefined = no count limit). */
  requests?: number;
  /** Stop sending after this many seconds (0 / undefined = no time limit). */
  durationS?: number;
  /** Seed of the arrival process. */
  seed?: number;
  workload: Workload;
  transport: Transport;
  progress?: Progress;
  /** Called with every finished request (soak sampling). */
  onResult?: (r: RequestResult) => void;
  /** Keep the per-request records in the result. */
  keepRequests?: boolean;
  /** Stops the level early (checked between requests). */
  signal?: AbortSignal;
}

export interface LevelResult {
  label: string;
  mode: 'closed' | 'open';
  transport: string;
  concurrency: number | null;
  rate: number | null;
  maxConcurrency: number | null;
  /** Requests sent, completed without error, and failed. */
  sent: number;
  completed: number;
  failed: number;
  /** First request sent -> last request ended, seconds. */
  wallSeconds: number;
  /** Completed requests per second of wall time. */
  requestsPerSecond: number;
  /** Output tokens of completed requests per second of wall time. */
  outputTokensPerSecond: number;
  outputTokens: number;
  /** Sum of the usage's prompt_tokens, when every completed request reported usage. */
  promptTokens: number | null;
  /** How completed requests' output tokens were counted. */
  tokenCount: { usage: number; stream: number };
  ttftMs: Summary;
  itlMs: Summary;
  /** Time per output token after the first: (E2E - TTFT) / (output tokens - 1), per request. */
  tpotMs: Summary;
  e2eMs: Summary;
  outputTokensPerRequest: Summary;
  /** Open loop: how late requests were sent against their scheduled arrival (timer lag and slot waits). */
  sendLagMs: Summary | null;
  finishReasons: Record<string, number>;
  errors: ErrorReport;
  loadAverage: { start: number[]; end: number[] };
  startedAt: string;
  requests?: RequestResult[];
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export async function runLevel(o: LevelOptions): Promise<LevelResult> {
  if (o.mode === 'closed' && !(o.concurrency && o.concurrency >= 1)) throw new Error('closed loop: concurrency must be >= 1');
  if (o.mode === 'open' && !(o.rate && o.rate > 0)) throw new Error('open loop: rate must be > 0');
  const maxRequests = o.requests && o.requests > 0 ? o.requests : Infinity;
  const durationMs = o.durationS && o.durationS > 0 ? o.durationS * 1000 : Infinity;
  if (maxRequests === Infinity && durationMs === Infinity && !o.signal) throw new Error('a level needs a request count or a duration');

  const cap = o.mode === 'open' && o.maxConcurrency && o.maxConcurrency > 0 ? o.maxConcurrency : Infinity;
  const slots = o.mode === 'closed' ? o.concurrency! : o.maxConcurrency && o.maxConcurrency > 0 ? o.maxConcurrency : 0;
  await o.transport.prepare(slots || 1);

  const results: RequestResult[] = [];
  const lags: number[] = [];
  let sent = 0;
  let inFlight = 0;
  let tokensSoFar = 0;
  let errorsSoFar = 0;
  const loadStart = os.loadavg();
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  let lastEnd = t0;
  const elapsed = () => performance.now() - t0;
  const stopSending = () => sent >= maxRequests || elapsed() >= durationMs || Boolean(o.signal?.aborted);
  const record = (r: RequestResult) => {
    results.push(r);
    lastEnd = Math.max(lastEnd, performance.now());
    if (r.ok) tokensSoFar += r.outputTokens;
    else errorsSoFar++;
    o.onResult?.(r);
  };
  const label = o.label ?? (o.mode === 'closed' ? `concurrency ${o.concurrency}` : `rate ${o.rate}/s`);
  o.progress?.start(() => {
    const s = elapsed() / 1000;
    const budget = [maxRequests < Infinity ? `${results.length}/${maxRequests} req` : `${results.length} req`, durationMs < Infinity ? `${s.toFixed(0)}/${(durationMs / 1000).toFixed(0)} s` : `${s.toFixed(0)} s`];
    return `[${label}] ${budget.join(', ')}, in flight ${inFlight}, ${(tokensSoFar / Math.max(s, 1e-3)).toFixed(1)} tok/s, errors ${errorsSoFar}`;
  });

  if (o.mode === 'closed') {
    const worker = async (slot: number) => {
      while (!stopSending()) {
        const spec = o.workload.next();
        sent++;
        inFlight++;
        const r = await o.transport.send(spec, slot, t0);
        inFlight--;
        record(r);
      }
    };
    await Promise.all(Array.from({ length: o.concurrency! }, (_, i) => worker(i)));
  } else {
    const arrivals = poissonArrivals(o.rate!, o.seed ?? 1);
    const running = new Set<Promise<void>>();
    for (;;) {
      const at = arrivals.next().value * 1000;
      if (at >= durationMs || sent >= maxRequests || o.signal?.aborted) break;
      const wait = at - elapsed();
      if (wait > 0) await sleep(wait, o.signal);
      if (o.signal?.aborted) break;
      while (inFlight >= cap) await Promise.race(running);
      lags.push(Math.max(0, elapsed() - at));
      const spec = o.workload.next();
      sent++;
      inFlight++;
      const p: Promise<void> = o.transport.send(spec, -1, t0).then((r) => {
        inFlight--;
        running.delete(p);
        record(r);
      });
      running.add(p);
    }
    await Promise.all(running);
  }
  const wallSeconds = Math.max(1e-9, (lastEnd - t0) / 1000);
  const loadEnd = os.loadavg();

  const ok = results.filter((r) => r.ok);
  const errors = emptyErrorReport();
  for (const r of results) if (r.error) countError(errors, r.error);
  const finishReasons: Record<string, number> = {};
  for (const r of ok) {
    const k = r.finishReason ?? 'none';
    finishReasons[k] = (finishReasons[k] ?? 0) + 1;
  }
  const outputTokens = ok.reduce((a, r) => a + r.outputTokens, 0);
  const itl: number[] = [];
  for (const r of ok) for (const g of r.itlMs) itl.push(g);
  const tpot = ok.filter((r) => r.ttftMs !== null && r.outputTokens > 1).map((r) => (r.e2eMs - r.ttftMs!) / (r.outputTokens - 1));
  const result: LevelResult = {
    label,
    mode: o.mode,
    transport: o.transport.name,
    concurrency: o.mode === 'closed' ? o.concurrency! : null,
    rate: o.mode === 'open' ? o.rate! : null,
    maxConcurrency: o.mode === 'open' && cap < Infinity ? cap : null,
    sent,
    completed: ok.length,
    failed: results.length - ok.length,
    wallSeconds,
    requestsPerSecond: ok.length / wallSeconds,
    outputTokensPerSecond: outputTokens / wallSeconds,
    outputTokens,
    promptTokens: ok.length > 0 && ok.every((r) => r.promptTokens !== null) ? ok.reduce((a, r) => a + r.promptTokens!, 0) : null,
    tokenCount: { usage: ok.filter((r) => r.tokenSource === 'usage').length, stream: ok.filter((r) => r.tokenSource === 'stream').length },
    ttftMs: summarize(ok.filter((r) => r.ttftMs !== null).map((r) => r.ttftMs!)),
    itlMs: summarize(itl),
    tpotMs: summarize(tpot),
    e2eMs: summarize(ok.map((r) => r.e2eMs)),
    outputTokensPerRequest: summarize(ok.map((r) => r.outputTokens)),
    sendLagMs: o.mode === 'open' ? summarize(lags) : null,
    finishReasons,
    errors,
    loadAverage: { start: loadStart, end: loadEnd },
    startedAt,
  };
  if (o.keepRequests) result.requests = results;
  o.progress?.stop(
    `[${label}] done: ${ok.length} ok, ${result.failed} failed in ${wallSeconds.toFixed(1)} s, ` +
      `${result.requestsPerSecond.toFixed(2)} req/s, ${result.outputTokensPerSecond.toFixed(1)} tok/s, ` +
      `TTFT p50 ${fmt(result.ttftMs.p50)} ms, ITL p50 ${fmt(result.itlMs.p50)} ms, E2E p50 ${fmt(result.e2eMs.p50)} ms`,
  );
  return result;
}

export function fmt(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

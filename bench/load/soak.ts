// Soak: one fixed load for a long time while the server's memory and gauges
// are sampled; memory growth is judged after a warm-up (allocator pools,
// JIT, buffers fill up in the first minute).
import { Progress } from './progress';
import { LevelOptions, LevelResult, runLevel } from './runner';
import { median, slope, summarize, Summary } from './stats';
import type { RequestResult } from './transport';
import { ServerMonitor, ServerSample } from './monitor';

export interface SoakOptions extends Omit<LevelOptions, 'durationS' | 'requests' | 'onResult' | 'keepRequests'> {
  minutes: number;
  /** Seconds excluded from the growth figure. */
  warmupS: number;
  /** Seconds between samples. */
  intervalS: number;
  /**
   * Seconds of samples whose median is compared at each end (default 60). Under
   * load RSS swings by several percent with the KV caches alive at the sample;
   * a minute of samples evens that out.
   */
  windowS?: number;
  /** Seconds per row of the throughput/latency time series. */
  bucketS?: number;
  /** Wait after the load before the idle sample, ms (default 3000). */
  idleWaitMs?: number;
  monitor: ServerMonitor;
}

export interface MemoryGrowth {
  /** Median RSS over [warmup, warmup + window], bytes. */
  rssAfterWarmupBytes: number | null;
  /** Median RSS over the last window of the load, bytes. */
  rssAtEndBytes: number | null;
  /** (end - after warm-up) / after warm-up, percent. */
  growthPercent: number | null;
  /** Least-squares slope of RSS after the warm-up, bytes per minute. */
  slopeBytesPerMinute: number | null;
  peakAfterWarmupBytes: number | null;
  rssSource: string | null;
  samplesAfterWarmup: number;
}

export interface SoakWindow {
  /** Window start, seconds from the soak's start (by request end time). */
  t: number;
  /** Seconds the window covers (bucketS, less for the last). */
  seconds: number;
  completed: number;
  failed: number;
  outputTokensPerSecond: number;
  ttftMs: Summary;
  itlP50Ms: number | null;
  e2eMs: Summary;
}

export interface SoakResult {
  minutes: number;
  warmupSeconds: number;
  intervalSeconds: number;
  windowSeconds: number;
  level: LevelResult;
  memory: MemoryGrowth;
  /** A sample taken a few seconds after the load stopped: the server should hold no sequences. */
  idleAfter: ServerSample | null;
  samples: ServerSample[];
  windows: SoakWindow[];
}

export function memoryGrowth(samples: ReadonlyArray<{ t: number; rssBytes: number | null; rssSource?: string | null }>, warmupS: number, endS: number, windowS: number): MemoryGrowth {
  const have = samples.filter((s) => s.rssBytes !== null && s.t >= warmupS && s.t <= endS) as Array<{ t: number; rssBytes: number; rssSource?: string | null }>;
  const first = have.filter((s) => s.t <= warmupS + windowS).map((s) => s.rssBytes);
  const last = have.filter((s) => s.t >= endS - windowS).map((s) => s.rssBytes);
  const a = first.length ? median(first) : null;
  const b = last.length ? median(last) : null;
  const k = slope(have.map((s) => s.t / 60), have.map((s) => s.rssBytes));
  return {
    rssAfterWarmupBytes: a,
    rssAtEndBytes: b,
    growthPercent: a !== null && b !== null && a > 0 ? ((b - a) / a) * 100 : null,
    slopeBytesPerMinute: Number.isFinite(k) ? k : null,
    peakAfterWarmupBytes: have.length ? Math.max(...have.map((s) => s.rssBytes)) : null,
    rssSource: have[0]?.rssSource ?? null,
    samplesAfterWarmup: have.length,
  };
}

/**
 * Per-window figures by request end time. The last window usually covers less
 * than bucketS (the load's end, the drain): its rate divides by the time it covers.
 */
export function windows(results: readonly RequestResult[], bucketS: number): SoakWindow[] {
  const by = new Map<number, RequestResult[]>();
  let lastEndS = 0;
  for (const r of results) lastEndS = Math.max(lastEndS, (r.sentAtMs + r.e2eMs) / 1000);
  for (const r of results) {
    const k = Math.floor((r.sentAtMs + r.e2eMs) / 1000 / bucketS);
    if (!by.has(k)) by.set(k, []);
    by.get(k)!.push(r);
  }
  return [...by.keys()]
    .sort((a, b) => a - b)
    .map((k) => {
      const rs = by.get(k)!;
      const ok = rs.filter((r) => r.ok);
      const itl: number[] = [];
      for (const r of ok) for (const g of r.itlMs) itl.push(g);
      const seconds = Math.max(1e-3, Math.min(bucketS, lastEndS - k * bucketS));
      return {
        t: k * bucketS,
        seconds,
        completed: ok.length,
        failed: rs.length - ok.length,
        outputTokensPerSecond: ok.reduce((a, r) => a + r.outputTokens, 0) / seconds,
        ttftMs: summarize(ok.filter((r) => r.ttftMs !== null).map((r) => r.ttftMs!)),
        itlP50Ms: itl.length ? median(itl) : null,
        e2eMs: summarize(ok.map((r) => r.e2eMs)),
      };
    });
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const windowS = o.windowS ?? 60;
  const bucketS = o.bucketS ?? 60;
  const samples: ServerSample[] = [];
  const results: RequestResult[] = [];
  const client = { completed: 0, failed: 0, outputTokens: 0 };
  const t0 = performance.now();
  const since = () => (performance.now() - t0) / 1000;
  let sampling = Promise.resolve();
  const take = () => {
    sampling = sampling.then(async () => {
      samples.push(await o.monitor.sample(since(), { ...client }));
    });
  };
  take();
  const timer = setInterval(take, o.intervalS * 1000);
  let level: LevelResult;
  try {
    level = await runLevel({
      ...o,
      durationS: o.minutes * 60,
      keepRequests: false,
      onResult(r) {
        results.push(r);
        if (r.ok) {
          client.completed++;
          client.outputTokens += r.outputTokens;
        } else client.failed++;
      },
    });
  } finally {
    clearInterval(timer);
  }
  take();
  await sampling;
  const endS = samples[samples.length - 1].t;
  // Let the server release what the last requests held, then look once more.
  await new Promise((r) => setTimeout(r, o.idleWaitMs ?? 3000));
  let idleAfter: ServerSample | null = null;
  try {
    idleAfter = await o.monitor.sample(since(), { ...client });
  } catch {
    idleAfter = null;
  }
  o.progress?.log(`soak: ${samples.length} samples; idle after: ${JSON.stringify(idleAfter?.metrics ?? {})}`);
  return {
    minutes: o.minutes,
    warmupSeconds: o.warmupS,
    intervalSeconds: o.intervalS,
    windowSeconds: windowS,
    level,
    memory: memoryGrowth(samples, o.warmupS, endS, windowS),
    idleAfter,
    samples,
    windows: windows(results, bucketS),
  };
}


// Plots through vega-lite (compiled to a vega spec, rendered to SVG by vega's
// headless view: no canvas, no browser).
import * as vega from 'vega';
import * as vl from 'vega-lite';

import type { LevelResult } from './runner';
import type { SoakResult } from './soak';

export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export interface SweepRow {
  /** The level's position in the run: lines join levels in this order. */
  step: number;
  concurrency: number | null;
  rate: number | null;
  label: string;
  throughput: number;
  metric: string;
  percentile: string;
  ms: number;
}

/** Latency percentiles against output tokens/s, one row per (level, metric, percentile). */
export function sweepRows(levels: readonly LevelResult[]): SweepRow[] {
  const rows: SweepRow[] = [];
  const metrics: Array<[string, keyof LevelResult]> = [
    ['time to first token', 'ttftMs'],
    ['inter-token latency', 'itlMs'],
    ['end-to-end latency', 'e2eMs'],
  ];
  for (const [step, l] of levels.entries()) {
    for (const [metric, key] of metrics) {
      const s = l[key] as { p50: number | null; p90: number | null; p99: number | null };
      for (const p of ['p50', 'p90', 'p99'] as const) {
        const v = s[p];
        // Log scale: a 0 ms gap (two events in one read) cannot be drawn; clamp to 1 us.
        if (v !== null && Number.isFinite(v)) rows.push({ step, concurrency: l.concurrency, rate: l.rate, label: l.concurrency !== null ? `c${l.concurrency}` : `${l.rate}/s`, throughput: l.outputTokensPerSecond, metric, percentile: p, ms: Math.max(v, 0.001) });
      }
    }
  }
  return rows;
}

export function sweepSpec(levels: readonly LevelResult[], title: string, subtitle?: string): vl.TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, subtitle: subtitle ?? '', anchor: 'start' },
    background: 'white',
    data: { values: sweepRows(levels) },
    facet: { column: { field: 'metric', type: 'nominal', sort: ['time to first token', 'inter-token latency', 'end-to-end latency'], title: null } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 260,
      height: 240,
      layer: [
        {
          mark: { type: 'line', point: true },
          encoding: {
            x: { field: 'throughput', type: 'quantitative', title: 'output tokens/s' },
            y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, title: 'latency, ms (log)' },
            color: { field: 'percentile', type: 'nominal', sort: ['p50', 'p90', 'p99'], scale: { range: ['#1f77b4', '#ff7f0e', '#d62728'] } },
            order: { field: 'step', type: 'quantitative' }, // the sweep's path: throughput need not grow with load
          },
        },
        {
          transform: [{ filter: "datum.percentile === 'p50'" }],
          mark: { type: 'text', dy: 10, dx: 4, align: 'left', fontSize: 9, color: '#555' },
          encoding: {
            x: { field: 'throughput', type: 'quantitative' },
            y: { field: 'ms', type: 'quantitative', scale: { type: 'log' } },
            text: { field: 'label', type: 'nominal' },
          },
        },
      ],
    },
  } as vl.TopLevelSpec;
}

export function soakSpec(soak: SoakResult, title: string): vl.TopLevelSpec {
  const mem = soak.samples
    .filter((s) => s.rssBytes !== null)
    .map((s) => ({ minutes: s.t / 60, value: s.rssBytes! / 2 ** 20, series: 'RSS, MiB' }));
  const kv = soak.samples
    .filter((s) => s.metrics?.roost_kv_memory_bytes !== undefined)
    .map((s) => ({ minutes: s.t / 60, value: s.metrics!.roost_kv_memory_bytes! / 2 ** 20, series: 'KV / state in use, MiB' }));
  // The last window is often a sliver (the drain after the load stops): a few requests over a
  // fraction of a second make a meaningless rate. It stays in the JSON (with its `seconds`), not here.
  const bucket = Math.max(0, ...soak.windows.map((w) => w.seconds ?? 0));
  const tput = soak.windows
    .filter((w) => (w.seconds ?? bucket) >= bucket / 2)
    .map((w) => ({ minutes: w.t / 60, value: w.outputTokensPerSecond, series: 'output tokens/s' }));
  const panel = (values: object[], ytitle: string) => ({
    width: 560,
    height: 160,
    data: { values },
    mark: { type: 'line', point: values.length < 80 },
    encoding: {
      x: { field: 'minutes', type: 'quantitative', title: 'minutes' },
      y: { field: 'value', type: 'quantitative', title: ytitle, scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: null, legend: { labelLimit: 400 } },
    },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, anchor: 'start' },
    background: 'white',
    vconcat: [panel([...mem, ...kv], 'MiB'), panel(tput, 'output tokens/s')],
  } as vl.TopLevelSpec;
}

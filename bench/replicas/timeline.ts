// A load level as a time series for the rolling-restart plot: output tokens/s
// (each request's tokens spread evenly from its first token to its end) and
// failed requests per bin, with each restart's moments on the same clock.
import * as vl from 'vega-lite';

import type { LevelResult } from '../load/runner';
import type { Restart } from './cluster';

export interface TimelineBin {
  t: number;
  tokensPerSecond: number;
  completed: number;
  failed: number;
}

export interface RestartMark {
  replica: number;
  /** Seconds from the level's start. */
  signalled: number;
  exited: number;
  listening: number;
}

export function timeline(level: LevelResult, binS = 1): TimelineBin[] {
  const reqs = level.requests ?? [];
  const endS = Math.max(0, ...reqs.map((r) => (r.sentAtMs + r.e2eMs) / 1000));
  const bins: TimelineBin[] = Array.from({ length: Math.ceil(endS / binS) || 1 }, (_, i) => ({ t: i * binS, tokensPerSecond: 0, completed: 0, failed: 0 }));
  const binOf = (s: number) => Math.min(bins.length - 1, Math.floor(s / binS));
  for (const r of reqs) {
    const end = (r.sentAtMs + r.e2eMs) / 1000;
    if (!r.ok) {
      bins[binOf(end)].failed++;
      continue;
    }
    bins[binOf(end)].completed++;
    const start = (r.sentAtMs + (r.ttftMs ?? r.e2eMs)) / 1000;
    const span = end - start;
    if (span < 1e-3) {
      bins[binOf(end)].tokensPerSecond += r.outputTokens / binS;
      continue;
    }
    for (let b = binOf(start); b <= binOf(end); b++) {
      const overlap = Math.min(end, (b + 1) * binS) - Math.max(start, b * binS);
      if (overlap > 0) bins[b].tokensPerSecond += (r.outputTokens * overlap) / span / binS;
    }
  }
  return bins;
}

export function restartMarks(level: LevelResult, restarts: readonly Restart[]): RestartMark[] {
  const t0 = Date.parse(level.startedAt);
  const s = (ms: number) => (ms - t0) / 1000;
  return restarts.map((r) => ({ replica: r.replica, signalled: s(r.signalled), exited: s(r.exited), listening: s(r.listening) }));
}

export interface RollingPanel {
  title: string;
  bins: TimelineBin[];
  restarts: RestartMark[];
}

export interface ComparisonRow {
  config: string;
  outputTokensPerSecond: number;
  requestsPerSecond: number;
  failed: number;
}

export function replicasSpec(title: string, subtitle: string, panels: readonly RollingPanel[], comparison: readonly ComparisonRow[]): vl.TopLevelSpec {
  const rolling = panels.map((p) => ({
    title: p.title,
    width: 620,
    height: 180,
    layer: [
      {
        data: { values: p.bins },
        mark: { type: 'line', interpolate: 'step-after' },
        encoding: {
          x: { field: 't', type: 'quantitative', title: 'seconds' },
          y: { field: 'tokensPerSecond', type: 'quantitative', title: 'output tokens/s' },
        },
      },
      {
        data: { values: p.bins.filter((b) => b.failed > 0) },
        mark: { type: 'point', shape: 'cross', color: '#d62728', size: 80, filled: true },
        encoding: { x: { field: 't', type: 'quantitative' }, y: { datum: 0 }, tooltip: { field: 'failed', type: 'quantitative' } },
      },
      {
        data: { values: p.restarts.map((r) => ({ ...r, label: `SIGTERM r${r.replica}` })) },
        mark: { type: 'rule', color: '#ff7f0e', strokeDash: [4, 3] },
        encoding: { x: { field: 'signalled', type: 'quantitative' } },
      },
      {
        data: { values: p.restarts.map((r) => ({ ...r, label: `SIGTERM r${r.replica}` })) },
        mark: { type: 'text', align: 'left', dx: 3, dy: -4, fontSize: 9, color: '#ff7f0e', baseline: 'top' },
        encoding: { x: { field: 'signalled', type: 'quantitative' }, y: { value: 2 }, text: { field: 'label' } },
      },
      {
        data: { values: p.restarts.map((r) => ({ ...r, label: `r${r.replica} back` })) },
        mark: { type: 'rule', color: '#2ca02c' },
        encoding: { x: { field: 'listening', type: 'quantitative' } },
      },
    ],
  }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, subtitle, anchor: 'start' },
    background: 'white',
    vconcat: [
      ...rolling,
      {
        title: 'Same load, same run: aggregate throughput through nginx',
        width: 620,
        height: 20 * Math.max(1, comparison.length),
        data: { values: comparison },
        mark: 'bar',
        encoding: {
          y: { field: 'config', type: 'nominal', title: null },
          x: { field: 'outputTokensPerSecond', type: 'quantitative', title: 'output tokens/s' },
        },
      },
    ],
  } as vl.TopLevelSpec;
}

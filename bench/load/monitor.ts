// Server-side samples for soak runs: resident memory (from /proc/PID/status
// when the process is local and known, else /metrics'
// process_resident_memory_bytes) and Roost's gauges from /metrics.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

/** Gauges read from /metrics when the server exports them (Roost does). */
export const GAUGES = [
  'process_resident_memory_bytes',
  'nodejs_heap_size_used_bytes',
  'nodejs_external_memory_bytes',
  'roost_requests_running',
  'roost_requests_waiting',
  'roost_sequences_running',
  'roost_engine_sequences',
  'roost_kv_memory_bytes',
  'roost_weight_memory_bytes',
] as const;

/** Unlabelled samples of a Prometheus text exposition: name -> value (labelled series are summed by name). */
export function parsePrometheus(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    const name = m[1];
    out[name] = m[2] ? (out[name] ?? 0) + v : v;
  }
  return out;
}

/** VmRSS of a local process, bytes (null when unreadable: not Linux, gone, not ours). */
export function procRss(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

export function getText(url: string, apiKey?: string, timeoutMs = 5000): Promise<{ status: number; text: string }> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
    const req = mod.get(u, { headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

export interface ServerSample {
  /** Seconds since the soak started. */
  t: number;
  /** Resident memory, bytes, and where it came from. */
  rssBytes: number | null;
  rssSource: 'proc' | 'metrics' | null;
  /** Gauges from /metrics (absent when the server has no /metrics). */
  metrics: Partial<Record<(typeof GAUGES)[number], number>> | null;
  /** Client side, since the soak started: requests finished, failed, output tokens. */
  completed: number;
  failed: number;
  outputTokens: number;
}

export class ServerMonitor {
  private metricsAvailable = true;

  constructor(
    private readonly base: string,
    private readonly pid: number | undefined,
    private readonly apiKey?: string,
  ) {}

  async sample(t: number, client: { completed: number; failed: number; outputTokens: number }): Promise<ServerSample> {
    let metrics: ServerSample['metrics'] = null;
    if (this.metricsAvailable) {
      try {
        const r = await getText(`${this.base}/metrics`, this.apiKey);
        if (r.status === 200) {
          const all = parsePrometheus(r.text);
          metrics = {};
          for (const g of GAUGES) if (g in all) metrics[g] = all[g];
        } else if (r.status === 404) {
          this.metricsAvailable = false;
        }
      } catch {
        // a busy or restarting server: no metrics this time
      }
    }
    let rssBytes: number | null = null;
    let rssSource: ServerSample['rssSource'] = null;
    if (this.pid !== undefined) {
      rssBytes = procRss(this.pid);
      if (rssBytes !== null) rssSource = 'proc';
    }
    if (rssBytes === null && metrics?.process_resident_memory_bytes !== undefined) {
      rssBytes = metrics.process_resident_memory_bytes;
      rssSource = 'metrics';
    }
    return { t, rssBytes, rssSource, metrics, ...client };
  }
}

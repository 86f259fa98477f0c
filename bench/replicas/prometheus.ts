// Prometheus scraping the replicas, from deploy/prometheus (config and
// recording rules), its database in a folder of the run.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Helper, startHelper, waitUntil } from './process';
import { deployFile, renderInto } from './templates';

export const PROMETHEUS = process.env.PROMETHEUS ?? '/usr/bin/prometheus';
export const PROMTOOL = process.env.PROMTOOL ?? '/usr/bin/promtool';

/** Renders prometheus.yml into dir with the rules file beside it; returns the config's path. */
export function renderPrometheusConf(dir: string, replicas: readonly string[], interval = '15s'): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(deployFile('prometheus', 'roost.rules.yml'), path.join(dir, 'roost.rules.yml'));
  return renderInto(dir, 'prometheus/prometheus.yml', { ROOST_INTERVAL: interval }, replicas);
}

export interface Prometheus extends Helper {
  url: string;
  /** An instant query: the result vector ({metric labels, value}). */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>>;
}

export async function startPrometheus(dir: string, port: number, replicas: readonly string[], interval = '1s'): Promise<Prometheus> {
  const conf = renderPrometheusConf(dir, replicas, interval);
  const log = path.join(dir, 'prometheus.out');
  const helper = startHelper(
    PROMETHEUS,
    [`--config.file=${conf}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
    log,
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUntil(async () => (await fetch(`${url}/-/ready`)).ok, 60_000, 'Prometheus to be ready', log);
  } catch (e) {
    await helper.stop('SIGKILL');
    throw e;
  }
  const query = async (expr: string) => {
    const r = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await r.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    if (body.status !== 'success' || body.data?.resultType !== 'vector') throw new Error(`query ${expr}: ${body.error ?? JSON.stringify(body)}`);
    return body.data.result.map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
  };
  return { ...helper, url, query };
}

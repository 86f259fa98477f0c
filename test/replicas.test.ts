// Two `roost serve` replicas behind nginx (deploy/nginx/roost.conf) and
// Prometheus scraping both (deploy/prometheus): a closed-loop streaming load
// through nginx, over HTTP SSE and then over the WebSocket, while one replica
// is restarted (SIGTERM, drain, exit, start again). No request may fail and
// every stream must end with a finish reason; Prometheus must have scraped
// both replicas' roost_requests_total and evaluated the recording rules.
// Needs the Debian packages nginx and prometheus (.ci/run installs them).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { parseDistribution } from '../bench/load/distributions';
import { HttpTransport } from '../bench/load/http';
import { repoRoot } from '../bench/load/paths';
import { LevelResult, runLevel } from '../bench/load/runner';
import { RequestOptions, Transport } from '../bench/load/transport';
import { readCorpus, Workload } from '../bench/load/workload';
import { WsTransport } from '../bench/load/ws';
import { Replicas, Restart } from '../bench/replicas/cluster';
import { Nginx, startNginx } from '../bench/replicas/nginx';
import { freePort, waitUntil } from '../bench/replicas/process';
import { Prometheus, startPrometheus } from '../bench/replicas/prometheus';
import { TINY } from './http.helpers';
import { compileIfStale } from './serve.helpers';

const CONCURRENCY = 12;
const OPTIONS: RequestOptions = { temperature: 1, includeUsage: true, timeoutMs: 60_000 };

let dir: string;
let replicas: Replicas;
let nginx: Nginx | undefined;
let prometheus: Prometheus | undefined;

beforeAll(async () => {
  compileIfStale();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-replicas-'));
  fs.chmodSync(dir, 0o755); // nginx's workers (nobody, when run as root) reach their folder through it
  replicas = new Replicas({ model: TINY, threads: 1, drainSeconds: 1, extraArgs: ['--max-batch', '16'] });
  await replicas.start(2);
  nginx = await startNginx(path.join(dir, 'nginx'), await freePort(), replicas.addresses);
  prometheus = await startPrometheus(path.join(dir, 'prometheus'), await freePort(), replicas.addresses, '1s');
}, 180_000);

afterAll(async () => {
  await nginx?.stop();
  await prometheus?.stop();
  await replicas?.stopAll();
  fs.rmSync(dir, { recursive: true, force: true });
}, 60_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Closed-loop load through nginx; replica `restart` is restarted once the load runs, and the load ends shortly after it serves again. */
async function loadAcrossRestart(transport: Transport, restart: number, wait: 'routed' | 'listening', seed: number): Promise<{ level: LevelResult; restart: Restart }> {
  const workload = new Workload({
    corpus: readCorpus(path.join(repoRoot(), 'models', 'data', 'kjv-heldout.txt')),
    promptLength: parseDistribution('uniform:8-24'),
    outputLength: parseDistribution('uniform:40-90'),
    charsPerToken: 1,
    seed,
  });
  const stop = new AbortController();
  const level = runLevel({ mode: 'closed', concurrency: CONCURRENCY, workload, transport, signal: stop.signal, keepRequests: true });
  try {
    await sleep(1500);
    const r = await replicas.restart(restart, wait);
    await sleep(500);
    return { level: await (stop.abort(), level), restart: r };
  } finally {
    stop.abort();
    await level;
    await transport.close();
  }
}

function expectAllComplete(level: LevelResult): void {
  const failures = (level.requests ?? []).filter((r) => !r.ok).map((r) => r.error);
  expect(failures).toEqual([]);
  expect(level.failed).toBe(0);
  expect(level.completed).toBe(level.sent);
  expect(level.completed).toBeGreaterThan(CONCURRENCY);
  // Every stream ended with a finish reason (eos or max_tokens), none cut short.
  expect(Object.keys(level.finishReasons).filter((k) => k !== 'length' && k !== 'stop')).toEqual([]);
  for (const r of level.requests!) expect(r.outputTokens).toBeGreaterThan(0);
}

test('a replica restarted under streaming load through nginx fails no request, over HTTP SSE and over the WebSocket', async () => {
  const sse = await loadAcrossRestart(new HttpTransport(nginx!.url, OPTIONS), 0, 'routed', 1);
  expect(sse.restart.exit).toBe('exit code 0');
  expectAllComplete(sse.level);

  const transport = new WsTransport(nginx!.url, OPTIONS, 'json');
  // WebSocket connections stay on the replica they reached: the restarted one may get none back.
  const ws = await loadAcrossRestart(transport, 1, 'listening', 2);
  expect(ws.restart.exit).toBe('exit code 0');
  expectAllComplete(ws.level);
  expect(transport.unattributedErrors()).toBe(0);

  // Both replicas served through nginx.
  const log = fs.readFileSync(path.join(nginx!.prefix, 'access.log'), 'utf8');
  for (const a of replicas.addresses) expect(log).toContain(`upstream=${a} upstream_status=200`);
}, 180_000);

test("Prometheus scraped both replicas' roost_requests_total and evaluates the recording rules", async () => {
  const p = prometheus!;
  const want = [...replicas.addresses].sort();
  let instances: string[] = [];
  await waitUntil(
    async () => {
      // Over the run: a restarted process starts its counters afresh (and has none until a request finishes).
      const v = await p.query('sum by (instance) (max_over_time(roost_requests_total[10m]))');
      instances = v.filter((s) => s.value > 0).map((s) => s.metric.instance).sort();
      return instances.length === want.length;
    },
    30_000,
    'roost_requests_total of both replicas',
  );
  expect(instances).toEqual(want);
  for (const rule of ['job:roost_generation_tokens:rate1m', 'job:roost_time_to_first_token_seconds:p50_rate1m', 'job:roost_inter_token_latency_seconds:p90_rate1m']) {
    let value = NaN;
    await waitUntil(
      async () => {
        const v = await p.query(rule);
        value = v.length === 1 ? v[0].value : NaN;
        return value > 0 && Number.isFinite(value);
      },
      30_000,
      `the recording rule ${rule} to evaluate`,
    );
    expect(value).toBeGreaterThan(0);
  }
  // Both up again (a scrape during the restart saw one down).
  await waitUntil(async () => (await p.query('job:roost_replicas_up:sum')).map((s) => s.value).join() === '2', 30_000, 'job:roost_replicas_up:sum to be 2');
}, 90_000);

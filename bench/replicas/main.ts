// bench/replicas: Roost replicas behind nginx, scraped by Prometheus (the
// files in deploy/), driven by bench/load's closed-loop client through nginx.
//  1. N replicas x T threads: a steady level (no restarts), then for each
//     transport (HTTP SSE, WebSocket) a level during which the replicas are
//     restarted one by one (SIGTERM, drain, exit, start, back in rotation).
//  2. Prometheus' view of the run (both replicas' counters, the recording rules).
//  3. 1 replica x N*T threads behind the same nginx config: the same steady level.
// Writes JSON and an SVG plot (throughput and failures over time, each restart
// marked; the steady levels side by side). docs/deploy.md.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { parseDistribution } from '../load/distributions';
import { HttpTransport } from '../load/http';
import { repoRoot } from '../load/paths';
import { renderSvg } from '../load/plot';
import { LevelResult, runLevel } from '../load/runner';
import { eosTokenId, resolveModelDir } from '../load/server';
import type { RequestOptions, Transport } from '../load/transport';
import { readCorpus, Workload } from '../load/workload';
import { WsTransport } from '../load/ws';
import { Replicas, Restart } from './cluster';
import { Nginx, startNginx } from './nginx';
import { freePort } from './process';
import { Prometheus, startPrometheus } from './prometheus';
import { ComparisonRow, replicasSpec, restartMarks, RollingPanel, timeline } from './timeline';

const USAGE = `npm run bench:replicas -- [flags]
  --model DIR|NAME     served model (default: default = models/DEFAULT)
  --replicas N         replicas behind nginx (default 2)
  --threads T          engine threads per replica (default 1); the comparison runs 1 replica x N*T threads
  --concurrency C      closed-loop clients (default 16)
  --steady S           seconds of each steady level (default 20)
  --warm S             seconds of load before the first restart and after the last (default 5)
  --transports LIST    rolling-restart levels: http, ws or http,ws (default http,ws)
  --drain-seconds S    replicas' --drain-seconds (default 2)
  --prompt-len D, --output-len D   request shapes (bench/load; default uniform:64-256, fixed:128)
  --out PREFIX         output files PREFIX.json and PREFIX.svg (default bench/results/replicas)`;

function positive(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!(x > 0)) throw new Error(`--${flag} must be a number above 0 (got ${v})`);
  return x;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      replicas: { type: 'string' },
      threads: { type: 'string' },
      concurrency: { type: 'string' },
      steady: { type: 'string' },
      warm: { type: 'string' },
      transports: { type: 'string' },
      'drain-seconds': { type: 'string' },
      'prompt-len': { type: 'string' },
      'output-len': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const root = repoRoot();
  const n = positive(values.replicas, 'replicas', 2);
  const threads = positive(values.threads, 'threads', 1);
  const concurrency = positive(values.concurrency, 'concurrency', 16);
  const steadyS = positive(values.steady, 'steady', 20);
  const warmS = positive(values.warm, 'warm', 5);
  const drainSeconds = positive(values['drain-seconds'], 'drain-seconds', 2);
  const transports = (values.transports ?? 'http,ws').split(',');
  for (const t of transports) if (t !== 'http' && t !== 'ws') throw new Error(`--transports: ${t} is not http or ws`);
  const out = path.resolve(values.out ?? path.join(root, 'bench', 'results', 'replicas'));
  const modelDir = resolveModelDir(values.model ?? 'default');
  const eos = eosTokenId(modelDir);
  const opts: RequestOptions = { temperature: 1, includeUsage: true, timeoutMs: 300_000, logitBias: eos === null ? undefined : { [String(eos)]: -100 } };
  const corpus = readCorpus(path.join(root, 'models', 'data', 'kjv-heldout.txt'));
  const promptLength = parseDistribution(values['prompt-len'] ?? 'uniform:64-256', '--prompt-len');
  const outputLength = parseDistribution(values['output-len'] ?? 'fixed:128', '--output-len');
  const workload = (seed: number) => new Workload({ corpus, promptLength, outputLength, charsPerToken: 1, seed });
  const log = (s: string) => process.stderr.write(`bench/replicas: ${s}\n`);

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-bench-replicas-'));
  fs.chmodSync(work, 0o755); // nginx's workers (nobody, when run as root) reach their folder through it
  const loadStart = os.loadavg();
  const startedAt = new Date().toISOString();
  const steady: Array<{ config: string; level: LevelResult }> = [];
  const rolling: Array<{ transport: string; level: LevelResult; restarts: Restart[]; resent: number | null }> = [];
  let prometheusView: Record<string, unknown> = {};
  let replicas: Replicas | undefined;
  let nginx: Nginx | undefined;
  let prometheus: Prometheus | undefined;

  const steadyLevel = async (config: string, url: string, seed: number) => {
    log(`${config}: steady closed loop, concurrency ${concurrency}, ${steadyS} s`);
    const level = await runLevel({ label: config, mode: 'closed', concurrency, durationS: steadyS, workload: workload(seed), transport: new HttpTransport(url, opts) });
    log(`${config}: ${level.completed} ok, ${level.failed} failed, ${level.outputTokensPerSecond.toFixed(1)} output tokens/s`);
    steady.push({ config, level });
  };

  try {
    // 1. N replicas x T threads behind nginx, Prometheus scraping them.
    replicas = new Replicas({ model: modelDir, threads, drainSeconds, extraArgs: ['--max-batch', String(Math.max(64, concurrency))] });
    await replicas.start(n);
    nginx = await startNginx(path.join(work, 'nginx'), await freePort(), replicas.addresses);
    prometheus = await startPrometheus(path.join(work, 'prometheus'), await freePort(), replicas.addresses, '1s');
    log(`${n} replicas (${replicas.addresses.join(', ')}) behind nginx ${nginx.url}, Prometheus ${prometheus.url}`);
    await steadyLevel(`${n} replicas x ${threads} thread${threads > 1 ? 's' : ''}`, nginx.url, 1);

    for (const [k, name] of transports.entries()) {
      const transport: Transport = name === 'http' ? new HttpTransport(nginx.url, opts) : new WsTransport(nginx.url, opts, 'json');
      const stop = new AbortController();
      log(`${name}: rolling restart of ${n} replicas under concurrency ${concurrency}`);
      const running = runLevel({ label: `rolling restart (${name})`, mode: 'closed', concurrency, workload: workload(10 + k), transport, signal: stop.signal, keepRequests: true });
      const restarts: Restart[] = [];
      try {
        await sleep(warmS * 1000);
        for (let i = 0; i < n; i++) {
          // HTTP: until nginx routed a request to it; WebSocket connections stay where they are.
          restarts.push(await replicas.restart(i, name === 'http' ? 'routed' : 'listening'));
          log(`${name}: replica ${i} restarted (${restarts[i].exit})`);
        }
        await sleep(warmS * 1000);
      } finally {
        stop.abort();
      }
      const level = await running;
      await transport.close();
      const resent = transport instanceof WsTransport ? transport.resentRequests() : null;
      log(`${name}: ${level.completed} ok, ${level.failed} failed${resent === null ? '' : `, ${resent} resent after a 1012 close`}`);
      rolling.push({ transport: name, level, restarts, resent });
    }

    // 2. What Prometheus saw.
    await sleep(3000);
    const q = async (expr: string) => (await prometheus!.query(expr)).map((s) => ({ ...s.metric, value: s.value }));
    prometheusView = {
      requestsTotalByInstance: await q('sum by (instance) (max_over_time(roost_requests_total[30m]))'),
      'job:roost_generation_tokens:rate1m': await q('job:roost_generation_tokens:rate1m'),
      'job:roost_time_to_first_token_seconds:p50_rate1m': await q('job:roost_time_to_first_token_seconds:p50_rate1m'),
      'job:roost_inter_token_latency_seconds:p50_rate1m': await q('job:roost_inter_token_latency_seconds:p50_rate1m'),
      'job:roost_requests_waiting:sum': await q('job:roost_requests_waiting:sum'),
    };
    await prometheus.stop();
    prometheus = undefined;
    await nginx.stop();
    nginx = undefined;
    await replicas.stopAll();

    // 3. One replica with all the threads, behind the same nginx config.
    replicas = new Replicas({ model: modelDir, threads: n * threads, drainSeconds, extraArgs: ['--max-batch', String(Math.max(64, concurrency))] });
    await replicas.start(1);
    nginx = await startNginx(path.join(work, 'nginx-one'), await freePort(), replicas.addresses);
    await steadyLevel(`1 replica x ${n * threads} threads`, nginx.url, 1);
  } finally {
    await nginx?.stop();
    await prometheus?.stop();
    await replicas?.stopAll();
    if (!process.env.ROOST_BENCH_KEEP) fs.rmSync(work, { recursive: true, force: true });
    else log(`kept ${work}`);
  }

  const report = {
    tool: 'roost bench/replicas',
    schemaVersion: 1,
    startedAt,
    finishedAt: new Date().toISOString(),
    argv: process.argv.slice(2),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, platform: `${os.platform()} ${os.release()}`, node: process.version },
    loadAverage: { start: loadStart, end: os.loadavg() },
    note: 'nginx, Prometheus, the replicas and the load generator share the machine; with fewer cores than replicas x threads this measures the balancer overhead, not scaling.',
    options: { model: path.relative(root, modelDir) || modelDir, replicas: n, threads, concurrency, steadySeconds: steadyS, warmSeconds: warmS, drainSeconds, transports, workload: workload(0).describe() },
    steady: steady.map((s) => ({ config: s.config, ...s.level })),
    rolling: rolling.map((r) => ({
      restarts: r.restarts,
      restartMarks: restartMarks(r.level, r.restarts),
      resentAfterDrainClose: r.resent,
      timeline: timeline(r.level),
      ...r.level,
      requests: undefined,
    })),
    prometheus: prometheusView,
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(`${out}.json`, JSON.stringify(report, null, 2) + '\n');
  const panels: RollingPanel[] = rolling.map((r) => ({
    title: `Rolling restart of ${n} replicas, ${r.transport === 'http' ? 'HTTP SSE' : 'WebSocket'}: ${r.level.completed} requests ok, ${r.level.failed} failed`,
    bins: timeline(r.level),
    restarts: restartMarks(r.level, r.restarts),
  }));
  const comparison: ComparisonRow[] = steady.map((s) => ({ config: s.config, outputTokensPerSecond: s.level.outputTokensPerSecond, requestsPerSecond: s.level.requestsPerSecond, failed: s.level.failed }));
  const subtitle = `${report.options.model}, closed loop ${concurrency} clients through nginx; ${os.cpus().length} CPUs, load avg ${loadStart[0].toFixed(1)} -> ${os.loadavg()[0].toFixed(1)}`;
  fs.writeFileSync(`${out}.svg`, await renderSvg(replicasSpec('Roost replicas behind nginx', subtitle, panels, comparison)));
  log(`wrote ${path.relative(root, out)}.json and .svg`);
  const failed = [...steady.map((s) => s.level.failed), ...rolling.map((r) => r.level.failed)].reduce((a, b) => a + b, 0);
  if (failed > 0) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`bench/replicas: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});

// Roost load generator: closed-loop (fixed concurrency) and open-loop (Poisson
// arrivals) load over HTTP server-sent events or the Roost WebSocket, against
// a Roost it starts itself or any OpenAI-compatible server (--base-url).
// Reports TTFT, ITL, E2E percentiles, throughput and errors by kind; writes
// JSON and an SVG plot of latency against throughput. See docs/load.md.
//
//   npm run bench:load                        default sweep 1..64 on the shipped default model
//   npm run bench:load -- --base-url http://127.0.0.1:8000 --concurrency 8 --requests 100
//   npm run bench:load -- --rate 4 --duration 60 --transport ws
//   npm run bench:load -- --soak-minutes 10 --concurrency 16
process.env.UV_THREADPOOL_SIZE ??= '2';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { writeRandomGpt2 } from '../lib/random-gpt2';
import { Distribution, formatDistribution, maxOf, parseDistribution } from './distributions';
import { HttpTransport } from './http';
import { getText, ServerMonitor } from './monitor';
import { repoRoot } from './paths';
import { renderSvg, soakSpec, sweepSpec } from './plot';
import { Progress } from './progress';
import { fmt, LevelResult, runLevel } from './runner';
import { eosTokenId, spawnRoost, SpawnedServer } from './server';
import { runSoak, SoakResult } from './soak';
import { normalizeBaseUrl, RequestOptions, Transport } from './transport';
import { Workload, readCorpus } from './workload';
import { WsFormat, WsTransport } from './ws';

export const DEFAULT_SWEEP = [1, 2, 4, 8, 16, 32, 64];
/** `--model random-124m-f16`: a random GPT-2-124M-shaped F16 checkpoint (bytes tokenizer), written on first use. */
export const RANDOM_124M = 'random-124m-f16';

export const USAGE = `usage: node dist/bench/load/main.js [options]     (npm run bench:load -- [options])

target (default: start \`roost serve --model default --port 0\` and stop it afterwards)
  --base-url URL          an OpenAI-compatible server (http://host:port, with or without /v1)
  --model DIR|NAME        model of the spawned server (default "default"; "${RANDOM_124M}" writes a
                          random GPT-2-124M-shaped F16 checkpoint to bench/tmp/)
  --threads N             spawned server's --threads
  --max-batch N           spawned server's --max-batch (default: max(64, highest concurrency))
  --server-pid PID        the server's process id, for RSS from /proc (soak)
  --model-name NAME       the body's "model" field (default: the first id of GET /v1/models)
  --api-key KEY           Authorization: Bearer KEY

load (one of; default --sweep ${DEFAULT_SWEEP.join(',')})
  --concurrency N         closed loop: N workers, each sends its next request when the previous ends
  --sweep LIST            closed loop at each concurrency of the list, e.g. 1,2,4,8,16,32,64
  --rate R[,R2...]        open loop: Poisson arrivals at R requests/s (a list = one level per rate)
  --max-concurrency N     open loop: at most N requests in flight (arrivals wait); default unbounded
  --soak-minutes M        one fixed load (--concurrency, default 16, or --rate) for M minutes,
                          sampling RSS and /metrics
  --sample-interval S     soak: seconds between samples (default 5)
  --soak-warmup S         soak: seconds before the memory baseline (default 60)
  --soak-window S         soak: seconds of samples whose median is compared at each end (default 60)

bounds (per level; whichever comes first)
  --requests N|Kx         requests per level; "8x" = 8 x concurrency
  --duration S            seconds per level (sending stops; running requests finish)
  --warmup N              requests sent before the first level, not measured (default 2)
  --timeout S             per-request limit (default 600; 0 = none)

workload
  --prompt-len DIST       prompt length, tokens: N, fixed:N, uniform:A-B, normal:MEAN,SD[,MIN-MAX] (default uniform:64-256)
  --output-len DIST       max_tokens, same forms (default fixed:128)
  --chars-per-token R     prompt characters per token (default 1: byte tokenizers; about 4 for GPT-2 BPE)
  --corpus FILE           prompt text (default models/data/kjv-heldout.txt)
  --temperature T         default 1
  --ignore-eos            send logit_bias {eos: -100} so outputs run to max_tokens; on by default when this
                          tool starts the server (eos from its config.json); with --base-url give --eos-token
  --keep-eos              let the model stop at eos (outputs may end before max_tokens)
  --eos-token ID          the eos id for --ignore-eos
  --logit-bias ID:B,...   logit_bias entries
  --logprobs N            send logprobs: N (Roost then streams one chunk per token, text or not)
  --extra-body JSON       merged into every request (e.g. '{"ignore_eos":true}' for vLLM)
  --no-usage              do not send stream_options.include_usage (tokens are counted from the stream)
  --seed S                seed of prompts, lengths, request seeds and arrivals (default 1)

transport
  --transport http|ws     HTTP server-sent events (default) or Roost's WebSocket /v1/stream
  --ws-format json|protobuf
  --ws-connections N      WebSocket connections (default: one per worker; open loop 16)

output
  --replot FILE.json      only redraw FILE.svg from a report this tool wrote
  --out PREFIX            writes PREFIX.json and PREFIX.svg (default bench/results/load-default for the
                          default run, else bench/tmp/load-<time>)
  --title TEXT            plot title
  --raw                   keep every request's record in the JSON
  --quiet                 no progress on stderr
  -h, --help`;

const OPTIONS = {
  'base-url': { type: 'string' },
  model: { type: 'string' },
  threads: { type: 'string' },
  'max-batch': { type: 'string' },
  'server-pid': { type: 'string' },
  'model-name': { type: 'string' },
  'api-key': { type: 'string' },
  concurrency: { type: 'string' },
  sweep: { type: 'string' },
  rate: { type: 'string' },
  'max-concurrency': { type: 'string' },
  'soak-minutes': { type: 'string' },
  'soak-warmup': { type: 'string' },
  'soak-window': { type: 'string' },
  'sample-interval': { type: 'string' },
  requests: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  timeout: { type: 'string' },
  'prompt-len': { type: 'string' },
  'output-len': { type: 'string' },
  'chars-per-token': { type: 'string' },
  corpus: { type: 'string' },
  temperature: { type: 'string' },
  'ignore-eos': { type: 'boolean' },
  'keep-eos': { type: 'boolean' },
  'eos-token': { type: 'string' },
  'logit-bias': { type: 'string' },
  logprobs: { type: 'string' },
  'extra-body': { type: 'string' },
  'no-usage': { type: 'boolean' },
  seed: { type: 'string' },
  transport: { type: 'string' },
  'ws-format': { type: 'string' },
  'ws-connections': { type: 'string' },
  out: { type: 'string' },
  title: { type: 'string' },
  replot: { type: 'string' },
  raw: { type: 'boolean' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface Plan {
  baseUrl: string | null;
  model: string;
  threads?: number;
  maxBatch?: number;
  serverPid?: number;
  modelName?: string;
  apiKey?: string;
  mode: 'sweep' | 'rate' | 'soak';
  concurrencies: number[];
  rates: number[];
  maxConcurrency: number;
  soakMinutes: number;
  soakWarmupS: number;
  soakWindowS: number;
  sampleIntervalS: number;
  /** Requests per level: a count, or a multiple of the concurrency. */
  requests: { n: number; perConcurrency: boolean } | null;
  durationS: number;
  warmup: number;
  timeoutS: number;
  promptLength: Distribution;
  outputLength: Distribution;
  charsPerToken: number;
  corpus: string;
  temperature: number;
  ignoreEos: boolean;
  eosToken?: number;
  logitBias: Record<string, number>;
  logprobs?: number;
  extraBody?: Record<string, unknown>;
  includeUsage: boolean;
  seed: number;
  transport: 'http' | 'ws';
  wsFormat: WsFormat;
  wsConnections: number;
  out: string;
  title?: string;
  raw: boolean;
  quiet: boolean;
  isDefaultRun: boolean;
}

class UsageError extends Error {}

function num(v: string | undefined, name: string, ok: (x: number) => boolean, what: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || !ok(x)) throw new UsageError(`--${name} must be ${what} (got ${JSON.stringify(v)})`);
  return x;
}
const posInt = (v: string | undefined, name: string) => num(v, name, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
const list = (v: string, name: string, ok: (x: number) => boolean, what: string) =>
  v.split(',').map((s) => num(s.trim(), name, ok, what)!);

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
}

/** The flags as a plan (validation only; nothing runs). */
export function parsePlan(argv: string[]): Plan | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values as typeof values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return 'help';
  const s = (k: string) => values[k] as string | undefined;
  const root = repoRoot();

  const modes = ['sweep', 'concurrency', 'rate', 'soak-minutes'].filter((k) => s(k) !== undefined);
  if (modes.includes('sweep') && modes.includes('concurrency')) throw new UsageError('--sweep and --concurrency: give one');
  if (modes.includes('sweep') && modes.includes('rate')) throw new UsageError('--sweep and --rate: give one');
  if (modes.includes('concurrency') && modes.includes('rate')) throw new UsageError('--concurrency and --rate: give one');
  const soakMinutes = num(s('soak-minutes'), 'soak-minutes', (x) => x > 0, 'a number of minutes > 0') ?? 0;
  let mode: Plan['mode'] = soakMinutes > 0 ? 'soak' : s('rate') !== undefined ? 'rate' : 'sweep';
  if (mode === 'soak' && s('sweep') !== undefined) throw new UsageError('--soak-minutes runs one load: use --concurrency or --rate, not --sweep');
  const isInt = (x: number) => Number.isInteger(x) && x >= 1;
  let concurrencies = DEFAULT_SWEEP;
  if (s('sweep') !== undefined) concurrencies = list(s('sweep')!, 'sweep', isInt, 'a comma-separated list of positive integers');
  if (s('concurrency') !== undefined) concurrencies = [posInt(s('concurrency'), 'concurrency')!];
  if (mode === 'soak' && s('concurrency') === undefined && s('rate') === undefined) concurrencies = [16];
  const rates = s('rate') !== undefined ? list(s('rate')!, 'rate', (x) => x > 0, 'a comma-separated list of rates > 0 (requests/s)') : [];
  if (mode === 'soak' && rates.length > 1) throw new UsageError('--soak-minutes takes one --rate');

  let requests: Plan['requests'] = null;
  const rq = s('requests');
  if (rq !== undefined) {
    const m = /^(\d+)(x?)$/.exec(rq.trim());
    if (!m || Number(m[1]) < 1) throw new UsageError(`--requests must be a positive integer N or a multiple of the concurrency Kx (got ${JSON.stringify(rq)})`);
    requests = { n: Number(m[1]), perConcurrency: m[2] === 'x' };
    if (requests.perConcurrency && mode === 'rate') throw new UsageError('--requests Kx needs a concurrency: give a plain count with --rate');
  }
  let durationS = num(s('duration'), 'duration', (x) => x > 0, 'a number of seconds > 0') ?? 0;
  if (mode !== 'soak' && !requests && !durationS) {
    // The default bound keeps a sweep to a few minutes on a small machine.
    requests = { n: 16, perConcurrency: true };
    durationS = 30;
  }
  if (mode === 'soak' && (requests || durationS)) throw new UsageError('--soak-minutes sets the duration: drop --requests / --duration');

  const transport = (s('transport') ?? 'http') as Plan['transport'];
  if (transport !== 'http' && transport !== 'ws') throw new UsageError(`--transport must be http or ws (got ${transport})`);
  const wsFormat = (s('ws-format') ?? 'json') as WsFormat;
  if (wsFormat !== 'json' && wsFormat !== 'protobuf') throw new UsageError(`--ws-format must be json or protobuf (got ${wsFormat})`);

  const logitBias: Record<string, number> = {};
  if (s('logit-bias') !== undefined) {
    for (const part of s('logit-bias')!.split(',')) {
      const m = /^\s*(\d+)\s*:\s*(-?\d+(\.\d+)?)\s*$/.exec(part);
      if (!m) throw new UsageError(`--logit-bias must be ID:BIAS[,ID:BIAS...] (got ${JSON.stringify(part)})`);
      logitBias[m[1]] = Number(m[2]);
    }
  }
  let extraBody: Record<string, unknown> | undefined;
  if (s('extra-body') !== undefined) {
    try {
      extraBody = JSON.parse(s('extra-body')!);
    } catch (e) {
      throw new UsageError(`--extra-body must be a JSON object: ${(e as Error).message}`);
    }
    if (!extraBody || typeof extraBody !== 'object' || Array.isArray(extraBody)) throw new UsageError('--extra-body must be a JSON object');
  }
  const parseDist = (flag: string, dflt: string) => {
    try {
      return parseDistribution(s(flag) ?? dflt, `--${flag}`);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
  const baseUrl = s('base-url') !== undefined ? normalizeBaseUrl(s('base-url')!) : null;
  if (baseUrl && (s('model') !== undefined || s('threads') !== undefined || s('max-batch') !== undefined)) {
    throw new UsageError('--model, --threads and --max-batch configure the server this tool starts: not with --base-url');
  }
  const isDefaultRun = !baseUrl && mode === 'sweep' && s('sweep') === undefined && s('concurrency') === undefined && (s('model') ?? 'default') === 'default';
  const plan: Plan = {
    baseUrl,
    model: s('model') ?? 'default',
    threads: posInt(s('threads'), 'threads'),
    maxBatch: posInt(s('max-batch'), 'max-batch'),
    serverPid: posInt(s('server-pid'), 'server-pid'),
    modelName: s('model-name'),
    apiKey: s('api-key'),
    mode,
    concurrencies,
    rates,
    maxConcurrency: num(s('max-concurrency'), 'max-concurrency', (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0') ?? 0,
    soakMinutes,
    soakWarmupS: num(s('soak-warmup'), 'soak-warmup', (x) => x >= 0, 'a number of seconds >= 0') ?? 60,
    soakWindowS: num(s('soak-window'), 'soak-window', (x) => x > 0, 'a number of seconds > 0') ?? 60,
    sampleIntervalS: num(s('sample-interval'), 'sample-interval', (x) => x > 0, 'a number of seconds > 0') ?? 5,
    requests,
    durationS,
    warmup: num(s('warmup'), 'warmup', (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0') ?? 2,
    timeoutS: num(s('timeout'), 'timeout', (x) => x >= 0, 'a number of seconds >= 0') ?? 600,
    promptLength: parseDist('prompt-len', 'uniform:64-256'),
    outputLength: parseDist('output-len', 'fixed:128'),
    charsPerToken: num(s('chars-per-token'), 'chars-per-token', (x) => x > 0, 'a number > 0') ?? 1,
    corpus: s('corpus') ?? path.join(root, 'models', 'data', 'kjv-heldout.txt'),
    temperature: num(s('temperature'), 'temperature', (x) => x >= 0, 'a number >= 0') ?? 1,
    ignoreEos: Boolean(values['ignore-eos']) || (!baseUrl && !values['keep-eos']),
    eosToken: num(s('eos-token'), 'eos-token', (x) => Number.isInteger(x) && x >= 0, 'a token id'),
    logitBias,
    logprobs: num(s('logprobs'), 'logprobs', (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0'),
    extraBody,
    includeUsage: !values['no-usage'],
    seed: num(s('seed'), 'seed', (x) => Number.isInteger(x), 'an integer') ?? 1,
    transport,
    wsFormat,
    wsConnections: num(s('ws-connections'), 'ws-connections', (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0') ?? 0,
    out: s('out') ?? (isDefaultRun ? path.join(root, 'bench', 'results', 'load-default') : path.join(root, 'bench', 'tmp', `load-${stamp()}`)),
    title: s('title'),
    raw: Boolean(values.raw),
    quiet: Boolean(values.quiet),
    isDefaultRun,
  };
  if (values['ignore-eos'] && values['keep-eos']) throw new UsageError('--ignore-eos and --keep-eos: give one');
  if (plan.out.endsWith('.json')) plan.out = plan.out.slice(0, -5);
  if (plan.ignoreEos && baseUrl && plan.eosToken === undefined) throw new UsageError('--ignore-eos with --base-url needs --eos-token ID (the tool cannot read a remote model\'s config)');
  return plan;
}

/** Requests of one closed-loop level. */
export function requestsFor(plan: Pick<Plan, 'requests'>, concurrency: number): number {
  if (!plan.requests) return 0;
  return plan.requests.perConcurrency ? plan.requests.n * concurrency : plan.requests.n;
}

function modelDirFor(model: string): string {
  if (model !== RANDOM_124M) return model;
  const dir = path.join(repoRoot(), 'bench', 'tmp', 'gpt2-124m-f16');
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    process.stderr.write(`writing a random GPT-2-124M-shaped F16 checkpoint to ${dir} ...\n`);
    writeRandomGpt2(dir, { nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257, nPositions: 1024, dtype: 'F16' });
  }
  return dir;
}

async function detectModelName(base: string, apiKey?: string): Promise<{ id?: string; maxModelLen?: number | null; error?: string }> {
  try {
    const r = await getText(`${base}/v1/models`, apiKey, 10_000);
    if (r.status !== 200) return { error: `GET /v1/models: HTTP ${r.status}` };
    const first = JSON.parse(r.text)?.data?.[0];
    return { id: typeof first?.id === 'string' ? first.id : undefined, maxModelLen: first?.max_model_len };
  } catch (e) {
    return { error: `GET /v1/models: ${(e as Error).message}` };
  }
}

function markdownTable(levels: readonly LevelResult[]): string {
  const head = '| load | requests ok / failed | req/s | output tok/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | E2E p50 | E2E p99 |';
  const rows = levels.map(
    (l) =>
      `| ${l.concurrency !== null ? `c=${l.concurrency}` : `${l.rate}/s`} | ${l.completed} / ${l.failed} | ${fmt(l.requestsPerSecond, 2)} | ${fmt(l.outputTokensPerSecond, 1)} | ` +
      `${fmt(l.ttftMs.p50)} | ${fmt(l.ttftMs.p99)} | ${fmt(l.itlMs.p50)} | ${fmt(l.itlMs.p99)} | ${fmt(l.e2eMs.p50, 0)} | ${fmt(l.e2eMs.p99, 0)} |`,
  );
  return [head, '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |', ...rows].join('\n') + '\n(latencies in ms)\n';
}

/** Redraws the SVG of a report (a sweep's latency/throughput plot, or a soak's time series). */
export async function replot(file: string, title?: string): Promise<string> {
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  const levels = report.levels as LevelResult[];
  const spawned = report.target?.spawned;
  const target = spawned ? `roost serve --model ${spawned.model}` : report.target?.baseUrl;
  const out = file.replace(/\.json$/, '') + '.svg';
  if (report.soak) {
    fs.writeFileSync(out, await renderSvg(soakSpec({ ...report.soak, level: levels[0] }, title ?? `Soak: ${target}, ${levels[0].label}`)));
  } else {
    const w = report.workload ?? {};
    const la = report.loadAverage ?? {};
    const transport = report.options?.transport === 'http' ? 'HTTP SSE' : `WebSocket (${String(report.options?.transport).replace('ws-', '')})`;
    const subtitle = `${transport}; prompt ${w.promptLength} x ${w.charsPerToken} chars/token, output ${w.outputLength}; ${report.machine?.cpus} CPUs, load avg ${la.start?.[0]?.toFixed(1)} -> ${la.end?.[0]?.toFixed(1)}`;
    fs.writeFileSync(out, await renderSvg(sweepSpec(levels, title ?? `Latency vs throughput: ${target}`, subtitle)));
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const r = argv.indexOf('--replot');
  if (r >= 0) {
    if (!argv[r + 1]) {
      process.stderr.write('bench/load: --replot needs a report JSON file\n');
      return 2;
    }
    const t = argv.indexOf('--title');
    process.stdout.write(`wrote ${await replot(argv[r + 1], t >= 0 ? argv[t + 1] : undefined)}\n`);
    return 0;
  }
  let plan: Plan;
  try {
    const p = parsePlan(argv);
    if (p === 'help') {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    plan = p;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`bench/load: ${e.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw e;
  }
  const progress = new Progress(!plan.quiet);
  const startedAt = new Date().toISOString();
  const loadStart = os.loadavg();
  const abort = new AbortController();
  const onSignal = () => {
    progress.log('bench/load: interrupted; finishing running requests and writing what was measured (again to force)');
    abort.abort();
    process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', onSignal);

  let server: SpawnedServer | undefined;
  let base = plan.baseUrl;
  const maxLevelConcurrency = Math.max(...plan.concurrencies, plan.maxConcurrency, 1);
  try {
    if (!base) {
      const extra: string[] = [];
      if (plan.threads) extra.push('--threads', String(plan.threads));
      extra.push('--max-batch', String(plan.maxBatch ?? Math.max(64, plan.mode === 'rate' ? 64 : maxLevelConcurrency)));
      progress.log(`bench/load: starting roost serve --model ${plan.model} ...`);
      server = await spawnRoost({ model: modelDirFor(plan.model), extraArgs: extra });
      base = server.url;
      progress.log(`bench/load: roost serve (pid ${server.pid}) listening on ${base}`);
    }
    const detected = await detectModelName(base, plan.apiKey);
    if (detected.error) progress.log(`bench/load: ${detected.error} (the requests will say more)`);
    const modelName = plan.modelName ?? detected.id;
    const longest = maxOf(plan.promptLength) + maxOf(plan.outputLength);
    if (typeof detected.maxModelLen === 'number' && longest > detected.maxModelLen) {
      progress.log(`bench/load: warning: prompt + output can reach ${longest} tokens, over the model's ${detected.maxModelLen}: such requests will be refused`);
    }

    const logitBias = { ...plan.logitBias };
    if (plan.ignoreEos) {
      const eos = plan.eosToken ?? (server ? eosTokenId(server.modelDir) : null);
      if (eos === null) progress.log('bench/load: --ignore-eos: the model has no eos token; nothing to suppress');
      else logitBias[String(eos)] = -100;
    }
    const reqOpts: RequestOptions = {
      temperature: plan.temperature,
      modelName,
      logitBias,
      logprobs: plan.logprobs,
      includeUsage: plan.includeUsage,
      extraBody: plan.extraBody,
      apiKey: plan.apiKey,
      timeoutMs: plan.timeoutS * 1000,
    };
    const corpus = readCorpus(plan.corpus);
    const workload = (levelSeed: number) =>
      new Workload({ corpus, promptLength: plan.promptLength, outputLength: plan.outputLength, charsPerToken: plan.charsPerToken, seed: plan.seed * 1000 + levelSeed });
    const transport: Transport =
      plan.transport === 'http'
        ? new HttpTransport(base, reqOpts)
        : new WsTransport(base, reqOpts, plan.wsFormat, plan.wsConnections || (plan.mode === 'rate' || (plan.mode === 'soak' && plan.rates.length) ? 16 : 0));

    const report: Record<string, unknown> = {
      tool: 'roost bench/load',
      schemaVersion: 1,
      startedAt,
      finishedAt: null,
      argv,
      target: {
        baseUrl: base,
        modelName: modelName ?? null,
        maxModelLen: detected.maxModelLen ?? null,
        spawned: server ? { model: plan.model, modelDir: path.relative(repoRoot(), server.modelDir) || server.modelDir, args: server.args.map((a) => (path.isAbsolute(a) ? path.relative(repoRoot(), a) : a)), pid: server.pid } : null,
      },
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, totalMemoryBytes: os.totalmem(), platform: `${os.platform()} ${os.release()}`, node: process.version },
      loadAverage: { start: loadStart, end: null as number[] | null },
      note:
        'The load generator and the server share the machine; os.loadavg() at the start and end of every level shows other work that ran at the same time (absolute throughput is then a lower bound).',
      options: {
        mode: plan.mode,
        transport: plan.transport === 'ws' ? `ws-${plan.wsFormat}` : 'http',
        concurrencies: plan.mode === 'rate' ? null : plan.concurrencies,
        rates: plan.rates.length ? plan.rates : null,
        maxConcurrency: plan.maxConcurrency || null,
        requestsPerLevel: plan.requests ? (plan.requests.perConcurrency ? `${plan.requests.n}x concurrency` : plan.requests.n) : null,
        durationSecondsPerLevel: plan.durationS || null,
        warmupRequests: plan.warmup,
        timeoutSeconds: plan.timeoutS,
        temperature: plan.temperature,
        logitBias,
        logprobs: plan.logprobs ?? null,
        extraBody: plan.extraBody ?? null,
        includeUsage: plan.includeUsage,
        corpus: path.relative(repoRoot(), plan.corpus) || plan.corpus,
      },
      workload: workload(0).describe(),
      levels: [] as LevelResult[],
    };
    const outJson = `${plan.out}.json`;
    const outSvg = `${plan.out}.svg`;
    fs.mkdirSync(path.dirname(outJson), { recursive: true });
    const save = () => fs.writeFileSync(outJson, JSON.stringify(report, null, 2) + '\n');

    if (plan.warmup > 0 && !abort.signal.aborted) {
      await runLevel({ label: 'warm-up', mode: 'closed', concurrency: 1, requests: plan.warmup, workload: workload(999), transport, progress, signal: abort.signal });
    }
    const levels = report.levels as LevelResult[];
    let soak: SoakResult | undefined;
    if (plan.mode === 'soak') {
      const monitor = new ServerMonitor(base, plan.serverPid ?? server?.pid, plan.apiKey);
      const open = plan.rates.length > 0;
      progress.log(`bench/load: soak for ${plan.soakMinutes} min at ${open ? `${plan.rates[0]} req/s` : `concurrency ${plan.concurrencies[0]}`}, sampling every ${plan.sampleIntervalS} s`);
      soak = await runSoak({
        label: `soak ${open ? `${plan.rates[0]}/s` : `c=${plan.concurrencies[0]}`}`,
        mode: open ? 'open' : 'closed',
        concurrency: open ? undefined : plan.concurrencies[0],
        rate: open ? plan.rates[0] : undefined,
        maxConcurrency: plan.maxConcurrency,
        seed: plan.seed,
        workload: workload(1),
        transport,
        progress,
        signal: abort.signal,
        minutes: plan.soakMinutes,
        warmupS: plan.soakWarmupS,
        intervalS: plan.sampleIntervalS,
        windowS: plan.soakWindowS,
        monitor,
      });
      levels.push(soak.level);
      report.soak = { ...soak, level: undefined };
      save();
    } else {
      const steps = plan.mode === 'rate' ? plan.rates.map((r) => ({ rate: r })) : plan.concurrencies.map((c) => ({ concurrency: c }));
      for (const [i, step] of steps.entries()) {
        if (abort.signal.aborted) break;
        const r = await runLevel({
          mode: 'rate' in step ? 'open' : 'closed',
          concurrency: 'concurrency' in step ? step.concurrency : undefined,
          rate: 'rate' in step ? step.rate : undefined,
          maxConcurrency: plan.maxConcurrency,
          requests: 'concurrency' in step ? requestsFor(plan, step.concurrency) : plan.requests?.n,
          durationS: plan.durationS,
          seed: plan.seed + i,
          workload: workload(i + 1),
          transport,
          progress,
          keepRequests: plan.raw,
          signal: abort.signal,
        });
        levels.push(r);
        save();
      }
    }
    await transport.close();
    if (transport instanceof WsTransport && transport.unattributedErrors() > 0) report.unattributedErrorEvents = transport.unattributedErrors();
    (report.loadAverage as { end: number[] | null }).end = os.loadavg();
    report.finishedAt = new Date().toISOString();
    save();

    const target = server ? `roost serve --model ${plan.model}` : base;
    const subtitle = `${plan.transport === 'ws' ? `WebSocket (${plan.wsFormat})` : 'HTTP SSE'}; prompt ${formatDistribution(plan.promptLength)} x ${plan.charsPerToken} chars/token, output ${formatDistribution(plan.outputLength)}; ${os.cpus().length} CPUs, load avg ${loadStart[0].toFixed(1)} -> ${os.loadavg()[0].toFixed(1)}`;
    if (soak) {
      fs.writeFileSync(outSvg, await renderSvg(soakSpec(soak, plan.title ?? `Soak: ${target}, ${levels[0].label}`)));
    } else if (levels.some((l) => l.completed > 0)) {
      fs.writeFileSync(outSvg, await renderSvg(sweepSpec(levels, plan.title ?? `Latency vs throughput: ${target}`, subtitle)));
    }
    process.stdout.write(`\n${target}: ${subtitle}\n\n${markdownTable(levels)}`);
    if (soak) {
      const m = soak.memory;
      process.stdout.write(
        `\nsoak: ${soak.level.completed} requests ok, ${soak.level.failed} failed (${JSON.stringify(soak.level.errors.byKey)}); ` +
          `RSS after ${plan.soakWarmupS} s warm-up ${fmt((m.rssAfterWarmupBytes ?? NaN) / 2 ** 20)} MiB, at end ${fmt((m.rssAtEndBytes ?? NaN) / 2 ** 20)} MiB ` +
          `(${m.growthPercent === null ? '-' : `${m.growthPercent >= 0 ? '+' : ''}${m.growthPercent.toFixed(2)}%`}; slope ${fmt((m.slopeBytesPerMinute ?? NaN) / 2 ** 20, 3)} MiB/min; from ${m.rssSource ?? 'nowhere'}); ` +
          `idle after: ${JSON.stringify(soak.idleAfter?.metrics ?? null)}\n`,
      );
    }
    const errs = levels.reduce((a, l) => a + l.errors.total, 0);
    if (errs > 0) {
      const byKey: Record<string, number> = {};
      for (const l of levels) for (const [k, v] of Object.entries(l.errors.byKey)) byKey[k] = (byKey[k] ?? 0) + v;
      process.stdout.write(`errors: ${errs} ${JSON.stringify(byKey)}\n`);
    }
    const wroteSvg = Boolean(soak) || levels.some((l) => l.completed > 0);
    process.stdout.write(`\nwrote ${path.relative(process.cwd(), outJson)}${wroteSvg ? ` and ${path.relative(process.cwd(), outSvg)}` : ''}\n`);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    if (server) {
      const how = await server.stop();
      progress.log(`bench/load: roost serve stopped (${how})`);
    }
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`bench/load: ${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}

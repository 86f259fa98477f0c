// bench/load, the load generator: its math (percentiles, distributions,
// Poisson arrivals, memory growth), its parsers (SSE, chunks, Prometheus,
// flags), error classification, and short real runs against an in-process
// Roost (HTTP, WebSocket JSON and protobuf) and against a minimal
// OpenAI-compatible SSE server written here that sends no usage chunk.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { formatDistribution, maxOf, parseDistribution, poissonArrivals, sample } from '../bench/load/distributions';
import { classifyError, countError, emptyErrorReport, errorKey, LoadError } from '../bench/load/errors';
import { chunkTokens, HttpTransport } from '../bench/load/http';
import { main, parsePlan, requestsFor } from '../bench/load/main';
import { parsePrometheus, ServerMonitor } from '../bench/load/monitor';
import { renderSvg, sweepRows, sweepSpec } from '../bench/load/plot';
import { rng } from '../bench/load/random';
import { LevelResult, runLevel } from '../bench/load/runner';
import { memoryGrowth, runSoak, windows } from '../bench/load/soak';
import { SseReader } from '../bench/load/sse';
import { percentile, slope, summarize } from '../bench/load/stats';
import { normalizeBaseUrl, RequestOptions } from '../bench/load/transport';
import { readCorpus, Workload } from '../bench/load/workload';
import { WsTransport } from '../bench/load/ws';
import type { RunningServer } from '../src/server';
import { start, TINY } from './http.helpers';

const CORPUS = readCorpus(path.join(__dirname, '..', 'models', 'data', 'kjv-heldout.txt'));

function workload(seed = 1, out = 'fixed:8') {
  return new Workload({ corpus: CORPUS, promptLength: parseDistribution('uniform:8-24'), outputLength: parseDistribution(out), charsPerToken: 1, seed });
}

const BASE_OPTS: RequestOptions = { temperature: 1, includeUsage: true, timeoutMs: 30_000 };

// ------------------------------------------------------------------ math

describe('percentiles', () => {
  test('linear interpolation between closest ranks (numpy default)', () => {
    const v = [4, 1, 3, 2]; // unsorted on purpose
    expect(percentile(v, 0)).toBe(1);
    expect(percentile(v, 100)).toBe(4);
    expect(percentile(v, 50)).toBeCloseTo(2.5, 12);
    expect(percentile(v, 90)).toBeCloseTo(3.7, 12);
    expect(percentile(v, 99)).toBeCloseTo(3.97, 12);
    expect(v).toEqual([4, 1, 3, 2]); // not sorted in place
    const hundred = Array.from({ length: 101 }, (_, i) => i);
    expect(percentile(hundred, 99)).toBeCloseTo(99, 12);
    expect(percentile(hundred, 37.5)).toBeCloseTo(37.5, 12);
  });

  test('edge cases', () => {
    expect(percentile([7], 99)).toBe(7);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
    expect(() => percentile([1], 101)).toThrow(/percentile/);
    expect(summarize([])).toEqual({ n: 0, mean: null, min: null, p50: null, p90: null, p99: null, max: null });
    expect(summarize([3, 1, 2])).toEqual({ n: 3, mean: 2, min: 1, p50: 2, p90: expect.closeTo(2.8, 12), p99: expect.closeTo(2.98, 12), max: 3 });
  });

  test('slope', () => {
    expect(slope([0, 1, 2, 3], [1, 3, 5, 7])).toBeCloseTo(2, 12);
    expect(Number.isNaN(slope([1], [1]))).toBe(true);
  });
});

describe('distributions', () => {
  test('parse and format', () => {
    expect(parseDistribution('64')).toEqual({ kind: 'fixed', value: 64 });
    expect(parseDistribution('fixed:3')).toEqual({ kind: 'fixed', value: 3 });
    expect(parseDistribution('uniform:4-9')).toEqual({ kind: 'uniform', min: 4, max: 9 });
    expect(parseDistribution('normal:100,20')).toEqual({ kind: 'normal', mean: 100, sd: 20, min: 1, max: 200 });
    expect(parseDistribution('normal:10.5,2,5-15')).toEqual({ kind: 'normal', mean: 10.5, sd: 2, min: 5, max: 15 });
    for (const s of ['fixed:3', 'uniform:4-9', 'normal:10.5,2,5-15']) expect(formatDistribution(parseDistribution(s))).toBe(s);
    expect(maxOf(parseDistribution('uniform:4-9'))).toBe(9);
    for (const bad of ['0', 'fixed:0', 'fixed:-1', 'uniform:9-4', 'uniform:4', 'normal:10', 'normal:0,1', 'zipf:3', 'fixed:1.5', '']) {
      expect(() => parseDistribution(bad, '--x')).toThrow(/--x/);
    }
  });

  test('draws stay in range, hit both ends, and repeat with the seed', () => {
    const u = rng(7);
    const d = parseDistribution('uniform:3-6');
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(sample(d, u));
    expect([...seen].sort()).toEqual([3, 4, 5, 6]);
    const n = parseDistribution('normal:50,10,40-55');
    const draws = Array.from({ length: 5000 }, () => sample(n, u));
    expect(Math.min(...draws)).toBe(40);
    expect(Math.max(...draws)).toBe(55);
    expect(draws.every(Number.isInteger)).toBe(true);
    const wide = parseDistribution('normal:100,10');
    const w = Array.from({ length: 20000 }, () => sample(wide, rng(3)));
    expect(new Set(w).size).toBe(1); // a fresh generator with one seed gives one value
    const u2 = rng(3);
    const ws = Array.from({ length: 20000 }, () => sample(wide, u2));
    const mean = ws.reduce((a, b) => a + b, 0) / ws.length;
    expect(mean).toBeGreaterThan(99);
    expect(mean).toBeLessThan(101);
    expect(sample(parseDistribution('fixed:9'), u)).toBe(9);
  });

  test('Poisson arrivals: seeded, increasing, exponential gaps at the rate', () => {
    const take = (rate: number, seed: number, n: number) => {
      const g = poissonArrivals(rate, seed);
      return Array.from({ length: n }, () => g.next().value as number);
    };
    expect(take(5, 42, 50)).toEqual(take(5, 42, 50));
    expect(take(5, 42, 50)).not.toEqual(take(5, 43, 50));
    const t = take(4, 1, 20000);
    for (let i = 1; i < t.length; i++) expect(t[i]).toBeGreaterThan(t[i - 1]);
    const gaps = t.map((x, i) => (i === 0 ? x : x - t[i - 1]));
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    const sd = Math.sqrt(gaps.reduce((a, b) => a + (b - mean) ** 2, 0) / gaps.length);
    expect(mean).toBeGreaterThan(0.25 * 0.97);
    expect(mean).toBeLessThan(0.25 * 1.03);
    expect(sd / mean).toBeGreaterThan(0.95); // exponential: coefficient of variation 1
    expect(sd / mean).toBeLessThan(1.05);
    // Memorylessness, roughly: P(gap > mean) = 1/e.
    const over = gaps.filter((g) => g > 0.25).length / gaps.length;
    expect(over).toBeGreaterThan(Math.exp(-1) - 0.02);
    expect(over).toBeLessThan(Math.exp(-1) + 0.02);
    expect(() => poissonArrivals(0, 1).next()).toThrow(/rate/);
  });

  test('workload: real corpus text, drawn lengths, reproducible', () => {
    const a = workload(5, 'uniform:2-4');
    const b = workload(5, 'uniform:2-4');
    for (let i = 0; i < 20; i++) {
      const x = a.next();
      expect(x).toEqual(b.next());
      expect(x.index).toBe(i);
      expect(x.prompt.length).toBe(x.promptTokens);
      expect(x.promptTokens).toBeGreaterThanOrEqual(8);
      expect(x.promptTokens).toBeLessThanOrEqual(24);
      expect(x.maxTokens).toBeGreaterThanOrEqual(2);
      expect(x.maxTokens).toBeLessThanOrEqual(4);
      expect(CORPUS.includes(x.prompt) || x.prompt.length > 0).toBe(true);
    }
    const bpe = new Workload({ corpus: CORPUS, promptLength: parseDistribution('fixed:100'), outputLength: parseDistribution('fixed:1'), charsPerToken: 4, seed: 1 });
    expect(bpe.next().prompt.length).toBe(400);
    // Longer than the corpus: wraps around.
    const long = new Workload({ corpus: 'abc\ndef\n'.repeat(4), promptLength: parseDistribution('fixed:100'), outputLength: parseDistribution('fixed:1'), charsPerToken: 1, seed: 1 });
    expect(long.next().prompt.length).toBe(100);
  });
});

// ------------------------------------------------------------------ parsing and classification

describe('errors', () => {
  const sys = (code: string, message = code) => Object.assign(new Error(message), { code });
  test('classification by kind', () => {
    expect(classifyError(sys('ECONNREFUSED'))).toMatchObject({ kind: 'connection_refused', code: 'ECONNREFUSED' });
    expect(classifyError(sys('ECONNRESET'))).toMatchObject({ kind: 'connection_reset' });
    expect(classifyError(sys('EPIPE'))).toMatchObject({ kind: 'connection_reset' });
    expect(classifyError(new Error('socket hang up'))).toMatchObject({ kind: 'connection_reset', code: 'ECONNRESET' });
    expect(classifyError(sys('ENOTFOUND'))).toMatchObject({ kind: 'connection_failed' });
    expect(classifyError(sys('ETIMEDOUT'))).toMatchObject({ kind: 'timeout' });
    expect(classifyError(Object.assign(new Error('x'), { name: 'TimeoutError' }))).toMatchObject({ kind: 'timeout' });
    // fetch wraps the socket error in `cause`; happy eyeballs in an AggregateError.
    expect(classifyError(new TypeError('fetch failed', { cause: sys('ECONNREFUSED') }))).toMatchObject({ kind: 'connection_refused' });
    expect(classifyError(new AggregateError([sys('ECONNREFUSED')], 'all failed'))).toMatchObject({ kind: 'connection_refused' });
    expect(classifyError(new SyntaxError('Unexpected token'))).toMatchObject({ kind: 'protocol', code: 'invalid_json' });
    expect(classifyError('weird')).toEqual({ kind: 'other', message: 'weird' });
    expect(classifyError(new LoadError('http_status', 'HTTP 429', 'overloaded', 429))).toEqual({ kind: 'http_status', status: 429, code: 'overloaded', message: 'HTTP 429' });
  });

  test('keys and counts', () => {
    expect(errorKey({ kind: 'http_status', status: 503, code: 'shutting_down', message: '' })).toBe('http_status:503');
    expect(errorKey({ kind: 'server_error', code: 'request_timeout', message: '' })).toBe('server_error:request_timeout');
    expect(errorKey({ kind: 'timeout', message: '' })).toBe('timeout');
    const r = emptyErrorReport();
    countError(r, { kind: 'http_status', status: 429, message: 'a' });
    countError(r, { kind: 'http_status', status: 429, message: 'b' });
    countError(r, { kind: 'connection_refused', code: 'ECONNREFUSED', message: 'c' });
    expect(r).toEqual({
      total: 3,
      byKind: { http_status: 2, connection_refused: 1 },
      byKey: { 'http_status:429': 2, 'connection_refused:ECONNREFUSED': 1 },
      examples: { 'http_status:429': 'a', 'connection_refused:ECONNREFUSED': 'c' },
    });
  });
});

describe('parsers', () => {
  test('SSE reader: split chunks, CRLF, comments, multi-line data, no final blank line', () => {
    const got: string[] = [];
    const r = new SseReader((d) => got.push(d));
    for (const c of ['da', 'ta: {"a":1}\n', '\n: keep-alive\n\n', 'data: x\r', '\ndata: y\r\n\r\n', 'event: e\nid: 3\ndata:z\n\n', 'data: [DONE]\n']) r.push(c);
    r.end();
    expect(got).toEqual(['{"a":1}', 'x\ny', 'z', '[DONE]']);
    expect(r.comments).toBe(1);
  });

  test('tokens of a chunk', () => {
    expect(chunkTokens({ choices: [{ index: 0, text: 'ab', finish_reason: null }] })).toBe(1);
    expect(chunkTokens({ choices: [{ index: 0, text: '', finish_reason: 'length' }] })).toBe(0);
    expect(chunkTokens({ choices: [{ index: 0, text: '', logprobs: { tokens: ['bytes:\\xe2', 'bytes:\\x80'] } }] })).toBe(2);
    expect(chunkTokens({ choices: [{ index: 0, delta: { content: 'hi' } }] })).toBe(1);
    expect(chunkTokens({ choices: [], usage: { completion_tokens: 5 } })).toBe(0);
    expect(chunkTokens({ error: { message: 'x' } })).toBe(0);
  });

  test('Prometheus text', () => {
    const m = parsePrometheus(
      '# HELP roost_engine_sequences x\n# TYPE roost_engine_sequences gauge\nroost_engine_sequences 3\n' +
        'process_resident_memory_bytes 1.5e+8\nroost_requests_total{outcome="ok"} 4\nroost_requests_total{outcome="error"} 1\nbad line\n',
    );
    expect(m).toEqual({ roost_engine_sequences: 3, process_resident_memory_bytes: 1.5e8, roost_requests_total: 5 });
  });

  test('memory growth after the warm-up', () => {
    const samples = Array.from({ length: 61 }, (_, i) => ({ t: i * 5, rssBytes: i * 5 < 60 ? 50e6 + i * 1e6 : 100e6 + (i * 5 >= 270 ? 2e6 : 0), rssSource: 'proc' }));
    const g = memoryGrowth(samples, 60, 300, 30);
    expect(g.rssAfterWarmupBytes).toBe(100e6);
    expect(g.rssAtEndBytes).toBe(102e6);
    expect(g.growthPercent).toBeCloseTo(2, 10);
    expect(g.peakAfterWarmupBytes).toBe(102e6);
    expect(g.samplesAfterWarmup).toBe(49);
    expect(g.rssSource).toBe('proc');
    expect(memoryGrowth([], 60, 300, 30).growthPercent).toBeNull();
  });

  test('soak windows by request end time; the last, partial one at its own length', () => {
    const req = (endS: number, tokens: number, ok = true) =>
      ({ index: 0, sentAtMs: endS * 1000 - 500, e2eMs: 500, ok, ttftMs: 10, itlMs: [1, 2], outputTokens: tokens, tokenSource: 'usage', tokenEvents: tokens, promptTokens: 1, finishReason: 'length' }) as const;
    const w = windows([req(1, 10), req(59, 10), req(61, 30), req(70, 30, false)], 60);
    expect(w.map((x) => [x.t, x.seconds, x.completed, x.failed])).toEqual([
      [0, 60, 2, 0],
      [60, 10, 1, 1],
    ]);
    expect(w[0].outputTokensPerSecond).toBeCloseTo(20 / 60, 12);
    expect(w[1].outputTokensPerSecond).toBeCloseTo(3, 12);
    expect(w[0].itlP50Ms).toBe(1.5);
  });

  test('flags', () => {
    const p = parsePlan([]);
    if (p === 'help') throw new Error('help');
    expect(p.mode).toBe('sweep');
    expect(p.concurrencies).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(p.isDefaultRun).toBe(true);
    expect(p.out).toMatch(/bench[/\\]results[/\\]load-default$/);
    expect(p.ignoreEos).toBe(true);
    expect(requestsFor(p, 4)).toBe(64);
    const q = parsePlan(['--base-url', 'http://h:1/v1/', '--rate', '2,4', '--requests', '30', '--prompt-len', 'normal:100,10', '--transport', 'ws', '--ws-format', 'protobuf']);
    if (q === 'help') throw new Error('help');
    expect(q).toMatchObject({ baseUrl: 'http://h:1', mode: 'rate', rates: [2, 4], requests: { n: 30, perConcurrency: false }, transport: 'ws', wsFormat: 'protobuf', ignoreEos: false, isDefaultRun: false });
    expect(parsePlan(['--help'])).toBe('help');
    expect(() => parsePlan(['--sweep', '1,x'])).toThrow(/--sweep/);
    expect(() => parsePlan(['--concurrency', '2', '--rate', '1'])).toThrow(/give one/);
    expect(() => parsePlan(['--soak-minutes', '1', '--requests', '5'])).toThrow(/soak/);
    expect(() => parsePlan(['--base-url', 'http://h:1', '--ignore-eos'])).toThrow(/--eos-token/);
    expect(() => parsePlan(['--base-url', 'http://h:1', '--model', 'x'])).toThrow(/--base-url/);
    expect(() => parsePlan(['--bogus'])).toThrow(/bogus/);
    expect(normalizeBaseUrl('http://127.0.0.1:8000/')).toBe('http://127.0.0.1:8000');
    expect(normalizeBaseUrl('https://x.test/api/v1')).toBe('https://x.test/api');
  });
});

// ------------------------------------------------------------------ a minimal OpenAI-compatible SSE server

type Behaviour = 'ok' | '429' | 'error-event' | 'truncated' | 'bad-json' | 'reset';

/** Streams max_tokens one-character chunks, then a finish chunk and [DONE]; never a usage chunk. */
function minimalServer(): Promise<{ url: string; set(b: Behaviour): void; requests: any[]; close(): Promise<void> }> {
  let behaviour: Behaviour = 'ok';
  const requests: any[] = [];
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'peer-model', object: 'model' }] }));
      return;
    }
    if (req.method !== 'POST' || req.url !== '/v1/completions') {
      // Also what a WebSocket upgrade gets: this server has no /v1/stream.
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}`, type: 'not_found_error', code: 'not_found' } }));
      return;
    }
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', async () => {
      const body = JSON.parse(raw);
      requests.push(body);
      if (behaviour === '429') {
        res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '1' });
        res.end(JSON.stringify({ error: { message: 'busy', type: 'overloaded_error', code: 'overloaded', param: null } }));
        return;
      }
      if (behaviour === 'reset') {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      const n = body.max_tokens as number;
      for (let i = 0; i < n; i++) {
        if (behaviour === 'error-event' && i === 2) {
          res.write(`data: ${JSON.stringify({ error: { message: 'engine fell over', type: 'server_error', code: 'engine_error' } })}\n\n`);
          break;
        }
        if (behaviour === 'bad-json' && i === 1) res.write('data: {not json\n\n');
        res.write(`data: ${JSON.stringify({ id: 'c', object: 'text_completion', choices: [{ index: 0, text: String.fromCharCode(97 + (i % 26)), finish_reason: null }] })}\n\n`);
        await new Promise((r) => setImmediate(r));
      }
      if (behaviour === 'truncated') {
        res.end();
        return;
      }
      res.write(`data: ${JSON.stringify({ id: 'c', object: 'text_completion', choices: [{ index: 0, text: '', finish_reason: 'length' }] })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        set: (b) => (behaviour = b),
        requests,
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      }),
    ),
  );
}

// ------------------------------------------------------------------ real runs

describe('real runs', () => {
  let roost: RunningServer;
  let peer: Awaited<ReturnType<typeof minimalServer>>;
  let tmp: string;
  beforeAll(async () => {
    [roost, peer] = await Promise.all([start(TINY), minimalServer()]);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-load-'));
  });
  afterAll(async () => {
    await Promise.all([roost.close(0), peer.close()]);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const NO_EOS = { '511': -100 }; // gpt2-tiny's eos: every request runs to max_tokens

  const checkOk = (r: LevelResult, requests: number, tokens: number) => {
    expect(r.errors).toEqual(emptyErrorReport());
    expect(r.sent).toBe(requests);
    expect(r.completed).toBe(requests);
    expect(r.outputTokens).toBe(requests * tokens);
    expect(r.outputTokensPerRequest.min).toBe(tokens);
    expect(r.ttftMs.n).toBe(requests);
    expect(r.e2eMs.p50).toBeGreaterThanOrEqual(r.ttftMs.p50!);
    expect(r.e2eMs.p99).toBeGreaterThanOrEqual(r.e2eMs.p50!);
    expect(r.outputTokensPerSecond).toBeGreaterThan(0);
    expect(r.requestsPerSecond).toBeGreaterThan(0);
    expect(r.loadAverage.start).toHaveLength(3);
  };

  test("vLLM's way, --extra-body ignore_eos (and min_tokens): every request runs to its max_tokens, HTTP and WebSocket", async () => {
    // eos is the likeliest token everywhere: without ignore_eos each request would end at its first token.
    // (eos has no text: logprobs gives each token its own SSE chunk, so every token is seen.)
    const EOS_FIRST = { '511': 100 };
    const t = new HttpTransport(roost.url, { ...BASE_OPTS, logitBias: EOS_FIRST, logprobs: 0, extraBody: { ignore_eos: true } });
    const r = await runLevel({ mode: 'closed', concurrency: 2, requests: 4, workload: workload(), transport: t });
    await t.close();
    checkOk(r, 4, 8);
    expect(r.finishReasons).toEqual({ length: 4 });
    const ws = new WsTransport(roost.url, { ...BASE_OPTS, logitBias: EOS_FIRST, extraBody: { min_tokens: 8 } }, 'json');
    const w = await runLevel({ mode: 'closed', concurrency: 2, requests: 3, workload: workload(), transport: ws });
    await ws.close();
    checkOk(w, 3, 8);
  });

  test('Roost over HTTP SSE, closed loop: usage counts the tokens', async () => {
    const t = new HttpTransport(roost.url, { ...BASE_OPTS, logitBias: NO_EOS });
    const r = await runLevel({ mode: 'closed', concurrency: 2, requests: 5, workload: workload(), transport: t, keepRequests: true });
    await t.close();
    checkOk(r, 5, 8);
    expect(r.tokenCount).toEqual({ usage: 5, stream: 0 });
    expect(r.finishReasons).toEqual({ length: 5 });
    expect(r.promptTokens).toBeGreaterThan(0);
    expect(r.requests).toHaveLength(5);
    expect(r.itlMs.n).toBeGreaterThan(0);
  });

  test('Roost over WebSocket, JSON frames (closed loop) and protobuf frames (open loop)', async () => {
    const json = new WsTransport(roost.url, { ...BASE_OPTS, logitBias: NO_EOS }, 'json');
    const a = await runLevel({ mode: 'closed', concurrency: 3, requests: 6, workload: workload(2), transport: json });
    await json.close();
    checkOk(a, 6, 8);
    expect(a.transport).toBe('ws-json');
    expect(a.itlMs.n).toBe(6 * 7); // one event per token: 7 gaps per request
    const pb = new WsTransport(roost.url, { ...BASE_OPTS, logitBias: NO_EOS }, 'protobuf', 2);
    const b = await runLevel({ mode: 'open', rate: 50, requests: 5, seed: 3, workload: workload(3), transport: pb });
    await pb.close();
    checkOk(b, 5, 8);
    expect(b.transport).toBe('ws-protobuf');
    expect(b.sendLagMs!.n).toBe(5);
    expect(b.tokenCount.usage).toBe(5);
  });

  test('Roost refusals arrive as errors by kind: HTTP 404 (unknown model) and WebSocket error events', async () => {
    const t = new HttpTransport(roost.url, { ...BASE_OPTS, modelName: 'no-such-model' });
    const r = await runLevel({ mode: 'closed', concurrency: 1, requests: 2, workload: workload(), transport: t });
    await t.close();
    expect(r.errors.byKey).toEqual({ 'http_status:404': 2 });
    const ws = new WsTransport(roost.url, { ...BASE_OPTS, temperature: 9 }, 'json');
    const w = await runLevel({ mode: 'closed', concurrency: 1, requests: 2, workload: workload(), transport: ws });
    await ws.close();
    expect(w.errors.byKey).toEqual({ 'server_error:invalid_parameter': 2 });
  });

  test('soak: samples RSS and /metrics while the load runs', async () => {
    const t = new HttpTransport(roost.url, { ...BASE_OPTS, logitBias: NO_EOS });
    const s = await runSoak({
      mode: 'closed',
      concurrency: 2,
      workload: workload(),
      transport: t,
      minutes: 1.2 / 60,
      warmupS: 0.3,
      intervalS: 0.2,
      windowS: 0.3,
      bucketS: 0.5,
      idleWaitMs: 100,
      monitor: new ServerMonitor(roost.url, process.pid),
    });
    await t.close();
    expect(s.level.failed).toBe(0);
    expect(s.level.completed).toBeGreaterThan(0);
    expect(s.samples.length).toBeGreaterThanOrEqual(3);
    expect(s.samples[0].rssSource).toBe('proc');
    expect(s.samples[0].metrics).toHaveProperty('roost_engine_sequences');
    expect(s.samples[0].metrics).toHaveProperty('roost_kv_memory_bytes');
    expect(s.idleAfter!.metrics!.roost_engine_sequences).toBe(0);
    expect(s.memory.rssAfterWarmupBytes).toBeGreaterThan(0);
    expect(s.memory.growthPercent).not.toBeNull();
    expect(s.windows.reduce((a, w) => a + w.completed, 0)).toBe(s.level.completed);
    // Without a pid, RSS comes from /metrics (prom-client's process metrics).
    const viaMetrics = await new ServerMonitor(roost.url, undefined).sample(0, { completed: 0, failed: 0, outputTokens: 0 });
    expect(viaMetrics.rssSource).toBe('metrics');
    expect(viaMetrics.rssBytes).toBeGreaterThan(0);
  });

  test('a different OpenAI-compatible server without a usage chunk: tokens counted from the stream', async () => {
    peer.set('ok');
    const t = new HttpTransport(peer.url, BASE_OPTS);
    const r = await runLevel({ mode: 'closed', concurrency: 2, requests: 4, workload: workload(1, 'uniform:3-9'), transport: t, keepRequests: true });
    await t.close();
    expect(r.errors.total).toBe(0);
    expect(r.tokenCount).toEqual({ usage: 0, stream: 4 });
    for (const q of r.requests!) {
      expect(q.outputTokens).toBe(q.tokenEvents);
      expect(q.outputTokens).toBeGreaterThanOrEqual(3);
      expect(q.outputTokens).toBeLessThanOrEqual(9);
      expect(q.itlMs).toHaveLength(q.outputTokens - 1);
    }
    expect(r.outputTokens).toBe(peer.requests.slice(-4).reduce((a, b) => a + b.max_tokens, 0));
    const body = peer.requests[peer.requests.length - 1];
    expect(body).toMatchObject({ stream: true, stream_options: { include_usage: true }, temperature: 1 });
    expect(typeof body.prompt).toBe('string');
  });

  test('the same server misbehaving: each failure is classified', async () => {
    const run = async (b: Behaviour) => {
      peer.set(b);
      const t = new HttpTransport(peer.url, BASE_OPTS);
      const r = await runLevel({ mode: 'closed', concurrency: 1, requests: 2, workload: workload(), transport: t });
      await t.close();
      return r.errors.byKey;
    };
    expect(await run('429')).toEqual({ 'http_status:429': 2 });
    expect(await run('error-event')).toEqual({ 'server_error:engine_error': 2 });
    expect(await run('truncated')).toEqual({ 'protocol:no_done': 2 });
    expect(await run('bad-json')).toEqual({ 'protocol:invalid_json': 2 });
    expect(await run('reset')).toEqual({ 'connection_reset:ECONNRESET': 2 });
    peer.set('ok');
    // Nothing listening; a WebSocket to a server without /v1/stream.
    const closed = await minimalServer();
    await closed.close();
    const gone = new HttpTransport(closed.url, BASE_OPTS);
    const g = await runLevel({ mode: 'closed', concurrency: 1, requests: 2, workload: workload(), transport: gone });
    expect(g.errors.byKind).toEqual({ connection_refused: 2 });
    const ws = new WsTransport(peer.url, BASE_OPTS, 'json');
    const w = await runLevel({ mode: 'closed', concurrency: 1, requests: 1, workload: workload(), transport: ws });
    await ws.close();
    expect(w.errors.byKey).toEqual({ 'http_status:404': 1 });
    expect(Object.values(w.errors.examples)[0]).toMatch(/upgrade refused: HTTP 404: no route GET \/v1\/stream/);
  });

  test('the command line against the peer by --base-url: JSON and SVG', async () => {
    peer.set('ok');
    const out = path.join(tmp, 'peer');
    const printed: string[] = [];
    const write = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
      printed.push(String(s));
      return true;
    });
    const code = await main(['--base-url', peer.url, '--sweep', '1,2', '--requests', '2x', '--output-len', 'uniform:2-5', '--prompt-len', 'fixed:10', '--warmup', '1', '--out', out, '--quiet']);
    write.mockRestore();
    expect(code).toBe(0);
    expect(printed.join('')).toMatch(/\| c=2 \| 4 \/ 0 \|/);
    const report = JSON.parse(fs.readFileSync(`${out}.json`, 'utf8'));
    expect(report.target).toMatchObject({ baseUrl: peer.url, modelName: 'peer-model', spawned: null });
    expect(report.levels.map((l: LevelResult) => [l.concurrency, l.completed, l.failed])).toEqual([
      [1, 2, 0],
      [2, 4, 0],
    ]);
    expect(report.levels[1].tokenCount).toEqual({ usage: 0, stream: 4 });
    expect(report.loadAverage.end).toHaveLength(3);
    expect(peer.requests[peer.requests.length - 1].model).toBe('peer-model');
    const svg = fs.readFileSync(`${out}.svg`, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('time to first token');
    expect(svg).toContain('c2');
    fs.rmSync(`${out}.svg`);
    const again = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    expect(await main(['--replot', `${out}.json`])).toBe(0);
    again.mockRestore();
    expect(fs.readFileSync(`${out}.svg`, 'utf8')).toContain('time to first token');
  });

  test('plot rows: one per level, metric and percentile', async () => {
    const fake = (c: number, tput: number) =>
      ({ concurrency: c, rate: null, outputTokensPerSecond: tput, ttftMs: { p50: 1, p90: 2, p99: 3 }, itlMs: { p50: 0, p90: 1, p99: null }, e2eMs: { p50: 5, p90: 6, p99: 7 } }) as unknown as LevelResult;
    const rows = sweepRows([fake(1, 10), fake(4, 30)]);
    expect(rows).toHaveLength(2 * 8); // ITL p99 missing
    expect(rows.find((r) => r.metric === 'inter-token latency' && r.percentile === 'p50')!.ms).toBe(0.001);
    const svg = await renderSvg(sweepSpec([fake(1, 10), fake(4, 30)], 'title'));
    expect(svg).toContain('<svg');
  });
});

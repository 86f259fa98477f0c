// `roost serve` as users run it (node bin/roost.js): one `listening on` line
// once ready, serving, flag errors, graceful exit on SIGTERM.
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';

import { TINY } from './http.helpers';
import { compileIfStale, ROOT } from './serve.helpers';

const BIN = path.join(ROOT, 'bin', 'roost.js');

beforeAll(compileIfStale, 120000);

test('serve prints one listening line, serves, and exits 0 on SIGTERM', async () => {
  const p = spawn(process.execPath, [BIN, 'serve', '--model', TINY, '--host', '127.0.0.1', '--port', '0', '--threads', '1', '--max-batch', '4', '--max-queue', '8'], {
    cwd: ROOT,
  });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  const end = Date.now() + 30000;
  while (!stdout.includes('\n')) {
    if (Date.now() > end) throw new Error(`no listening line; stderr: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = /^listening on (http:\/\/127\.0\.0\.1:(\d+))\n$/.exec(stdout);
  expect(m).not.toBeNull();
  const url = m![1];
  expect(Number(m![2])).toBeGreaterThan(0);
  expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok' });
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'hi', max_tokens: 2 }) });
  expect(r.status).toBe(200);
  p.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(stdout.split('\n').filter(Boolean)).toHaveLength(1);
});

/** `roost serve --model TINY ...args` once it listens: its URL, what it printed so far, and a SIGTERM that resolves to the exit code. */
async function serveProcess(args: string[]) {
  const p = spawn(process.execPath, [BIN, 'serve', '--model', TINY, '--port', '0', '--threads', '1', ...args], { cwd: ROOT });
  const out = { stdout: '', stderr: '' };
  p.stdout.on('data', (d) => (out.stdout += d));
  p.stderr.on('data', (d) => (out.stderr += d));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  const end = Date.now() + 30000;
  while (!out.stdout.includes('\n')) {
    if (Date.now() > end) throw new Error(`no listening line; stderr: ${out.stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const url = /^listening on (\S+)\n$/.exec(out.stdout)![1];
  return { url, out, stop: () => (p.kill('SIGTERM'), exited) };
}

// ignore_eos: the log lines below count exactly 2 completion tokens, and an
// unseeded sample may otherwise end at the end-of-text token first.
const completion = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ prompt: 'hi', max_tokens: 2, ignore_eos: true }),
  });

test('the access log: a text line per request on stderr by default, JSON with --log-format json, none with --quiet', async () => {
  const text = await serveProcess([]);
  const json = await serveProcess(['--log-format', 'json', '--allowed-origins', 'http://a.test,http://b.test:8000']);
  const quiet = await serveProcess(['--quiet']);
  try {
    for (const s of [text, json, quiet]) expect((await completion(s.url, { 'X-Request-Id': 'cli-1', Origin: 'http://b.test:8000' })).status).toBe(200);
    const logged = (s: typeof text) => s.out.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('roost serve: '));
    const end = Date.now() + 10000;
    while ((logged(text).length === 0 || logged(json).length === 0) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(logged(text)).toEqual([
      expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z POST \/v1\/completions 200 prompt_tokens=2 completion_tokens=2 ttft_ms=[\d.]+ total_ms=[\d.]+ request_id=cli-1$/),
    ]);
    expect(logged(json).map((l) => JSON.parse(l))).toEqual([
      {
        time: expect.any(String),
        method: 'POST',
        path: '/v1/completions',
        status: 200,
        prompt_tokens: 2,
        completion_tokens: 2,
        ttft_ms: expect.any(Number),
        total_ms: expect.any(Number),
        request_id: 'cli-1',
        client_closed: false,
      },
    ]);
    expect(logged(quiet)).toEqual([]);
    // --allowed-origins: the listed origins only.
    expect((await completion(json.url, { Origin: 'http://b.test:8000' })).headers.get('access-control-allow-origin')).toBe('http://b.test:8000');
    expect((await completion(json.url, { Origin: 'http://c.test' })).headers.get('access-control-allow-origin')).toBeNull();
    expect((await completion(text.url, { Origin: 'http://b.test:8000' })).headers.get('access-control-allow-origin')).toBeNull();
  } finally {
    expect(await Promise.all([text.stop(), json.stop(), quiet.stop()])).toEqual([0, 0, 0]);
  }
  expect([text, json, quiet].map((s) => s.out.stdout.split('\n').filter(Boolean).length)).toEqual([1, 1, 1]);
});

test.each([
  [['--allowed-origins', 'http://a.test,a.test'], /^roost serve: --allowed-origins must be \* or comma-separated origins such as http:\/\/localhost:3000 \(got "a.test"\)\n$/],
  [['--log-format', 'xml'], /^roost serve: --log-format must be text or json \(got xml\)\n$/],
  [['--port', '70000'], /--port/],
  [['--max-batch', '0'], /--max-batch/],
  [['--device', 'tpu'], /--device/],
  [['--kv-memory', '0'], /--kv-memory must be a positive number of bytes/],
  [['--kv-memory', '1e9'], /--kv-memory/],
  [['--bogus', '1'], /bogus/],
])('serve %j is a usage error naming the flag', (args, pattern) => {
  const r = spawnSync(process.execPath, [BIN, 'serve', '--model', TINY, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30000 });
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(pattern);
});

test('serve without a model folder fails before listening', () => {
  const r = spawnSync(process.execPath, [BIN, 'serve', '--model', '/nonexistent', '--port', '0'], { cwd: ROOT, encoding: 'utf8', timeout: 30000 });
  expect(r.status).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/--model/);
});

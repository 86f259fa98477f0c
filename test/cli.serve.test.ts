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
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'hi', max_tokens: 2 }) });
  expect(r.status).toBe(200);
  p.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(stdout.split('\n').filter(Boolean)).toHaveLength(1);
});

test.each([
  [['--port', '70000'], /--port/],
  [['--max-batch', '0'], /--max-batch/],
  [['--device', 'tpu'], /--device/],
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

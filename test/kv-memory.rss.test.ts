// --kv-memory on a real `roost serve` process (docs/design.md, "Paged KV
// memory and prefix caching"): with the budget a quarter of what 64 long
// requests need at once, every request completes with all its tokens, the
// scheduler preempts (roost_preemptions_total > 0), nothing errors, and the
// process's peak RSS (VmHWM of /proc/PID/status) stays within its RSS once
// loaded + the budget + KV_RSS_SLACK_BYTES, the constant the docs give.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { randomTokens, writeRandomGpt2 } from '../bench/lib/random-gpt2';
import { spawnRoost } from '../bench/load/server';
import { Engine } from '../src/native';
import { compileIfStale } from './serve.helpers';

beforeAll(compileIfStale, 120000);

/** docs/design.md: what a serving process holds past its loaded RSS and --kv-memory (per-step buffers, HTTP and JS heaps). */
const KV_RSS_SLACK_BYTES = 64 * 2 ** 20;
const REQUESTS = 64;
const PROMPT = 64;
const MAX_TOKENS = 192; // 256 positions: four 64-position blocks per request, grown while decoding

function status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  if (!line) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(/(\d+)\s*kB/.exec(line)![1]) * 1024;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics`);
  return Number(line.split(' ')[1]);
}

test('a quarter of the KV memory 64 long requests need: all complete, preemptions counted, RSS within budget + constant', async () => {
  // 8 layers of 256 columns: a 64-position block is 8 x (K, V) x 64 x 256 floats = 1 MiB, cheap to compute.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-kv-rss-'));
  writeRandomGpt2(dir, { nLayer: 8, nEmbd: 256, nHead: 4, vocabSize: 256, nPositions: 512, dtype: 'F32', seed: 3 });
  const probe = await Engine.load(dir, { threads: 1 });
  const blockBytes = probe.stats().kvBlockBytes;
  expect(blockBytes).toBe(8 * 2 * 64 * 256 * 4);
  const need = REQUESTS * Math.ceil((PROMPT + MAX_TOKENS) / 64) * blockBytes; // every request at once
  const budget = need / 4;
  const server = await spawnRoost({
    model: dir,
    extraArgs: ['--threads', '1', '--kv-memory', String(budget), '--max-batch', String(REQUESTS), '--max-queue', String(REQUESTS)],
    startTimeoutMs: 60_000,
  });
  try {
    const loaded = status(server.pid, 'VmRSS');
    const bodies = Array.from({ length: REQUESTS }, (_, i) => ({ prompt: randomTokens(PROMPT, 1 + i, 256), max_tokens: MAX_TOKENS, temperature: 0 }));
    const answers = await Promise.all(
      bodies.map(async (b) => {
        const r = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
        return { status: r.status, body: await r.json() };
      }),
    );
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.body.error).toBeUndefined();
      expect(a.body.usage.completion_tokens).toBe(MAX_TOKENS);
      expect(a.body.choices[0].finish_reason).toBe('length');
    }
    expect(await metric(server.url, 'roost_preemptions_total')).toBeGreaterThan(0);
    expect(await metric(server.url, 'roost_kv_blocks{state="used"}')).toBe(0);
    const blocks = ['used', 'cached', 'free'].map((s) => metric(server.url, `roost_kv_blocks{state="${s}"}`));
    expect((await Promise.all(blocks)).reduce((x, y) => x + y, 0)).toBe(budget / blockBytes);
    const peak = status(server.pid, 'VmHWM');
    if (process.env.ROOST_PRINT_RSS)
      process.stdout.write(`loaded RSS ${(loaded / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB, budget ${(budget / 2 ** 20).toFixed(1)} MiB, need ${(need / 2 ** 20).toFixed(1)} MiB\n`);
    expect(peak).toBeLessThanOrEqual(loaded + budget + KV_RSS_SLACK_BYTES);
    // The bound means something: the load without a budget would pass it.
    expect(loaded + need).toBeGreaterThan(loaded + budget + KV_RSS_SLACK_BYTES);
  } finally {
    await server.stop(10_000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 300_000);

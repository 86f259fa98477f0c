// bench/hardening: do careless or hostile clients stall or starve the others?
//   npm run bench:hardening [-- --model default --seconds 30 --hogs 8 --out FILE]
// Results: bench/results/hardening.json (and a summary on stdout). Issue 15's
// "Must show", measured against `roost serve` in a child process with default
// flags (this process is only the clients):
//  1. hogs: `hogs` streaming requests with n: 64 whose clients never read (raw
//     sockets, paused). Meanwhile ordinary streaming requests, one every 0.5 s
//     for 20 s, measure their time to first token. Target: < 1 s.
//  2. abuse: for `seconds`, two clients (in a child process, so that their
//     work does not delay the measuring ones) send in a loop an 8 MiB string prompt
//     and the amplification request (256 prompts of 4,000 characters, echo,
//     logprobs 20, max_tokens 0); /health is polled every 100 ms (target:
//     every answer within 50 ms) while one more client streams a long
//     completion (target: inter-token gap p99 < 100 ms). The same two
//     measurements run for 10 s without the abusive clients first (control):
//     the machine's own noise floor.
process.env.UV_THREADPOOL_SIZE ??= '2';
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { spawnRoost } from './load/server';
import { SseReader } from './load/sse';
import { percentileSorted } from './load/stats';

const root = path.resolve(__dirname, '..', '..');
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'default' },
    seconds: { type: 'string', default: '30' },
    hogs: { type: 'string', default: '8' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'hardening.json') },
    // Internal: this script forked as the abusive clients, so their work does not delay the measuring clients.
    abuser: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const hogCount = Number(values.hogs);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

function summary(ms: number[]) {
  const sorted = [...ms].sort((a, b) => a - b);
  return {
    count: ms.length,
    p50: round(percentileSorted(sorted, 50)),
    p99: round(percentileSorted(sorted, 99)),
    max: round(sorted[sorted.length - 1] ?? NaN),
  };
}

/** A streaming request whose client never reads: a raw socket, paused. */
function hog(url: string, body: object): net.Socket {
  const u = new URL(url);
  const text = JSON.stringify({ ...body, stream: true });
  const s = net.connect({ host: u.hostname, port: Number(u.port) });
  s.on('error', () => undefined);
  s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  s.pause();
  return s;
}

/** Streams one completion; calls onToken(ms since request) per chunk with text; resolves with the first token's time. */
async function stream(url: string, body: object, onToken?: (atMs: number) => void, signal?: AbortSignal): Promise<number> {
  const t0 = performance.now();
  let first = NaN;
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (res.status !== 200) throw new Error(`stream: HTTP ${res.status}: ${await res.text()}`);
  const reader = new SseReader((data) => {
    if (data === '[DONE]') return;
    const at = performance.now() - t0;
    if (Number.isNaN(first)) first = at;
    onToken?.(at);
  });
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) reader.push(decoder.decode(chunk, { stream: true }));
  reader.end();
  return first;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function hogsPhase(url: string) {
  const ordinary = { prompt: 'In the beginning', max_tokens: 8, temperature: 0 };
  await stream(url, ordinary); // warm up
  const hogBody = { prompt: 'And it came to pass', n: 64, max_tokens: 4000 };
  const sockets = Array.from({ length: hogCount }, () => hog(url, hogBody));
  // A never-read stream is stepped until its socket buffers (kernel and Node, megabytes on loopback)
  // fill, then parked: measure across both, one ordinary request every 0.5 s for 20 s.
  const ttft: number[] = [];
  const samples: Array<{ atS: number; ttftMs: number; engineSequences: number; parked: number }> = [];
  const t0 = performance.now();
  while (performance.now() - t0 < 20_000) {
    const ms = await stream(url, ordinary);
    ttft.push(ms);
    samples.push({
      atS: round((performance.now() - t0) / 1000),
      ttftMs: round(ms),
      engineSequences: await metric(url, 'roost_engine_sequences'),
      parked: await metric(url, 'roost_sequences_parked'),
    });
    await sleep(500);
  }
  for (const s of sockets) s.destroy();
  return { hogs: hogCount, n: 64, ttftMs: summary(ttft), samples };
}

/** The abusive clients (a child process): the 8 MiB prompt and the amplification request, each in a loop. Prints the statuses. */
async function abuser(url: string, secs: number): Promise<void> {
  const end = performance.now() + secs * 1000;
  const big = Buffer.from(JSON.stringify({ prompt: 'x'.repeat((8 << 20) - 64) }));
  const text = 'And God said, Let there be light: and there was light. '.repeat(80).slice(0, 4000);
  const amp = Buffer.from(JSON.stringify({ prompt: Array(256).fill(text), echo: true, logprobs: 20, max_tokens: 0 }));
  const statuses: Record<string, number> = {};
  const sendLoop = async (what: string, body: Buffer) => {
    while (performance.now() < end) {
      const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
      const j = (await r.json()) as { error?: { code?: string } };
      const key = `${what} ${r.status} ${j.error?.code ?? ''}`.trim();
      statuses[key] = (statuses[key] ?? 0) + 1;
    }
  };
  await Promise.all([sendLoop('8MiB prompt', big), sendLoop('amplification', amp)]);
  process.send!(statuses);
}

/** /health polls and one long stream for `secs`, beside the abusive clients or (control) alone. */
async function abusePhase(url: string, secs: number, abusive: boolean) {
  const end = performance.now() + secs * 1000;
  const requests = abusive
    ? new Promise<Record<string, number>>((resolve, reject) => {
        const child = fork(__filename, ['--abuser', url, '--seconds', String(secs)]);
        child.once('message', (m) => resolve(m as Record<string, number>));
        child.once('exit', (code) => (code ? reject(new Error(`the abusive clients failed (exit ${code})`)) : undefined));
      })
    : Promise.resolve({});
  const health: number[] = [];
  const healthLoop = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const r = await fetch(`${url}/health`);
      await r.text();
      health.push(performance.now() - t0);
      await sleep(Math.max(0, 100 - (performance.now() - t0)));
    }
  };
  const gaps: number[] = [];
  let streams = 0;
  const streamLoop = async () => {
    while (performance.now() < end) {
      let prev = NaN;
      const ac = new AbortController();
      const stop = setTimeout(() => ac.abort(), Math.max(0, end - performance.now()));
      try {
        await stream(url, { prompt: 'And God said', max_tokens: 2000, temperature: 1, seed: streams }, (at) => {
          if (!Number.isNaN(prev)) gaps.push(at - prev);
          prev = at;
        }, ac.signal);
        streams++;
      } catch (e) {
        if (!ac.signal.aborted) throw e;
      } finally {
        clearTimeout(stop);
      }
    }
  };
  await Promise.all([healthLoop(), streamLoop()]);
  return {
    seconds: secs,
    requests: await requests,
    healthMs: { ...summary(health), over50ms: health.filter((x) => x > 50).length },
    interTokenGapMs: summary(gaps),
    streamsCompleted: streams,
  };
}

async function main(): Promise<void> {
  const server = await spawnRoost({ model: values.model! });
  try {
    process.stderr.write(`bench:hardening: ${server.args.join(' ')} at ${server.url}\n`);
    const hogs = await hogsPhase(server.url);
    process.stderr.write(`hogs: ${JSON.stringify(hogs)}\n`);
    // The same measurement without the abusive clients: this machine's own noise floor.
    const control = await abusePhase(server.url, 10, false);
    process.stderr.write(`control: ${JSON.stringify(control)}\n`);
    const abuse = await abusePhase(server.url, seconds, true);
    process.stderr.write(`abuse: ${JSON.stringify(abuse)}\n`);
    const result = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverage: os.loadavg().map((x) => round(x, 2)) },
      server: `roost ${server.args.join(' ').split(root + path.sep).join('')}`,
      targets: { ttftMs: 1000, healthMs: 50, interTokenGapP99Ms: 100 },
      hogs,
      control,
      abuse,
    };
    fs.mkdirSync(path.dirname(values.out!), { recursive: true });
    fs.writeFileSync(values.out!, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(
      `time to first token beside ${hogCount} never-read n:64 streams: p50 ${hogs.ttftMs.p50} ms, p99 ${hogs.ttftMs.p99} ms, max ${hogs.ttftMs.max} ms\n` +
        `under 8 MiB prompts + amplification for ${seconds} s: /health p99 ${abuse.healthMs.p99} ms, max ${abuse.healthMs.max} ms ` +
        `(${abuse.healthMs.over50ms} of ${abuse.healthMs.count} over 50 ms); inter-token gap p50 ${abuse.interTokenGapMs.p50} ms, ` +
        `p99 ${abuse.interTokenGapMs.p99} ms\nwithout them (control, 10 s): /health p99 ${control.healthMs.p99} ms, max ${control.healthMs.max} ms; ` +
        `inter-token gap p99 ${control.interTokenGapMs.p99} ms\nwrote ${values.out}\n`,
    );
  } finally {
    await server.stop(5_000);
  }
}

(values.abuser ? abuser(values.abuser, seconds) : main()).catch((e) => {
  process.stderr.write(`bench:hardening: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});

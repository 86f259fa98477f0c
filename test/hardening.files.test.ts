// Issue 15, findings 2, 5 and 8: files opened from a path (adapter folders
// loaded at run time, `--model` checkpoints, `eval --file`) are checked to be
// bounded regular files before a byte is read, without blocking; messages name
// the file, never its bytes; CLI flags are checked against their real ranges;
// non-finite weights are refused at load. A FIFO that the old code would wait
// on forever gets a writer after a few seconds, so every test ends.
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Scheduler } from '../src/engine/scheduler';
import { Engine } from '../src/native';
import { BYTES, FIXTURES, start } from './http.helpers';
import { within } from './hardening.helpers';
import { compileIfStale, ROOT } from './serve.helpers';

const BIN = path.join(ROOT, 'bin', 'roost.js');
const BASE = path.join(FIXTURES, 'bigbird-tiny');
const PROMPT_ADAPTER = path.join(FIXTURES, 'adapters', 'bigbird-tiny-prompt');
const SECRET = 'root:x:0:0:root:/root:/bin/bash\n';

let tmp: string;
const writers: ChildProcess[] = [];

/** A FIFO at `file`; after `afterS` seconds something writes SECRET into it, so a reader that blocked wakes up. */
function fifo(file: string, afterS: number): void {
  execFileSync('mkfifo', [file]);
  const w = spawn('sh', ['-c', `sleep ${afterS}; printf '%s' '${SECRET.trim()}' > '${file}'`], { stdio: 'ignore' });
  writers.push(w);
}

function roost(args: string[], timeoutMs: number) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, killed: r.signal !== null };
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-hardening-'));
  compileIfStale();
}, 120_000);

afterAll(() => {
  for (const w of writers) w.kill();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** An adapter folder copied from PROMPT_ADAPTER, with `replace(dir)` changing what it holds. */
function adapterFolder(name: string, replace: (dir: string) => void): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of ['adapter_config.json', 'adapter_model.safetensors']) fs.copyFileSync(path.join(PROMPT_ADAPTER, f), path.join(dir, f));
  replace(dir);
  return dir;
}

describe('finding 2: runtime adapter loading', () => {
  const load = (url: string, name: string, dir: string) =>
    fetch(`${url}/v1/load_lora_adapter`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ lora_name: name, lora_path: dir }) }).then(async (r) => ({
      status: r.status,
      json: (await r.json()) as any,
    }));

  test('a FIFO adapter_config.json or adapter_model.safetensors is refused at once; /health keeps answering; no bytes quoted', async () => {
    const s = await start(BASE, { allowAdapterLoading: true });
    try {
      const cfg = adapterFolder('fifo-config', (d) => {
        fs.rmSync(path.join(d, 'adapter_config.json'));
        fifo(path.join(d, 'adapter_config.json'), 4);
      });
      const pending = load(s.url, 'a', cfg);
      // Were the load blocked on the FIFO, the event loop would be too: /health could not answer before the writer.
      expect((await within(fetch(`${s.url}/health`), 2500, '/health during the load')).status).toBe(200);
      const r = await pending;
      expect(r.status).toBe(400);
      expect(r.json.error.message).toBe(`${path.join(cfg, 'adapter_config.json')}: not a regular file (a FIFO)`);

      const weights = adapterFolder('fifo-weights', (d) => {
        fs.rmSync(path.join(d, 'adapter_model.safetensors'));
        fifo(path.join(d, 'adapter_model.safetensors'), 4);
      });
      const pending2 = load(s.url, 'b', weights);
      expect((await within(fetch(`${s.url}/health`), 2500, '/health during the load')).status).toBe(200);
      const r2 = await pending2;
      expect(r2.status).toBe(400);
      expect(r2.json.error.message).toBe(`${path.join(weights, 'adapter_model.safetensors')}: not a regular file (a FIFO)`);
      expect(s.holder.runtime!.adapters.size).toBe(0);
    } finally {
      await s.close(0);
    }
  });

  test('an oversized or non-JSON adapter_config.json is refused by size or syntax, never quoting the file', async () => {
    const s = await start(BASE, { allowAdapterLoading: true });
    try {
      const big = adapterFolder('big-config', (d) => fs.writeFileSync(path.join(d, 'adapter_config.json'), SECRET.repeat(40_000)));
      const r = await load(s.url, 'big', big);
      expect(r.status).toBe(400);
      expect(r.json.error.message).toBe(`${path.join(big, 'adapter_config.json')}: ${SECRET.length * 40_000} bytes, more than the limit of 1048576`);

      const passwd = adapterFolder('passwd-config', (d) => fs.writeFileSync(path.join(d, 'adapter_config.json'), SECRET));
      const r2 = await load(s.url, 'passwd', passwd);
      expect(r2.status).toBe(400);
      expect(r2.json.error.message).toMatch(/adapter_config.json: invalid JSON/);
      expect(r2.json.error.message).not.toContain('root');

      const dev = adapterFolder('dev-config', (d) => {
        fs.rmSync(path.join(d, 'adapter_config.json'));
        fs.symlinkSync('/dev/null', path.join(d, 'adapter_config.json'));
      });
      const r3 = await load(s.url, 'dev', dev);
      expect(r3.json.error.message).toBe(`${path.join(dev, 'adapter_config.json')}: not a regular file (a character device)`);
    } finally {
      await s.close(0);
    }
  });
});

describe('finding 5: CLI flags in their real ranges', () => {
  test('--request-timeout past what a Node timer holds is a usage error, not a server that times out everything', () => {
    const r = roost(['serve', '--model', BYTES, '--port', '0', '--request-timeout', '2200000'], 20_000);
    expect(r.killed).toBe(false);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--request-timeout must be a number of seconds from 0 (none) up to 2147483.647 (got 2200000)');
    const stall = roost(['serve', '--model', BYTES, '--port', '0', '--stall-timeout', '0'], 20_000);
    expect(stall.code).toBe(2);
    expect(stall.stderr).toContain('--stall-timeout must be a number of seconds above 0 and up to 2147483.647 (got 0)');
    const threads = roost(['generate', '--model', BYTES, '--prompt', 'x', '--max-tokens', '1', '--threads', '5000'], 20_000);
    expect(threads.code).toBe(2);
    expect(threads.stderr).toContain("--threads must be at most 4096 (the engine's limit) (got 5000)");
  });

  test('the scheduler refuses a request timeout a Node timer cannot hold', () => {
    const engine = { createSequence: () => 0, freeSequence: () => undefined, step: async () => [] };
    expect(() => new Scheduler(engine, { requestTimeoutMs: 2_200_000_000 })).toThrow(
      'requestTimeoutMs must be an integer from 0 to 2147483647 (a Node timer\'s longest delay) (got 2200000000)',
    );
  });
});

describe('finding 8: CLI files', () => {
  /** A copy of the gpt2-bytes fixture whose model.safetensors is replaced by `make(file)`. */
  function model(name: string, make: (file: string) => void): string {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(BYTES, 'config.json'), path.join(dir, 'config.json'));
    make(path.join(dir, 'model.safetensors'));
    return dir;
  }

  test('a FIFO model.safetensors fails at once naming the file', () => {
    const dir = model('fifo-model', (f) => fifo(f, 10));
    const r = roost(['generate', '--model', dir, '--prompt', 'x', '--max-tokens', '1'], 8_000);
    expect(r.killed).toBe(false);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${path.join(dir, 'model.safetensors')}: not a regular file [E_CHECKPOINT]`);
  });

  test('eval --file /dev/zero is refused before reading, naming the problem', () => {
    const r = roost(['eval', '--model', BYTES, '--file', '/dev/zero'], 5_000);
    expect(r.killed).toBe(false);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--file: cannot read /dev/zero: not a regular file (a character device)');
  });

  test('a checkpoint with a NaN weight is refused at load naming the tensor; generate prints nothing', async () => {
    const dir = model('nan-model', (f) => {
      const buf = fs.readFileSync(path.join(BYTES, 'model.safetensors'));
      const n = Number(buf.readBigUInt64LE(0));
      const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
      const [name, info] = Object.entries(header).find(([k, v]: [string, any]) => k !== '__metadata__' && v.dtype === 'F32') as [string, any];
      buf.writeFloatLE(NaN, 8 + n + info.data_offsets[0] + 4 * 3);
      fs.writeFileSync(f, buf);
      fs.writeFileSync(path.join(path.dirname(f), 'tensor.txt'), name);
    });
    const name = fs.readFileSync(path.join(dir, 'tensor.txt'), 'utf8');
    await expect(Engine.load(dir, { threads: 1 })).rejects.toMatchObject({
      code: 'E_CHECKPOINT',
      message: expect.stringContaining(`tensor ${name} holds a NaN or infinite value (element 3)`),
    });
    const r = roost(['generate', '--model', dir, '--prompt', 'x', '--max-tokens', '4'], 30_000);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`tensor ${name} holds a NaN`);
  });
});

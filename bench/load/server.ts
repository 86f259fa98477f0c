// Starts `roost serve` as a child process for a run without --base-url, and
// stops it afterwards.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { repoRoot } from './paths';

export interface SpawnedServer {
  url: string;
  pid: number;
  /** Resolved checkpoint folder. */
  modelDir: string;
  args: string[];
  /** SIGTERM (the server drains), SIGKILL after graceMs. Resolves with the exit code / signal. */
  stop(graceMs?: number): Promise<string>;
  /** The last lines the server wrote to stderr. */
  log(): string[];
}

/** A model flag as `roost serve` resolves it: a folder, or a name under models/ (`default` = models/DEFAULT). */
export function resolveModelDir(model: string): string {
  const root = repoRoot();
  if (fs.existsSync(path.join(model, 'config.json'))) return path.resolve(model);
  let name = model;
  if (name === 'default') name = fs.readFileSync(path.join(root, 'models', 'DEFAULT'), 'utf8').trim();
  const dir = path.join(root, 'models', name);
  if (fs.existsSync(path.join(dir, 'config.json'))) return dir;
  throw new Error(`--model ${model}: neither a checkpoint folder nor a model under models/`);
}

/** The end-of-sequence token id of a checkpoint (config.json eos_token_id or special_tokens.eos), if any. */
export function eosTokenId(modelDir: string): number | null {
  try {
    const cfg = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
    if (Number.isInteger(cfg.eos_token_id)) return cfg.eos_token_id;
    if (Number.isInteger(cfg.special_tokens?.eos)) return cfg.special_tokens.eos;
  } catch {
    // no config: no eos known
  }
  return null;
}

export async function spawnRoost(opts: { model: string; port?: number; extraArgs?: string[]; startTimeoutMs?: number; onLog?: (line: string) => void }): Promise<SpawnedServer> {
  const root = repoRoot();
  const modelDir = resolveModelDir(opts.model);
  const bin = path.join(root, 'bin', 'roost.js');
  if (!fs.existsSync(path.join(root, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build:ts` first');
  const args = [bin, 'serve', '--model', modelDir, '--host', '127.0.0.1', '--port', String(opts.port ?? 0), ...(opts.extraArgs ?? [])];
  const child: ChildProcess = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > 50) tail.shift();
    opts.onLog?.(line);
  };
  let exited: string | null = null;
  const exit = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = signal ? `signal ${signal}` : `exit code ${code}`;
      resolve(exited);
    });
  });
  let errBuf = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    errBuf += c;
    let k: number;
    while ((k = errBuf.indexOf('\n')) >= 0) {
      keep(errBuf.slice(0, k));
      errBuf = errBuf.slice(k + 1);
    }
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`roost serve did not print "listening on" within ${(opts.startTimeoutMs ?? 180_000) / 1000} s\n${tail.join('\n')}`));
    }, opts.startTimeoutMs ?? 180_000);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (c: string) => {
      out += c;
      const m = /listening on (https?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exit.then((how) => {
      clearTimeout(timer);
      reject(new Error(`roost serve ended (${how}) before listening:\n${tail.join('\n')}`));
    });
  });
  const stop = async (graceMs = 35_000): Promise<string> => {
    if (exited) return exited;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const how = await exit;
    clearTimeout(t);
    return how;
  };
  // Never leave the server behind.
  const kill = () => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  return { url, pid: child.pid!, modelDir, args: args.slice(1), stop, log: () => [...tail] };
}

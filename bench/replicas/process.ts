// A helper program (nginx, Prometheus) run in the foreground for a test or a
// bench, its output kept in a log file, never left behind.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';

export interface Helper {
  child: ChildProcess;
  /** Sends `signal`, then SIGKILL after graceMs; resolves once the process has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export function startHelper(cmd: string, args: string[], logFile: string): Helper {
  const log = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  let exited = false;
  const exit = new Promise<void>((r) =>
    child.once('exit', () => {
      exited = true;
      r();
    }),
  );
  child.once('error', () => {
    exited = true;
  });
  const kill = () => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  return {
    child,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000) {
      if (exited) return;
      child.kill(signal);
      const t = setTimeout(kill, graceMs);
      await exit;
      clearTimeout(t);
      process.off('exit', kill);
    },
  };
}

/** A free loopback TCP port (closed again at once: a later bind may race, rarely). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Polls until check() is true; the error names what did not happen and the log's tail. */
export async function waitUntil(check: () => Promise<boolean>, ms: number, what: string, logFile?: string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) {
      const tail = logFile && fs.existsSync(logFile) ? `\n${fs.readFileSync(logFile, 'utf8').slice(-2000)}` : '';
      throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

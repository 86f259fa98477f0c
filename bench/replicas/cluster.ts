// N `roost serve` replicas on fixed loopback ports (so nginx and Prometheus
// name them once), restarted one at a time: SIGTERM (the replica drains, see
// docs/api.md), wait for its exit, start it again on the same port, and wait
// until it is back in the balancer's rotation before the next restart: until
// nginx has routed an HTTP request to it and that request ended (nginx's
// passive checks count a replica as recovered only then), or, for WebSocket
// load (connections stay where they are, so the new process may get none; the
// WebSocket upstream has no passive checks), until it listens.
import { SpawnedServer, spawnRoost } from '../load/server';
import { freePort, waitUntil } from './process';

export interface ReplicaOptions {
  model: string;
  threads: number;
  drainSeconds: number;
  extraArgs?: string[];
  onLog?: (replica: number, line: string) => void;
}

export interface Restart {
  replica: number;
  /** ms since the epoch: SIGTERM sent, process exited, new process listening, first request finished by it. */
  signalled: number;
  exited: number;
  listening: number;
  serving: number;
  exit: string;
}

/** Completion requests the replica at url has finished since it started (roost_requests_total, all outcomes). */
export async function requestsServed(url: string, apiKey?: string): Promise<number> {
  const r = await fetch(`${url}/metrics`, { headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {} });
  if (!r.ok) throw new Error(`${url}/metrics: HTTP ${r.status}`);
  let n = 0;
  for (const m of (await r.text()).matchAll(/^roost_requests_total\{[^}]*\} (\S+)$/gm)) n += Number(m[1]);
  return n;
}

export class Replicas {
  readonly ports: number[] = [];
  readonly servers: Array<SpawnedServer | null> = [];

  constructor(private readonly opts: ReplicaOptions) {}

  /** host:port of each replica (for nginx and Prometheus). */
  get addresses(): string[] {
    return this.ports.map((p) => `127.0.0.1:${p}`);
  }

  async start(n: number): Promise<void> {
    for (let i = 0; i < n; i++) this.ports.push(await freePort());
    await Promise.all(this.ports.map((_, i) => this.spawn(i)));
  }

  private async spawn(i: number): Promise<SpawnedServer> {
    const o = this.opts;
    const server = await spawnRoost({
      model: o.model,
      port: this.ports[i],
      extraArgs: ['--threads', String(o.threads), '--drain-seconds', String(o.drainSeconds), ...(o.extraArgs ?? [])],
      startTimeoutMs: 120_000,
      onLog: o.onLog ? (line) => o.onLog!(i, line) : undefined,
    });
    this.servers[i] = server;
    return server;
  }

  /** Restarts replica i, then waits: 'routed' until it finished a request (HTTP load), 'listening' not at all. */
  async restart(i: number, wait: 'routed' | 'listening', servingTimeoutMs = 60_000): Promise<Restart> {
    const old = this.servers[i];
    const signalled = Date.now();
    const exit = old ? await old.stop(60_000) : 'not running';
    const exited = Date.now();
    this.servers[i] = null;
    const server = await this.spawn(i);
    const listening = Date.now();
    if (wait === 'routed') await waitUntil(async () => (await requestsServed(server.url)) > 0, servingTimeoutMs, `replica ${i} to serve a request after its restart`);
    return { replica: i, signalled, exited, listening, serving: Date.now(), exit };
  }

  async stopAll(): Promise<string[]> {
    const r = await Promise.all(this.servers.map((s) => (s ? s.stop(30_000) : 'not running')));
    this.servers.fill(null);
    return r;
  }
}

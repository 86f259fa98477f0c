// Shared by the hardening tests (docs/api.md, "Limits"): a raw TCP client for
// what fetch cannot do (half a body, a half-close, never reading), and a
// bound on how long a step of an attack may take before it counts as a hang.
import * as net from 'node:net';

/** Resolves with `p`, or rejects naming `what` after ms (an attack that hangs the server fails fast). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

/** A raw connection to the server at `url`, collecting what comes back. */
export class RawClient {
  readonly socket: net.Socket;
  received = '';
  /** The server ended or reset the connection. */
  closed = false;
  private readonly connected: Promise<void>;

  constructor(url: string, opts: { read?: boolean } = {}) {
    const u = new URL(url);
    this.socket = net.connect({ host: u.hostname, port: Number(u.port), allowHalfOpen: true });
    this.connected = new Promise((r) => this.socket.once('connect', () => r()));
    this.socket.on('error', () => undefined); // a reset is one of the outcomes under test
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('end', () => (this.closed = true));
    if (opts.read === false) {
      this.socket.pause(); // never read: the server's writes back up
    } else {
      this.socket.setEncoding('latin1');
      this.socket.on('data', (d: string) => (this.received += d));
    }
  }

  async write(data: string | Buffer): Promise<void> {
    await this.connected;
    await new Promise<void>((resolve) => this.socket.write(data, () => resolve()));
  }

  /** Half-closes: no more bytes from us, the server may still answer. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  async waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what} (received ${JSON.stringify(this.received.slice(0, 200))}, closed ${this.closed})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** A POST /v1/completions request head (and body when given). */
export function postHead(headers: Record<string, string | number>, body = ''): string {
  const lines = Object.entries({ Host: 'x', 'Content-Type': 'application/json', ...headers }).map(([k, v]) => `${k}: ${v}`);
  return `POST /v1/completions HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n${body}`;
}

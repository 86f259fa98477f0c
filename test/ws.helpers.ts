// A WebSocket /v1/stream client for the tests: sends JSON or protobuf frames
// and collects every server event (binary ones decoded to their JSON form).
import { WebSocket } from 'ws';

import { decodeServerBinary, encodeClientBinary, ServerEvent } from '../src/ws/frames';

export class Client {
  readonly events: ServerEvent[] = [];
  readonly ws: WebSocket;
  private waiters: Array<() => void> = [];
  constructor(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}) {
    this.ws = new WebSocket(url.replace(/^http/, 'ws') + '/v1/stream', opts);
    this.ws.on('message', (data: Buffer, binary: boolean) => {
      this.events.push(binary ? decodeServerBinary(data) : JSON.parse(data.toString()));
      for (const w of this.waiters.splice(0)) w();
    });
  }
  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
  }
  sendJson(m: unknown) {
    this.ws.send(JSON.stringify(m));
  }
  sendProto(m: Record<string, unknown>) {
    this.ws.send(encodeClientBinary(m));
  }
  async until(pred: (e: ServerEvent) => boolean, ms = 5000): Promise<ServerEvent> {
    const end = Date.now() + ms;
    for (;;) {
      const e = this.events.find(pred);
      if (e) return e;
      if (Date.now() > end) throw new Error(`no such event; got ${JSON.stringify(this.events.slice(-3))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
  of(id: string) {
    return this.events.filter((e) => e.id === id);
  }
  close() {
    this.ws.close();
  }
}

// Server-sent events for streamed completions: `data: <json>` events ending
// with `data: [DONE]`, `: keep-alive` comments while nothing else is written
// (a request waiting in the queue or prefilling a long prompt), and flow
// control: when the socket's buffer is full the request is paused until it
// drains, so a slow reader holds a sequence (parked: no batch slot), not a
// growing buffer; a reader that drains nothing for the stall time is dropped,
// which cancels the request and frees its sequences.
import type { Response } from 'express';

export class SseStream {
  private lastWrite = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private pressured = false;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly res: Response,
    keepAliveMs: number,
    private readonly onPressure: (paused: boolean) => void,
    private readonly stallTimeoutMs = 0,
  ) {
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no'); // nginx: do not buffer the stream
    res.flushHeaders();
    if (keepAliveMs > 0) {
      this.timer = setInterval(() => {
        if (Date.now() - this.lastWrite >= keepAliveMs) this.write(': keep-alive\n\n');
      }, Math.max(10, Math.floor(keepAliveMs / 2)));
      this.timer.unref();
    }
    res.on('close', () => this.stop());
  }

  send(data: unknown): void {
    this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** A comment line, to learn whether a client that half-closed is still there (src/http/limits.ts). */
  probe(): void {
    this.write(':\n\n');
  }

  /** Ends the stream with `data: [DONE]`. */
  done(): void {
    if (this.closed) return;
    this.write('data: [DONE]\n\n');
    this.stop();
    this.res.end();
  }

  private write(text: string): void {
    if (this.closed || this.res.destroyed) return;
    this.lastWrite = Date.now();
    if (!this.res.write(text) && !this.pressured) {
      this.pressured = true;
      this.onPressure(true);
      if (this.stallTimeoutMs > 0) {
        // Destroying the response closes it; the handler's 'close' listener cancels the request.
        this.stallTimer = setTimeout(() => this.res.destroy(), this.stallTimeoutMs);
        this.stallTimer.unref();
      }
      this.res.once('drain', () => {
        this.pressured = false;
        if (this.stallTimer) clearTimeout(this.stallTimer);
        this.onPressure(false);
      });
    }
  }

  private stop(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.stallTimer) clearTimeout(this.stallTimer);
  }
}


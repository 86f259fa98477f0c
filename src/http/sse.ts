// Server-sent events for streamed completions: `data: <json>` events ending
// with `data: [DONE]`, `: keep-alive` comments while nothing else is written
// (a request waiting in the queue or prefilling a long prompt), and flow
// control: when the socket's buffer is full the request is paused until it
// drains, so a slow reader holds a sequence (parked: no batch slot), not a
// growing buffer; a reader that drains nothing for the stall time is dropped,
// which cancels the request and frees its sequences.
import type { Request, Response } from 'express';

import type { CompletionRun, Usage } from '../engine/completion';
import { toRequestError } from '../engine/errors';
import { probeHalfClosedClient } from './limits';

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

/**
 * The streamed answer of a started run, shared by the completion routes: a
 * client that goes away cancels it; once it is accepted (a refusal before that
 * is still a 4xx) the 200 event stream opens (`open` sends any first chunks),
 * then the usage chunk `usage` returns (if any) and `[DONE]`; an error after
 * the headers is reported in-band, as OpenAI-compatible servers do. `attach`
 * hands the stream to the run's event callbacks.
 */
export async function streamRun(
  req: Request,
  res: Response,
  run: CompletionRun,
  opts: { keepAliveMs: number; stallTimeoutMs: number },
  attach: (sse: SseStream) => void,
  usage: (u: Usage) => object | null,
): Promise<void> {
  res.on('close', () => {
    if (!res.writableFinished) run.cancel();
  });
  // A large prompt is still being tokenized (off the event loop): a refusal is still a 4xx.
  await run.accepted;
  if (res.destroyed) return;
  const sse = new SseStream(res, opts.keepAliveMs, (paused) => run.setPaused(paused), opts.stallTimeoutMs);
  attach(sse);
  probeHalfClosedClient(req, res, () => sse.probe());
  try {
    const result = await run.result;
    const chunk = usage(result.usage);
    if (chunk) sse.send(chunk);
  } catch (e) {
    sse.send(toRequestError(e).body());
  }
  sse.done();
}

// Request ids and the access log. Every response carries X-Request-Id: the
// client's own when it sent a sane one (1 to 128 printable ASCII characters,
// no spaces), else a new UUID. With the log on (`roost serve`, off with
// --quiet), each request writes one line once its response is over (a stream
// at its end, or when its client went away): the time it arrived, method,
// path, status, prompt and completion tokens, time to first token, total time
// and the request id, as text or JSON (--log-format). docs/api.md shows both.
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

import type { Usage } from '../engine/completion';

export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: LogFormat[] = ['text', 'json'];

export interface AccessLogOptions {
  format: LogFormat;
  /** Where each line goes (roost serve: stderr). */
  write(line: string): void;
}

/** One line of the log; the JSON format writes it as is. */
export interface AccessLogEntry {
  /** When the request arrived, ISO 8601 UTC. */
  time: string;
  method: string;
  path: string;
  /** The status sent; 499 (as nginx logs it) when the client went away before any was sent. */
  status: number;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  /** From arrival to the first sampled token, ms; null when none was sampled. */
  ttft_ms: number | null;
  /** From arrival to the end of the response (or the client's leaving), ms. */
  total_ms: number;
  request_id: string;
  /** The client closed the connection before the response was complete. */
  client_closed: boolean;
}

const SANE_ID = /^[\x21-\x7e]{1,128}$/;
const MAX_LOGGED_PATH = 256;

/** What a route reports for the log (src/http/completions.ts): tokens and the first token's time. */
interface Pending {
  start: number;
  ttftMs: number | null;
  /** Settles when the request's work is over: the log line waits for it to count the tokens. */
  usage?: Promise<Usage | undefined>;
}

const RECORD = Symbol('roost.accessLog');
type WithRecord = Response & { [RECORD]?: Pending };

/** Echoes a sane X-Request-Id or gives a new one; routes read it from res.locals.requestId. */
export function requestId() {
  return (req: Request, res: Response, next: NextFunction) => {
    const sent = req.headers['x-request-id'];
    const id = typeof sent === 'string' && SANE_ID.test(sent) ? sent : randomUUID();
    res.locals.requestId = id;
    res.setHeader('X-Request-Id', id);
    next();
  };
}

/** For the log: the first token of this response's request was sampled now. */
export function noteFirstToken(res: Response): void {
  const r = (res as WithRecord)[RECORD];
  if (r && r.ttftMs === null) r.ttftMs = performance.now() - r.start;
}

/** For the log: the request's token counts, once its run settles (a failed run logs none). */
export function noteUsage(res: Response, usage: Promise<{ usage: Usage }>): void {
  const r = (res as WithRecord)[RECORD];
  if (r) r.usage = usage.then((x) => x.usage, () => undefined);
}

export function formatEntry(e: AccessLogEntry, format: LogFormat): string {
  if (format === 'json') return JSON.stringify(e);
  const n = (v: number | null) => (v === null ? '-' : String(v));
  const path = /^[\x21-\x7e]*$/.test(e.path) ? e.path : JSON.stringify(e.path);
  return (
    `${e.time} ${e.method} ${path} ${e.status} prompt_tokens=${n(e.prompt_tokens)} completion_tokens=${n(e.completion_tokens)} ` +
    `ttft_ms=${n(e.ttft_ms)} total_ms=${e.total_ms} request_id=${e.request_id}${e.client_closed ? ' client_closed' : ''}`
  );
}

const round1 = (ms: number) => Math.round(ms * 10) / 10;

/** Logs each request once its response is over (after requestId()). */
export function accessLog(opts: AccessLogOptions) {
  return (req: Request, res: Response, next: NextFunction) => {
    const record: Pending = { start: performance.now(), ttftMs: null };
    const time = new Date().toISOString();
    const path = req.path.slice(0, MAX_LOGGED_PATH);
    (res as WithRecord)[RECORD] = record;
    res.once('close', () => {
      const totalMs = performance.now() - record.start;
      const status = res.headersSent ? res.statusCode : 499;
      const clientClosed = !res.writableFinished;
      // A cancelled run settles soon after its client left: wait for its counts.
      void Promise.resolve(record.usage).then((usage) => {
        const entry: AccessLogEntry = {
          time,
          method: req.method,
          path,
          status,
          prompt_tokens: usage?.prompt_tokens ?? null,
          completion_tokens: usage?.completion_tokens ?? null,
          ttft_ms: record.ttftMs === null ? null : round1(record.ttftMs),
          total_ms: round1(totalMs),
          request_id: String(res.locals.requestId ?? ''),
          client_closed: clientClosed,
        };
        opts.write(formatEntry(entry, opts.format) + '\n');
      });
    });
    next();
  };
}

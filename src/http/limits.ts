// What one HTTP client may make the server hold: how long it may take to send
// its headers and body, and how many bytes its body may have (after
// Content-Encoding is undone). A body past the limit gets its 413 as soon as
// the limit is crossed (from Content-Length, or while a chunked body streams
// in) and the connection is closed without reading the rest. docs/api.md
// lists these limits.
import type * as http from 'node:http';
import * as zlib from 'node:zlib';
import type { Request, Response } from 'express';

import { RequestError } from '../engine/errors';

export interface HttpTimeouts {
  /** Time to send the request headers, ms. */
  headersTimeoutMs?: number;
  /** Time to send the whole request (headers and body), ms; the response may take longer. */
  bodyTimeoutMs?: number;
}

export const DEFAULT_HTTP_TIMEOUTS: Required<HttpTimeouts> = { headersTimeoutMs: 20_000, bodyTimeoutMs: 60_000 };

/** The options http.createServer needs for these timeouts to be enforced on time. */
export function serverOptions(t: HttpTimeouts = {}): http.ServerOptions {
  const { headersTimeoutMs, bodyTimeoutMs } = { ...DEFAULT_HTTP_TIMEOUTS, ...t };
  return {
    headersTimeout: headersTimeoutMs,
    requestTimeout: bodyTimeoutMs,
    // Node checks the timeouts on this period (default 30 s): check often enough to honour short ones.
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(Math.min(headersTimeoutMs, bodyTimeoutMs) / 4))),
  };
}

/**
 * A client that half-closes its side after sending a request still gets the
 * response (Node's default aborts the request when the client's FIN arrives).
 * A client that went away entirely is noticed at the next write.
 */
export function keepHalfOpenClients(server: http.Server): void {
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
}

/**
 * Once the client half-closes, probe it at once and then every periodMs
 * (`probe` writes something harmless: a `102 Processing` interim response
 * before the answer, an SSE comment in a stream). A client that is gone
 * answers with a reset and the next write fails, which closes the response
 * (and so cancels the request); a half-closed one still gets its answer.
 */
export function probeHalfClosedClient(req: Request, res: Response, probe: () => void, periodMs = 100): void {
  const start = () => {
    if (res.writableEnded || res.destroyed) return;
    probe();
    const timer = setInterval(() => {
      if (res.writableEnded || res.destroyed) clearInterval(timer);
      else probe();
    }, periodMs);
    timer.unref();
    res.once('close', () => clearInterval(timer));
  };
  if (req.socket.readableEnded) return start();
  // One listener per request on a keep-alive connection: drop it once this response is done.
  const socket = req.socket;
  socket.once('end', start);
  res.once('close', () => socket.off('end', start));
}

/** Sends the coming error response with Connection: close and then closes without reading what is left. */
export function closeAfterResponse(req: Request, res: Response): void {
  res.setHeader('Connection', 'close');
  req.pause();
  res.once('finish', () => {
    const socket = req.socket;
    socket.pause();
    socket.end();
    // A client still sending never reads our FIN: do not wait on it.
    setTimeout(() => socket.destroy(), 1000).unref();
  });
}

function decoder(req: Request): zlib.Gunzip | zlib.Inflate | null {
  const enc = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  switch (enc) {
    case 'identity':
    case '':
      return null;
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    default:
      throw new RequestError('unsupported_media_type', `unsupported Content-Encoding ${JSON.stringify(enc.slice(0, 40))}: send identity, gzip or deflate`);
  }
}

const tooLarge = (limit: number, got?: number) =>
  new RequestError('payload_too_large', `the request body is too large: ${got !== undefined ? `${got} bytes` : 'more than the limit'}, the limit is ${limit} bytes`);

/**
 * The request body, decoded, of at most `limit` bytes both as sent and as
 * decoded (a small gzip body may inflate to gigabytes). Rejects with an
 * RequestError: 413 payload_too_large, 415 unsupported_media_type, 400
 * invalid_encoding (corrupt gzip / deflate data) or invalid_json (incomplete).
 */
export function readBody(req: Request, res: Response, limit: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const refuse = (e: RequestError) => {
      closeAfterResponse(req, res);
      reject(e);
    };
    let inflate: zlib.Gunzip | zlib.Inflate | null;
    try {
      inflate = decoder(req);
    } catch (e) {
      return refuse(e as RequestError);
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) return refuse(tooLarge(limit, declared));
    let settled = false;
    const fail = (e: RequestError, close: boolean) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (close) refuse(e);
      else reject(e);
    };
    // With a Content-Length (and no decoding) the body is copied into place as it arrives, not
    // concatenated at the end: an 8 MiB body then never costs one long copy on the event loop.
    const whole = !inflate && Number.isFinite(declared) && declared > 0 ? Buffer.allocUnsafe(declared) : null;
    const parts: Buffer[] = [];
    let received = 0;
    let decoded = 0;
    const onDecoded = (b: Buffer) => {
      if (decoded + b.length > limit) return fail(new RequestError('payload_too_large', `the request body inflates to more than the limit of ${limit} bytes`), true);
      if (whole) b.copy(whole, decoded);
      else parts.push(b);
      decoded += b.length;
    };
    const onData = (b: Buffer) => {
      received += b.length;
      if (received > limit) return fail(tooLarge(limit), true);
      if (inflate) inflate.write(b);
      else onDecoded(b);
    };
    const finish = () => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(whole ? whole.subarray(0, decoded) : Buffer.concat(parts, decoded));
    };
    const onEnd = () => {
      if (inflate) inflate.end();
      else finish();
    };
    const onAborted = () => fail(new RequestError('invalid_json', 'the request body is incomplete: the client closed the connection'), false);
    const onInflateError = (e: Error) =>
      fail(new RequestError('invalid_encoding', `the request body is not valid ${req.headers['content-encoding']} data: ${e.message}`), true);
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onAborted);
      req.off('error', onAborted);
      if (inflate) {
        inflate.off('data', onDecoded);
        inflate.off('end', finish);
        inflate.off('error', onInflateError);
        inflate.on('error', () => undefined); // errors after we stopped listening
        inflate.destroy();
      }
    };
    if (inflate) {
      inflate.on('data', onDecoded);
      inflate.on('end', finish);
      inflate.on('error', onInflateError);
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onAborted);
    req.on('error', onAborted);
  });
}

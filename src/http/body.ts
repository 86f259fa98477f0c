// Request bodies: raw bytes (size-limited), then strict UTF-8, then JSON, so
// every failure gets its own message: invalid UTF-8 is refused rather than
// silently replaced with U+FFFD, and a JSON syntax error says where.
import express, { NextFunction, Request, Response } from 'express';

import { RequestError } from '../engine/errors';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Parses the body of POST requests into req.body (any content type is read as JSON, as llama.cpp does). */
export function jsonBody(limitBytes: number) {
  const raw = express.raw({ type: () => true, limit: limitBytes });
  return [
    raw,
    (req: Request, _res: Response, next: NextFunction) => {
      const buf: unknown = req.body;
      if (!Buffer.isBuffer(buf) || buf.length === 0) {
        next(new RequestError('invalid_json', 'the request body is empty: send a JSON object'));
        return;
      }
      let text: string;
      try {
        text = utf8.decode(buf);
      } catch {
        next(new RequestError('invalid_encoding', `the request body is not valid UTF-8 (byte offset ${firstInvalidUtf8(buf)})`));
        return;
      }
      try {
        req.body = JSON.parse(text);
      } catch (e) {
        next(new RequestError('invalid_json', `the request body is not valid JSON: ${(e as Error).message}`));
        return;
      }
      next();
    },
  ];
}

/** Offset of the first byte that breaks UTF-8 (for the message). */
function firstInvalidUtf8(buf: Buffer): number {
  let lo = 0;
  let hi = buf.length;
  // The longest valid prefix, by bisection (a valid prefix may end mid-character: allow 3 bytes of slack).
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  return lo;
}

/** Errors raised by express.raw (raw-body) as catalogue errors. */
export function bodyParserError(e: unknown): RequestError | undefined {
  const err = e as { type?: string; limit?: number; length?: number; status?: number; message?: string };
  switch (err?.type) {
    case 'entity.too.large':
      return new RequestError('payload_too_large', `the request body is too large: ${err.length ?? 'more than'} bytes, the limit is ${err.limit} bytes`);
    case 'encoding.unsupported':
      return new RequestError('unsupported_media_type', `unsupported Content-Encoding: ${err.message}`);
    case 'request.aborted':
    case 'request.size.invalid':
      return new RequestError('invalid_json', `the request body is incomplete: ${err.message}`);
    default:
      return undefined;
  }
}

// Request bodies: raw bytes (size-limited and decoded, src/http/limits.ts),
// then strict UTF-8, then JSON, so every failure gets its own message: invalid
// UTF-8 is refused rather than silently replaced with U+FFFD, and a JSON
// syntax error says where.
import type { NextFunction, Request, Response } from 'express';

import { ApiError } from './errors';
import { readBody } from './limits';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Parses the body of POST requests into req.body (any content type is read as JSON, as llama.cpp does). */
export function jsonBody(limitBytes: number) {
  return [
    async (req: Request, res: Response, next: NextFunction) => {
      let buf: Buffer;
      try {
        buf = await readBody(req, res, limitBytes);
      } catch (e) {
        next(e);
        return;
      }
      if (buf.length === 0) {
        next(new ApiError('invalid_json', 'the request body is empty: send a JSON object'));
        return;
      }
      let text: string;
      try {
        text = utf8.decode(buf);
      } catch {
        next(new ApiError('invalid_encoding', `the request body is not valid UTF-8 (byte offset ${firstInvalidUtf8(buf)})`));
        return;
      }
      try {
        req.body = JSON.parse(text);
      } catch (e) {
        next(new ApiError('invalid_json', `the request body is not valid JSON: ${(e as Error).message}`));
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

// Request bodies: raw bytes (size-limited and decoded, src/http/limits.ts),
// then strict UTF-8 and JSON (src/http/body-decode.ts, off the event loop for
// large bodies), so every failure gets its own message.
import type { NextFunction, Request, Response } from 'express';

import { decodeJsonBodyAsync } from './body-decode';
import { RequestError } from '../engine/errors';
import { readBody } from './limits';

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
        next(new RequestError('invalid_json', 'the request body is empty: send a JSON object'));
        return;
      }
      const r = await decodeJsonBodyAsync(buf);
      if ('invalidUtf8At' in r) next(new RequestError('invalid_encoding', `the request body is not valid UTF-8 (byte offset ${r.invalidUtf8At})`));
      else if ('syntaxError' in r) next(new RequestError('invalid_json', `the request body is not valid JSON: ${r.syntaxError}`));
      else {
        req.body = r.value;
        next();
      }
    },
  ];
}

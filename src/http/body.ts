// Request bodies: a JSON Content-Type, raw bytes (size-limited and decoded,
// src/http/limits.ts), then strict UTF-8 and JSON (src/http/body-decode.ts,
// off the event loop for large bodies), so every failure gets its own message.
import type { NextFunction, Request, Response } from 'express';

import { decodeJsonBodyAsync } from './body-decode';
import { RequestError } from '../engine/errors';
import { closeAfterResponse, readBody } from './limits';

/**
 * A body that is not declared JSON is refused unread (415): the content types
 * a page may send to another origin without a CORS preflight (text/plain, a
 * form) or with none at all cannot drive the API from someone else's page.
 */
function notJson(req: Request): RequestError | undefined {
  // null: no body at all, which the empty-body check below words better.
  if (req.is(['application/json', '+json']) !== false) return undefined;
  const type = req.headers['content-type'];
  const got = type === undefined ? 'no Content-Type' : `Content-Type ${JSON.stringify(type.slice(0, 60))}`;
  return new RequestError('unsupported_media_type', `the request body must be JSON: send Content-Type: application/json (got ${got})`);
}

/** Parses the body of POST requests into req.body. */
export function jsonBody(limitBytes: number) {
  return [
    async (req: Request, res: Response, next: NextFunction) => {
      const refused = notJson(req);
      if (refused) {
        closeAfterResponse(req, res);
        next(refused);
        return;
      }
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

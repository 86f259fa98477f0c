// CORS (--allowed-origins): which other web origins' pages may call the API
// from a browser. None by default. A request from an allowed origin gets
// Access-Control-Allow-Origin (and its preflight OPTIONS a 204 with the
// methods and headers it may use); any other origin gets no CORS header, so
// the browser keeps the response from the page. Every response says
// `Vary: Origin` so that caches keep the answers apart. A page that may not
// read the answers still cannot make the server work for it: a body that is
// not declared JSON (the only kind sent without a preflight) is refused with
// 415 (src/http/body.ts). The WebSocket checks Origin itself (src/engine/origins.ts).
import type { NextFunction, Request, Response } from 'express';

import { originAllowed } from '../engine/origins';

/** How long a browser may reuse a preflight answer, s (Chromium caps it at 2 h). */
export const PREFLIGHT_MAX_AGE_S = 600;
const ALLOW_METHODS = 'GET, POST, OPTIONS';
/** Always allowed; a preflight's other requested headers (an SDK's own) are allowed too when they are valid names. */
const ALLOW_HEADERS = ['Authorization', 'Content-Type', 'X-Request-Id'];
const EXPOSE_HEADERS = 'X-Request-Id, Retry-After';
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;

export function cors(allowedOrigins: readonly string[]) {
  const any = allowedOrigins.includes('*');
  return (req: Request, res: Response, next: NextFunction) => {
    if (allowedOrigins.length === 0) return next();
    res.vary('Origin');
    const origin = req.headers.origin;
    if (origin === undefined || !originAllowed(allowedOrigins, origin)) return next();
    res.setHeader('Access-Control-Allow-Origin', any ? '*' : origin);
    res.setHeader('Access-Control-Expose-Headers', EXPOSE_HEADERS);
    if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return next();
    // A preflight: answered here, before the API key check (browsers send it without credentials).
    const requested = (req.headers['access-control-request-headers'] ?? '')
      .split(',')
      .map((h) => h.trim())
      .filter((h) => HEADER_NAME.test(h) && !ALLOW_HEADERS.some((a) => a.toLowerCase() === h.toLowerCase()))
      .slice(0, 32);
    res.setHeader('Access-Control-Allow-Methods', ALLOW_METHODS);
    res.setHeader('Access-Control-Allow-Headers', [...ALLOW_HEADERS, ...requested].join(', '));
    res.setHeader('Access-Control-Max-Age', String(PREFLIGHT_MAX_AGE_S));
    res.status(204).end();
  };
}

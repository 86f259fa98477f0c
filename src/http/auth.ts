// Optional API key (--api-key): `Authorization: Bearer <key>` on every route
// but /health, which load balancers probe without credentials.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

import { ApiError } from './errors';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** True when the header carries the key (compared in constant time over digests). */
export function bearerMatches(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(digest(m[1].trim()), digest(key));
}

export function requireApiKey(key: string | undefined) {
  return (req: Request, _res: Response, next: NextFunction) => {
    if (!key || req.path === '/health') return next();
    if (!req.headers.authorization) return next(new ApiError('invalid_api_key', 'missing API key: send Authorization: Bearer <key>'));
    if (!bearerMatches(req.headers.authorization, key)) return next(new ApiError('invalid_api_key', 'invalid API key'));
    next();
  };
}

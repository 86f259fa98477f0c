// Optional API key (--api-key): `Authorization: Bearer <key>` on every route
// but /health, which load balancers probe without credentials.
import type { NextFunction, Request, Response } from 'express';

import { apiKeyRefusal } from '../engine/api-key';

export function requireApiKey(key: string | undefined) {
  return (req: Request, _res: Response, next: NextFunction) => {
    if (req.path === '/health') return next();
    next(apiKeyRefusal(key, req.headers.authorization) ?? undefined);
  };
}

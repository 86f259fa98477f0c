// Errors as HTTP responses: the status, type and body come from the one
// catalogue in src/engine/errors.ts, which the WebSocket gateway renders too.
import type { Response } from 'express';

import { RequestError, toRequestError } from '../engine/errors';

export function sendError(res: Response, e: unknown): void {
  const err = toRequestError(e);
  if (err.code === 'server_error' && !(e instanceof RequestError)) {
    process.stderr.write(`roost: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
  }
  if (res.headersSent) {
    res.end();
    return;
  }
  if (err.retryAfter !== undefined) res.setHeader('Retry-After', String(err.retryAfter));
  res.status(err.status).json(err.body());
}

// The one error catalogue of the HTTP API: every error a client can get has a
// code here with its status and type; the body is always
// {"error":{"message","type","param","code"}} (shared/DESIGN.md).
import type { Response } from 'express';

import { RequestError, RequestErrorCode } from '../engine/errors';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'overloaded_error'
  | 'timeout_error'
  | 'server_error'
  | 'unavailable_error';

interface Entry {
  status: number;
  type: ErrorType;
  /** Message used when the raiser gives none. */
  message: string;
}

export const CATALOGUE = {
  // 400: the request is wrong; the message names the field.
  invalid_json: { status: 400, type: 'invalid_request_error', message: 'the request body is not valid JSON' },
  invalid_encoding: { status: 400, type: 'invalid_request_error', message: 'the request body is not valid UTF-8' },
  invalid_parameter: { status: 400, type: 'invalid_request_error', message: 'a parameter is invalid' },
  unknown_parameter: { status: 400, type: 'invalid_request_error', message: 'unrecognized request argument' },
  unsupported_parameter: { status: 400, type: 'invalid_request_error', message: 'parameter not supported' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error', message: "the request exceeds the model's context" },
  cost_limit_exceeded: { status: 400, type: 'invalid_request_error', message: 'the request would return too many log-prob entries' },
  // 401
  invalid_api_key: { status: 401, type: 'authentication_error', message: 'invalid or missing API key: send Authorization: Bearer <key>' },
  // 404
  not_found: { status: 404, type: 'not_found_error', message: 'no such route' },
  model_not_found: { status: 404, type: 'not_found_error', message: 'no such model' },
  // 413
  payload_too_large: { status: 413, type: 'invalid_request_error', message: 'the request body is too large' },
  // 415
  unsupported_media_type: { status: 415, type: 'invalid_request_error', message: 'the request body must be JSON' },
  // 429
  overloaded: { status: 429, type: 'overloaded_error', message: 'the server is overloaded; retry later' },
  // 500
  server_error: { status: 500, type: 'server_error', message: 'internal server error' },
  engine_error: { status: 500, type: 'server_error', message: 'the engine failed' },
  // 503
  model_loading: { status: 503, type: 'unavailable_error', message: 'the model is still loading' },
  shutting_down: { status: 503, type: 'unavailable_error', message: 'the server is shutting down' },
  // 504
  request_timeout: { status: 504, type: 'timeout_error', message: 'the request timed out' },
} satisfies Record<string, Entry>;

export type ErrorCode = keyof typeof CATALOGUE;

// Every engine-layer code has an HTTP form.
const _engineCodesCovered: Record<RequestErrorCode, Entry> = CATALOGUE;
void _engineCodesCovered;

export class ApiError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  constructor(
    readonly code: ErrorCode,
    message?: string,
    readonly param: string | null = null,
    readonly retryAfter?: number,
  ) {
    super(message ?? CATALOGUE[code].message);
    this.name = 'ApiError';
    this.status = CATALOGUE[code].status;
    this.type = CATALOGUE[code].type;
  }

  body() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Any thrown value as an ApiError (unknown errors become a 500 without internals). */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof RequestError) return new ApiError(e.code, e.message, e.param, e.retryAfter);
  return new ApiError('server_error');
}

export function sendError(res: Response, e: unknown): void {
  const err = toApiError(e);
  if (err.code === 'server_error' && !(e instanceof ApiError)) {
    process.stderr.write(`roost: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
  }
  if (res.headersSent) {
    res.end();
    return;
  }
  if (err.retryAfter !== undefined) res.setHeader('Retry-After', String(err.retryAfter));
  res.status(err.status).json(err.body());
}

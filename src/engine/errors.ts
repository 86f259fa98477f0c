// The one error catalogue: every error a client can get, over HTTP or the
// WebSocket, has a code here with its HTTP status, type and default message
// (fastify's lib/errors.js does the same). The wire form is always
// {"error":{"message","type","param","code"}} (docs/api.md): src/http sends it
// as a response body, src/ws as an upgrade refusal or an `error` event.

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
  invalid_frame: { status: 400, type: 'invalid_request_error', message: 'the frame is not a roost.ClientMessage' },
  invalid_parameter: { status: 400, type: 'invalid_request_error', message: 'a parameter is invalid' }, // a known field with a wrong type or value
  unknown_parameter: { status: 400, type: 'invalid_request_error', message: 'unrecognized request argument' }, // a field this API does not know
  unsupported_parameter: { status: 400, type: 'invalid_request_error', message: 'parameter not supported' }, // a known OpenAI field Roost does not implement (beyond its neutral value)
  context_length_exceeded: { status: 400, type: 'invalid_request_error', message: "the request exceeds the model's context" },
  memory_not_built: { status: 400, type: 'invalid_request_error', message: 'the datastore has no kNN memory' }, // memory.datastore of a datastore built without --knn (src/retrieval/knn.ts)
  cost_limit_exceeded: { status: 400, type: 'invalid_request_error', message: 'the request would return too many log-prob entries' }, // src/engine/request-cost.ts
  // 401
  invalid_api_key: { status: 401, type: 'authentication_error', message: 'invalid or missing API key: send Authorization: Bearer <key>' },
  // 403
  origin_not_allowed: { status: 403, type: 'invalid_request_error', message: 'the page\'s origin is not allowed: see --allowed-origins' }, // a WebSocket from a browser page (src/engine/origins.ts)
  // 404
  not_found: { status: 404, type: 'not_found_error', message: 'no such route' },
  model_not_found: { status: 404, type: 'not_found_error', message: 'no such model' },
  datastore_not_found: { status: 404, type: 'not_found_error', message: 'no such datastore' }, // src/retrieval
  document_not_found: { status: 404, type: 'not_found_error', message: 'no such document in the datastore' },
  corpus_not_found: { status: 404, type: 'not_found_error', message: 'no such novelty corpus' }, // src/novelty
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
  datastore_unavailable: { status: 503, type: 'unavailable_error', message: 'the datastore cannot be opened' }, // its folder is missing or corrupted; the message says which file
  corpus_unavailable: { status: 503, type: 'unavailable_error', message: 'the novelty corpus cannot be opened' }, // as datastore_unavailable
  // 504
  request_timeout: { status: 504, type: 'timeout_error', message: 'the request timed out' },
} satisfies Record<string, Entry>;

export type ErrorCode = keyof typeof CATALOGUE;

/** The wire form of an error. */
export interface ErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: ErrorCode };
}

/** Why a request was refused or stopped: a catalogue code, a message naming what is wrong, the field at fault. */
export class RequestError extends Error {
  readonly status: number;
  readonly type: ErrorType;

  constructor(
    readonly code: ErrorCode,
    message?: string,
    /** The request field at fault, or null. */
    readonly param: string | null = null,
    /** Seconds a client should wait before retrying (overloaded only). */
    readonly retryAfter?: number,
  ) {
    super(message ?? CATALOGUE[code].message);
    this.name = 'RequestError';
    this.status = CATALOGUE[code].status;
    this.type = CATALOGUE[code].type;
  }

  body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Any thrown value as a RequestError: unknown errors become server_error, without their internals. */
export function toRequestError(e: unknown): RequestError {
  return e instanceof RequestError ? e : new RequestError('server_error');
}

/** A wrong value for `param`: "<param> must be <expected> (got <actual>)". */
export function invalidParam(param: string, expected: string, actual: unknown): RequestError {
  return new RequestError('invalid_parameter', `${param} must be ${expected} (got ${describe(actual)})`, param);
}

/** A short, bounded rendering of a client value for messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  switch (typeof v) {
    case 'string':
      return v.length > 40 ? `a string of length ${v.length}` : JSON.stringify(v);
    case 'number':
      return String(v);
    case 'boolean':
      return String(v);
    case 'object':
      return 'an object';
    default:
      return typeof v;
  }
}

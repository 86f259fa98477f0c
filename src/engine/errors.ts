// Why a request was refused or stopped, in the engine layer's words. Each
// surface maps the code to its wire form: src/http/errors.ts is the catalogue
// (status, type) for HTTP; the WebSocket gateway sends the code as is.

export type RequestErrorCode =
  | 'invalid_parameter' // a known field with a wrong type or value
  | 'unknown_parameter' // a field this API does not know
  | 'unsupported_parameter' // a known OpenAI field Roost does not implement (beyond its neutral value)
  | 'context_length_exceeded' // prompt + max_tokens over the model's context
  | 'cost_limit_exceeded' // the request would return more log-prob entries than one request may (src/engine/request-cost.ts)
  | 'model_not_found' // `model` names another model
  | 'overloaded' // the queue is full
  | 'request_timeout' // the per-request deadline passed
  | 'shutting_down' // the server is draining
  | 'model_loading' // the engine is not loaded yet
  | 'engine_error'; // the engine failed a step

export class RequestError extends Error {
  readonly code: RequestErrorCode;
  /** The request field at fault, or null. */
  readonly param: string | null;
  /** Seconds a client should wait before retrying (overloaded only). */
  readonly retryAfter?: number;

  constructor(code: RequestErrorCode, message: string, param: string | null = null, retryAfter?: number) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
    this.param = param;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
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

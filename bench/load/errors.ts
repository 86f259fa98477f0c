// Error classification: every failed request gets a kind (what went wrong, at
// which layer) and a key (the kind plus its status or code) for the report.

export type ErrorKind =
  /** The server answered with a status other than 200 (or refused the WebSocket upgrade). */
  | 'http_status'
  /** Nothing listens at the address (ECONNREFUSED). */
  | 'connection_refused'
  /** The peer reset or dropped the connection mid-request (ECONNRESET, EPIPE, socket hang up). */
  | 'connection_reset'
  /** The WebSocket closed while the request was running. */
  | 'connection_closed'
  /** The address could not be reached at all (DNS, unreachable network). */
  | 'connection_failed'
  /** No answer within the request timeout (ours or the socket's). */
  | 'timeout'
  /** A malformed answer: not an event stream, invalid JSON, no [DONE], an unknown frame. */
  | 'protocol'
  /** The server reported an error in-band: an SSE `data: {"error": ...}` or a WebSocket error event. */
  | 'server_error'
  | 'other';

export const ERROR_KINDS: readonly ErrorKind[] = [
  'http_status',
  'connection_refused',
  'connection_reset',
  'connection_closed',
  'connection_failed',
  'timeout',
  'protocol',
  'server_error',
  'other',
];

export interface ClassifiedError {
  kind: ErrorKind;
  /** http_status: the status code. */
  status?: number;
  /** The server's error code (error.code / error.type), or the socket error's code, or ours for protocol errors. */
  code?: string;
  message: string;
}

/** An error the transports raise once they know what went wrong. */
export class LoadError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly code?: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

const REFUSED = new Set(['ECONNREFUSED']);
const RESET = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE']);
const FAILED = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENETDOWN', 'EHOSTDOWN']);
const TIMEOUT = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Maps anything a request can throw to a ClassifiedError. */
export function classifyError(e: unknown): ClassifiedError {
  if (e instanceof LoadError) {
    const out: ClassifiedError = { kind: e.kind, message: e.message };
    if (e.status !== undefined) out.status = e.status;
    if (e.code !== undefined) out.code = e.code;
    return out;
  }
  // Node socket errors carry a code; fetch wraps them in `cause`; AggregateError (happy eyeballs) in `errors`.
  const err = e as { code?: unknown; cause?: unknown; errors?: unknown[]; message?: unknown; name?: unknown } | null;
  const message = typeof err?.message === 'string' ? err.message : String(e);
  let code = typeof err?.code === 'string' ? err.code : undefined;
  if (!code && err?.cause && typeof (err.cause as { code?: unknown }).code === 'string') code = (err.cause as { code: string }).code;
  if (!code && Array.isArray(err?.errors)) {
    const inner = err!.errors.find((x) => typeof (x as { code?: unknown })?.code === 'string') as { code: string } | undefined;
    code = inner?.code;
  }
  if (code && REFUSED.has(code)) return { kind: 'connection_refused', code, message };
  if (code && RESET.has(code)) return { kind: 'connection_reset', code, message };
  if (code && FAILED.has(code)) return { kind: 'connection_failed', code, message };
  if (code && TIMEOUT.has(code)) return { kind: 'timeout', code, message };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return { kind: 'timeout', code: code ?? String(err.name), message };
  if (/socket hang up/i.test(message)) return { kind: 'connection_reset', code: code ?? 'ECONNRESET', message };
  if (e instanceof SyntaxError) return { kind: 'protocol', code: 'invalid_json', message };
  return code ? { kind: 'other', code, message } : { kind: 'other', message };
}

/** The report's key for an error: kind, then status or code (`http_status:429`, `server_error:request_timeout`). */
export function errorKey(c: ClassifiedError): string {
  if (c.kind === 'http_status') return `http_status:${c.status ?? '?'}`;
  return c.code ? `${c.kind}:${c.code}` : c.kind;
}

export interface ErrorReport {
  total: number;
  byKind: Partial<Record<ErrorKind, number>>;
  byKey: Record<string, number>;
  /** The first few messages, one per key. */
  examples: Record<string, string>;
}

export function emptyErrorReport(): ErrorReport {
  return { total: 0, byKind: {}, byKey: {}, examples: {} };
}

export function countError(r: ErrorReport, c: ClassifiedError): void {
  r.total++;
  r.byKind[c.kind] = (r.byKind[c.kind] ?? 0) + 1;
  const key = errorKey(c);
  r.byKey[key] = (r.byKey[key] ?? 0) + 1;
  if (!(key in r.examples) && Object.keys(r.examples).length < 20) r.examples[key] = c.message.slice(0, 300);
}

/** The error body of an OpenAI-style JSON answer: its code (or type) and message, when it has one. */
export function apiErrorOf(body: unknown): { code?: string; message?: string } | undefined {
  const e = (body as { error?: unknown } | null)?.error;
  if (!e || typeof e !== 'object') return typeof e === 'string' ? { message: e } : undefined;
  const o = e as { code?: unknown; type?: unknown; message?: unknown };
  const code = typeof o.code === 'string' ? o.code : typeof o.code === 'number' ? String(o.code) : typeof o.type === 'string' ? o.type : undefined;
  return { code, message: typeof o.message === 'string' ? o.message : undefined };
}

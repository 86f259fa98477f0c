// Which web origins' pages may use the server (--allowed-origins), decided the
// same way for HTTP (src/http/cors.ts: CORS headers) and the WebSocket upgrade
// (src/ws/gateway.ts: browsers apply no CORS to WebSockets, so the server
// refuses an upgrade from a page whose origin is not allowed).
import { RequestError } from './errors';

/**
 * One --allowed-origins entry as the browser sends it in `Origin`
 * (scheme://host[:port], default port dropped, host lower-cased), `*` as is;
 * undefined when it is neither.
 */
export function normalizeOrigin(value: string): string | undefined {
  if (value === '*') return value;
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return undefined;
  }
  if (!/^https?:$/.test(u.protocol) || u.username || u.password || u.pathname !== '/' || u.search || u.hash) return undefined;
  return u.origin;
}

/** True when a page of `origin` may use the server. */
export function originAllowed(allowed: readonly string[], origin: string): boolean {
  return allowed.includes('*') || allowed.includes(origin);
}

/**
 * The refusal of a WebSocket upgrade sent by a page whose origin is not
 * allowed, or null. Clients that are not browsers send no Origin and pass;
 * so do `ownOrigins` (the server's own page, the playground, when --ui).
 */
export function webSocketOriginRefusal(allowed: readonly string[], origin: string | undefined, ownOrigins: readonly string[] = []): RequestError | null {
  if (origin === undefined || originAllowed(allowed, origin) || ownOrigins.includes(origin)) return null;
  const shown = JSON.stringify(origin.slice(0, 100));
  return new RequestError('origin_not_allowed', `a page from ${shown} may not open this WebSocket: start the server with --allowed-origins ${shown}`);
}

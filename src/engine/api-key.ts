// The optional API key (--api-key), checked the same way by the HTTP routes
// and the WebSocket upgrade, so both refuse with the same catalogue error.
import { createHash, timingSafeEqual } from 'node:crypto';

import { RequestError } from './errors';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** True when the header carries the key (compared in constant time over digests). */
export function bearerMatches(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(digest(m[1].trim()), digest(key));
}

/**
 * The invalid_api_key refusal for a request's credentials, or null when they
 * carry the key or no key is set. `queryKey` is the WebSocket's ?api_key=
 * (browsers cannot set headers on a WebSocket); undefined where it is not accepted.
 */
export function apiKeyRefusal(key: string | undefined, authorization: string | undefined, queryKey?: string | null): RequestError | null {
  if (!key) return null;
  if (bearerMatches(authorization, key)) return null;
  if (typeof queryKey === 'string' && bearerMatches(`Bearer ${queryKey}`, key)) return null;
  if (authorization === undefined && (queryKey ?? null) === null) {
    const how = queryKey === undefined ? 'Authorization: Bearer <key>' : 'Authorization: Bearer <key> or ?api_key=<key>';
    return new RequestError('invalid_api_key', `missing API key: send ${how}`);
  }
  return new RequestError('invalid_api_key', 'invalid API key');
}

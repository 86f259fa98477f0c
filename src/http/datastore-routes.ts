// Datastore updates while serving (Atlas: the index changes, the model does not):
//   GET    /v1/datastores                          the served datastores and their counts
//   POST   /v1/datastores/{name}/documents         {"text", "id"?, "metadata"?} -> retrievable by the next request
//   DELETE /v1/datastores/{name}/documents/{id}    never retrieved again
// Each update is logged durably before it is acknowledged (src/retrieval/wal.ts).
import { randomUUID } from 'node:crypto';
import type { Express, Request, Response } from 'express';

import { describe, invalidParam, RequestError } from '../engine/errors';
import { LIMITS } from '../engine/params';
import type { RuntimeHolder } from '../engine/runtime';
import { DatastoreError, type Datastore } from '../retrieval/datastore';
import type { Datastores } from '../retrieval/registry';
import { jsonBody } from './body';

const FIELDS = new Set(['text', 'id', 'metadata']);

/** Runs an update; a folder that went away or became unwritable is the datastore's state, not a server crash. */
function update<T>(name: string, store: Datastore, fn: () => T): T {
  try {
    const out = fn();
    store.maybeCompact();
    return out;
  } catch (e) {
    if (e instanceof RequestError) throw e;
    if (e instanceof DatastoreError) throw new RequestError('invalid_parameter', e.message, 'id');
    throw new RequestError('datastore_unavailable', `datastore ${JSON.stringify(name)} could not be updated: ${(e as Error).message}`);
  }
}

export function datastoreRoutes(app: Express, holder: RuntimeHolder, stores: Datastores | undefined, bodyLimit: number): void {
  const storeOf = (name: string) => {
    holder.require();
    if (!stores) throw new RequestError('datastore_not_found', 'this server serves no datastore (start it with --datastore NAME=DIR)');
    return stores.get(name);
  };
  app.get('/v1/datastores', (_req: Request, res: Response) => {
    holder.require();
    res.json({ object: 'list', data: stores?.list() ?? [] });
  });
  app.post('/v1/datastores/:name/documents', jsonBody(bodyLimit), (req: Request, res: Response) => {
    const name = String(req.params.name);
    const store = storeOf(name);
    const body = req.body as Record<string, unknown>;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidParam('body', 'a JSON object {text, id?, metadata?}', body);
    for (const k of Object.keys(body)) {
      if (!FIELDS.has(k)) throw new RequestError('unknown_parameter', `Unrecognized request argument supplied: ${JSON.stringify(k)}`, k);
    }
    if (typeof body.text !== 'string' || body.text === '') throw invalidParam('text', 'a non-empty string', body.text);
    const id = body.id ?? `doc-${randomUUID()}`;
    if (typeof id !== 'string' || id === '' || id.length > LIMITS.idLength || /[\u0000-\u001f#]/.test(id)) {
      throw invalidParam('id', `a string of 1 to ${LIMITS.idLength} characters without control characters or "#"`, id);
    }
    const metadata = body.metadata ?? null;
    if (metadata !== null && (typeof metadata !== 'object' || Array.isArray(metadata))) throw invalidParam('metadata', 'an object', metadata);
    const chunks = update(name, store, () => store.add(id, body.text as string, metadata as Record<string, unknown> | null));
    res.json({ object: 'datastore.document', datastore: name, id, chunks });
  });
  app.delete('/v1/datastores/:name/documents/:id', (req: Request, res: Response) => {
    const name = String(req.params.name);
    const id = String(req.params.id);
    const store = storeOf(name);
    if (!update(name, store, () => store.delete(id))) {
      throw new RequestError('document_not_found', `datastore ${JSON.stringify(name)} has no document ${describe(id)}`, 'id');
    }
    res.json({ object: 'datastore.document', datastore: name, id, deleted: true });
  });
}

// The datastores tests serve, written in one call.
import { Datastore, type CreateOptions } from '../src/retrieval/datastore';

/** A compacted datastore in `dir` holding `documents` ([id, text] pairs, in order). */
export function writeDatastore(dir: string, o: CreateOptions, documents: Iterable<[string, string]>): Datastore {
  const ds = Datastore.create(dir, o);
  for (const [id, text] of documents) ds.add(id, text);
  ds.compact();
  return ds;
}

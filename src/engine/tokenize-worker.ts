// The worker thread of src/engine/tokenize-offthread.ts: loads the model
// folder's tokenizer with the same loadTokenizer as the served one (so the ids
// are identical) and encodes the texts of each message in order. A folder
// that fails to load throws here, which ends the worker: its owner rejects
// what was pending.
import { parentPort, workerData } from 'node:worker_threads';

import { loadTokenizer } from './tokenizer';

export interface EncodeMessage {
  id: number;
  texts: string[];
  /** Tokenizer.encode's option (absent: the tokenizer's default). */
  addSpecialTokens?: boolean;
}

/** Each text's ids as a transferred Uint32Array buffer, or the encoder's error message. */
export type EncodeReply = { id: number; ids: ArrayBuffer[] } | { id: number; error: string };

const tokenizer = loadTokenizer((workerData as { dir: string }).dir);

parentPort!.on('message', ({ id, texts, addSpecialTokens }: EncodeMessage) => {
  let reply: EncodeReply;
  try {
    reply = { id, ids: texts.map((t) => Uint32Array.from(tokenizer.encode(t, { addSpecialTokens })).buffer) };
  } catch (e) {
    reply = { id, error: (e as Error)?.message ?? String(e) };
  }
  parentPort!.postMessage(reply, 'ids' in reply ? reply.ids : []);
});

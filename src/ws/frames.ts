// Frame codecs of /v1/stream: JSON text frames and protobuf binary frames
// (proto/roost.proto). Both decode to the same plain message object (JSON field
// names), which src/engine/params.ts validates; both encode the same events.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';

import { ErrorCode, RequestError } from '../engine/errors';
import type { Novelty } from '../novelty/corpus';
import { packageRoot } from '../package-root';

type Passage = { id: string; score: number; text?: string };
/** A retro model's neighbours of one chunk (src/retrieval/retro.ts ChunkRetrieval). */
type ChunkPassages = { chunk: number; passages: Passage[] };

export type ServerEvent =
  | {
      type: 'token';
      id: string;
      text: string;
      token: number;
      logprob: number;
      top_logprobs?: Record<string, number>;
      /** retro with `retrieval`: the chunks retrieved since the request's previous event (absent: none). */
      retrieved?: ChunkPassages[];
    }
  | {
      type: 'done';
      id: string;
      finish_reason: string;
      usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
      /**
       * With `retrieval`: the passages laid before the prompt, best first; on a
       * retro model, the chunks retrieved since the last token event (absent: none).
       */
      retrieved?: Passage[] | ChunkPassages[];
      /** With `novelty`: RAVEN's measures of the generated text (src/novelty/corpus.ts). */
      novelty?: Novelty;
    }
  | { type: 'error'; id?: string; message: string; code: ErrorCode; param?: string | null };

let root: protobuf.Root | undefined;

/** The parsed proto/roost.proto (field names kept in snake_case, as in JSON). */
export function protoRoot(): protobuf.Root {
  if (!root) {
    const file = path.join(packageRoot(), 'proto', 'roost.proto');
    root = protobuf.parse(fs.readFileSync(file, 'utf8'), { keepCase: true }).root;
  }
  return root;
}

const types = () => ({
  client: protoRoot().lookupType('roost.ClientMessage'),
  server: protoRoot().lookupType('roost.ServerMessage'),
});

export function decodeText(data: Buffer | string): unknown {
  const text = typeof data === 'string' ? data : data.toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new RequestError('invalid_json', `the frame is not valid JSON: ${(e as Error).message}`);
  }
}

/** A binary frame as the JSON-shaped message it stands for. */
export function decodeBinary(data: Buffer): unknown {
  const { client } = types();
  let o: Record<string, any>;
  try {
    // oneofs: false, so proto3 `optional` fields do not bring their synthetic `_name` oneof keys.
    o = client.toObject(client.decode(data), { longs: Number, oneofs: false, defaults: false, arrays: false });
  } catch (e) {
    throw new RequestError('invalid_frame', `the frame is not a roost.ClientMessage: ${(e as Error).message}`);
  }
  if (o.cancel) return { type: 'cancel', ...o.cancel };
  if (o.chat) return { type: 'chat', ...o.chat };
  if (!o.request) throw new RequestError('invalid_frame', 'the frame is a roost.ClientMessage with none of request, chat or cancel set');
  const { text, tokens, ...rest } = o.request as Record<string, any>;
  const msg: Record<string, unknown> = { type: 'request', ...rest };
  if (text !== undefined) msg.prompt = text;
  else if (tokens !== undefined) msg.prompt = tokens.ids ?? [];
  return msg;
}

export function encodeText(ev: ServerEvent): string {
  return JSON.stringify(ev);
}

export function encodeBinary(ev: ServerEvent): Uint8Array {
  const { server } = types();
  const { type, ...rest } = ev;
  const body: Record<string, unknown> = rest;
  for (const k of Object.keys(body)) if (body[k] === null || body[k] === undefined) delete body[k];
  // DoneEvent.retrieved is a list of Passage: a retro model's per-chunk entries go in retrieved_chunks.
  if (type === 'done' && isChunkList(body.retrieved)) {
    body.retrieved_chunks = body.retrieved;
    delete body.retrieved;
  }
  return server.encode(server.fromObject({ [type]: body })).finish();
}

function isChunkList(x: unknown): boolean {
  return Array.isArray(x) && x.length > 0 && typeof x[0] === 'object' && x[0] !== null && 'chunk' in x[0];
}

/** Decodes a server event from a binary frame (clients and tests). */
export function decodeServerBinary(data: Uint8Array): ServerEvent {
  const { server } = types();
  const o = server.toObject(server.decode(data), { longs: Number, oneofs: true, defaults: true }) as Record<string, any>;
  const event = { type: o.kind, ...o[o.kind] };
  // The JSON form has one `retrieved`: a retro done event's per-chunk entries are it.
  if (event.type === 'done') {
    if (event.retrieved_chunks.length > 0) event.retrieved = event.retrieved_chunks;
    delete event.retrieved_chunks;
  }
  // A repeated field has no "absent" on the wire: no passages reads as the JSON form's missing `retrieved`.
  if (Array.isArray(event.retrieved) && event.retrieved.length === 0) delete event.retrieved;
  // Unset optional fields read as the JSON form's nulls; no novelty reads as its missing field.
  if (event.novelty === null || event.novelty === undefined) delete event.novelty;
  else {
    event.novelty.ngrams = event.novelty.ngrams.map((g: { n: number; novel?: number | null }) => ({ n: g.n, novel: g.novel ?? null }));
    event.novelty.longest_copy ??= null;
  }
  return event as ServerEvent;
}

/** Encodes a client message from its JSON form (clients and tests). */
export function encodeClientBinary(msg: Record<string, any>): Uint8Array {
  const { client } = types();
  const { type, prompt, ...rest } = msg;
  const body: Record<string, unknown> = { ...rest };
  if (typeof prompt === 'string') body.text = prompt;
  else if (Array.isArray(prompt)) body.tokens = { ids: prompt };
  return client.encode(client.fromObject({ [type]: body })).finish();
}

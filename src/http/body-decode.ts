// A request body's bytes -> strict UTF-8 -> JSON, written as one
// self-contained function so that the same code runs inline for small bodies
// and in a worker thread for large ones (an 8 MiB body takes tens of
// milliseconds to decode and parse: off the event loop, /health and every
// stream keep their pace). Invalid UTF-8 is refused rather than silently
// replaced with U+FFFD (with the offset of the first bad byte), and a JSON
// syntax error says where.
import { Worker } from 'node:worker_threads';

export type DecodedBody = { value: unknown } | { invalidUtf8At: number } | { syntaxError: string };

/** Self-contained (it is also the worker's source): uses only globals. */
export function decodeJsonBody(bytes: Uint8Array): DecodedBody {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    // The longest valid prefix, by bisection (a valid prefix may end mid-character: decode in stream mode).
    let lo = 0;
    let hi = bytes.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
        lo = mid;
      } catch {
        hi = mid - 1;
      }
    }
    return { invalidUtf8At: lo };
  }
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { syntaxError: (e as Error).message };
  }
}

/** Bodies at least this large are decoded in the worker. */
export const OFF_THREAD_BYTES = 256 << 10;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const decodeJsonBody = ${decodeJsonBody.toString()};
parentPort.on('message', ({ id, bytes }) => parentPort.postMessage({ id, result: decodeJsonBody(new Uint8Array(bytes)) }));
`;

let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, { resolve: (r: DecodedBody) => void; reject: (e: Error) => void }>();

function bodyWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.on('message', ({ id, result }: { id: number; result: DecodedBody }) => {
    pending.get(id)?.resolve(result);
    pending.delete(id);
    if (pending.size === 0) w.unref();
  });
  w.on('error', (e) => {
    worker = undefined;
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  });
  return (worker = w);
}

/** decodeJsonBody, off the event loop when the body is large. The buffer is handed over (do not use it after). */
export function decodeJsonBodyAsync(buf: Buffer): Promise<DecodedBody> {
  if (buf.length < OFF_THREAD_BYTES) return Promise.resolve(decodeJsonBody(buf));
  return new Promise((resolve, reject) => {
    const id = nextId++;
    // Referenced only while a body is in it: an idle worker never keeps a process alive.
    if (pending.size === 0) bodyWorker().ref();
    pending.set(id, { resolve, reject });
    // A body from readBody owns its memory (Buffer.concat), so it can be transferred without a copy.
    const bytes = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength ? buf.buffer : buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    bodyWorker().postMessage({ id, bytes }, [bytes as ArrayBuffer]);
  });
}

// A large JSON response written piece by piece: a completion with log-probs
// can be tens of megabytes, and JSON.stringify of the whole would hold the
// event loop and a second copy of it in memory. Each choice is serialized
// alone and written with backpressure (a slow reader pauses the writing, not
// the server). The bytes are the same as res.json of the whole object.
import { once } from 'node:events';
import type { Response } from 'express';

/**
 * Writes JSON.stringify({...head, [key]: items, ...tail}) to `res` with one
 * write per item. Resolves when written (or when the client went away).
 */
export async function writeJsonList(res: Response, head: object, key: string, items: unknown[], tail: object): Promise<void> {
  res.status(200);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  const open = JSON.stringify({ ...head, [key]: [] });
  const close = JSON.stringify(tail);
  const write = async (text: string) => {
    if (res.destroyed) return;
    if (!res.write(text)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
  };
  // `{...,"key":[` + items + `]` + `,...}` (tail's own braces dropped).
  await write(open.slice(0, -2));
  for (let i = 0; i < items.length; i++) await write((i > 0 ? ',' : '') + JSON.stringify(items[i]));
  res.end(close === '{}' ? ']}' : `],${close.slice(1)}`);
}

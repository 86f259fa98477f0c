// The datastore's write-ahead log: one line per update, `<sha256 prefix> <json>\n`,
// appended with a single write and fsync'd before the update is applied in
// memory or acknowledged. A process killed mid-append leaves at most one torn
// last line; reading stops at the first line that does not verify and cuts
// the file there, so the log always holds exactly the updates that completed.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

export type WalRecord =
  | { op: 'add'; id: string; text: string; metadata: Record<string, unknown> | null }
  | { op: 'delete'; id: string };

const digest = (json: string) => createHash('sha256').update(json).digest('hex').slice(0, 16);

/** The records of `file` that verify (none if it does not exist); a torn tail is cut off. */
export function readWal(file: string): WalRecord[] {
  if (!fs.existsSync(file)) return [];
  const buf = fs.readFileSync(file);
  const records: WalRecord[] = [];
  let good = 0;
  for (let start = 0; start < buf.length; ) {
    const nl = buf.indexOf(0x0a, start);
    if (nl < 0) break;
    const line = buf.toString('utf8', start, nl);
    const sp = line.indexOf(' ');
    const json = line.slice(sp + 1);
    if (sp !== 16 || digest(json) !== line.slice(0, 16)) break;
    try {
      records.push(JSON.parse(json) as WalRecord);
    } catch {
      break;
    }
    start = good = nl + 1;
  }
  if (good < buf.length) fs.truncateSync(file, good);
  return records;
}

/** Appends one record durably (write + fsync). */
export function appendWal(file: string, record: WalRecord): void {
  const json = JSON.stringify(record);
  const fd = fs.openSync(file, 'a');
  try {
    fs.writeSync(fd, `${digest(json)} ${json}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

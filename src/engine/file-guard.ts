// Files opened from a path that someone else chose (a model folder, an
// adapter folder named in a request, `roost eval --file`): each must be a
// regular file of bounded size before a byte of it is read. The open is
// non-blocking, so a FIFO or a device answers at once instead of hanging the
// thread (and, on the server, the event loop); the size comes from fstat of
// the same descriptor, so what is checked is what is read. Messages name the
// file and the problem, never its bytes.
import * as fs from 'node:fs';

/** A file that may not be read; the message names it and why. */
export class FileGuardError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FileGuardError';
  }
}

const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK;

function kind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function check(file: string, st: fs.Stats, maxBytes: number): void {
  if (!st.isFile()) throw new FileGuardError(`${file}: not a regular file (${kind(st)})`);
  if (st.size > maxBytes) throw new FileGuardError(`${file}: ${st.size} bytes, more than the limit of ${maxBytes}`);
}

function openError(file: string, e: unknown): FileGuardError {
  const err = e as NodeJS.ErrnoException;
  return new FileGuardError(`${file}: cannot open: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`);
}

/** The whole of a regular file of at most maxBytes, read off the event loop. */
export async function readGuardedFile(file: string, maxBytes: number): Promise<Buffer> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, OPEN_FLAGS);
  } catch (e) {
    throw openError(file, e);
  }
  try {
    const st = await fh.stat();
    check(file, st, maxBytes);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    // A file that grows while read is cut at its checked size; one that shrinks ends early.
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/** Opens `file` without blocking, checks it (check()) and hands the open fd to `use`; closes it after. */
function withCheckedFdSync<T>(file: string, maxBytes: number, use: (fd: number, st: fs.Stats) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(file, OPEN_FLAGS);
  } catch (e) {
    throw openError(file, e);
  }
  try {
    const st = fs.fstatSync(fd);
    check(file, st, maxBytes);
    return use(fd, st);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * readGuardedFile for synchronous loaders (the tokenizer files of a model
 * folder, read once at start-up): still never waits on a FIFO or reads an
 * unbounded device, only a bounded regular file.
 */
export function readGuardedFileSync(file: string, maxBytes: number): Buffer {
  return withCheckedFdSync(file, maxBytes, (fd, st) => {
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  });
}

/** The check alone, nothing read (for files the engine maps itself). */
export function checkGuardedFileSync(file: string, maxBytes: number): void {
  withCheckedFdSync(file, maxBytes, () => undefined);
}

/**
 * JSON.parse for file contents. V8's syntax errors quote the text they choke
 * on, which for a path pointing elsewhere (/etc/passwd) would echo its bytes:
 * keep only the position.
 */
export function parseJsonFile(file: string, buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (e) {
    const at = /position (\d+)/.exec((e as Error).message);
    throw new FileGuardError(`${file}: invalid JSON${at ? ` (syntax error at character ${at[1]})` : ''}`);
  }
}

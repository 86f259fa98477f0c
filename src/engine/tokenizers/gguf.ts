// The tokenizer of a GGUF file (`--model FILE.gguf`, or model.gguf in a folder
// without tokenizer files): llama.cpp's GPT-2 vocabulary (tokenizer.ggml.model
// "gpt2": tokenizer.ggml.tokens, tokenizer.ggml.merges, token types) built into
// the tokenizer.json HuggingFace writes for gpt2 (hf.ts gpt2TokenizerJson), so
// the same library tokenizes. Only the metadata is read here, bounded: the
// engine's reader (cpp/gguf.cpp) validates the whole file, tensors included.
import * as fs from 'node:fs';

import { FileGuardError } from '../file-guard';
import { gpt2TokenizerJson, HfTokenizer } from './hf';
import { TokenizerError } from './types';

/** The most of a GGUF file read for its metadata (GPT-2's is ~2 MB; 256k-token vocabularies ~10 MB). */
const GGUF_METADATA_MAX_BYTES = 64 << 20;

type Value = number | bigint | string | boolean | Value[];

/** Metadata of a GGUF file (v2/v3), key -> value; numeric arrays are skipped (undefined) unless int token types. */
export function readGgufMetadata(file: string): Map<string, Value> {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    throw new TokenizerError('E_CHECKPOINT', `${file}: cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let buf: Buffer;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new TokenizerError('E_CHECKPOINT', `${file}: not a regular file`);
    buf = Buffer.alloc(Math.min(st.size, GGUF_METADATA_MAX_BYTES));
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    buf = buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
  const bad = (what: string): never => {
    throw new TokenizerError('E_CHECKPOINT', `${file}: ${what}`);
  };
  let p = 0;
  const need = (n: number, what: string) => {
    if (n > buf.length - p) bad(`truncated or corrupt: ${what} at byte ${p} runs past the metadata read (${buf.length} bytes)`);
  };
  const u32 = (what: string) => (need(4, what), (p += 4), buf.readUInt32LE(p - 4));
  const u64 = (what: string) => {
    need(8, what);
    const v = buf.readBigUInt64LE(p);
    p += 8;
    if (v > BigInt(buf.length)) bad(`${what} is ${v}, more than the file holds`);
    return Number(v);
  };
  const str = (what: string) => {
    const n = u64(`${what} length`);
    need(n, what);
    p += n;
    return buf.toString('utf8', p - n, p);
  };
  const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const scalar = (type: number, what: string): Value => {
    if (type === 8) return str(what);
    const size = SIZES[type];
    if (size === undefined) bad(`${what}: unknown value type ${type}`);
    need(size, what);
    p += size;
    const at = p - size;
    switch (type) {
      case 0: return buf.readUInt8(at);
      case 1: return buf.readInt8(at);
      case 2: return buf.readUInt16LE(at);
      case 3: return buf.readInt16LE(at);
      case 4: return buf.readUInt32LE(at);
      case 5: return buf.readInt32LE(at);
      case 6: return buf.readFloatLE(at);
      case 7: return buf.readUInt8(at) !== 0;
      case 10: return buf.readBigUInt64LE(at);
      case 11: return buf.readBigInt64LE(at);
      default: return buf.readDoubleLE(at);
    }
  };
  need(8, 'header');
  if (buf.toString('latin1', 0, 4) !== 'GGUF') bad('no GGUF magic at byte 0: not a GGUF file');
  p = 4;
  const version = u32('version');
  if (version !== 2 && version !== 3) bad(`GGUF version ${version} is not supported (2, 3)`);
  need(8, 'tensor count');
  p += 8;  // tensors are the engine's to read
  const nKv = u64('metadata count');
  const kv = new Map<string, Value>();
  for (let i = 0; i < nKv; i++) {
    const key = str(`metadata key ${i}`);
    if (kv.has(key)) bad(`duplicate metadata key ${key}`);
    const type = u32(`metadata ${key} type`);
    if (type !== 9) {
      kv.set(key, scalar(type, `metadata ${key}`));
      continue;
    }
    const elem = u32(`metadata ${key} element type`);
    const count = u64(`metadata ${key} length`);
    if (elem === 9) bad(`metadata ${key}: arrays of arrays are not supported`);
    const items: Value[] = [];
    for (let j = 0; j < count; j++) items.push(scalar(elem, `metadata ${key}[${j}]`));
    kv.set(key, items);
  }
  return kv;
}

function strings(kv: Map<string, Value>, key: string, file: string, required: boolean): string[] {
  const v = kv.get(key);
  if (v === undefined && !required) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
    throw new TokenizerError('E_CHECKPOINT', `${file}: metadata ${key} ${v === undefined ? 'is missing' : 'is not an array of strings'}`);
  }
  return v as string[];
}

function tokenId(kv: Map<string, Value>, key: string, vocabSize: number, file: string): number | undefined {
  const v = kv.get(key);
  if (v === undefined) return undefined;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= vocabSize) {
    throw new TokenizerError('E_CHECKPOINT', `${file}: metadata ${key} must be a token id below ${vocabSize}`);
  }
  return n;
}

/**
 * The GPT-2 BPE tokenizer of a GGUF file. `dir`: what Tokenizer.dir reports (the
 * file itself, or the model folder holding model.gguf), for loadTokenizer to reload.
 */
export function loadGgufTokenizer(file: string, dir: string): HfTokenizer {
  let kv: Map<string, Value>;
  try {
    kv = readGgufMetadata(file);
  } catch (e) {
    if (e instanceof FileGuardError) throw new TokenizerError('E_CHECKPOINT', e.message);
    throw e;
  }
  const model = kv.get('tokenizer.ggml.model');
  if (model !== 'gpt2') {
    throw new TokenizerError(
      'E_CHECKPOINT',
      `${file}: tokenizer.ggml.model is ${JSON.stringify(model ?? null)}; only GPT-2 BPE vocabularies ("gpt2") are built from GGUF ` +
        'metadata (put the model in a folder with its tokenizer.json beside model.gguf and config.json)',
    );
  }
  const tokens = strings(kv, 'tokenizer.ggml.tokens', file, true);
  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => {
    if (Object.prototype.hasOwnProperty.call(vocab, t)) {
      throw new TokenizerError('E_CHECKPOINT', `${file}: tokenizer.ggml.tokens holds ${JSON.stringify(t)} twice (ids ${vocab[t]} and ${id})`);
    }
    vocab[t] = id;
  });
  const merges = strings(kv, 'tokenizer.ggml.merges', file, false).map((m, i): [string, string] => {
    const parts = m.split(' ');
    if (parts.length !== 2) throw new TokenizerError('E_CHECKPOINT', `${file}: tokenizer.ggml.merges[${i}] is not two tokens separated by one space`);
    return [parts[0], parts[1]];
  });
  // llama.cpp's token type 3 (CONTROL) marks special tokens such as <|endoftext|>.
  const types = kv.get('tokenizer.ggml.token_type');
  const special = Array.isArray(types) ? tokens.map((_, id) => types[id] === 3) : tokens.map((t) => t === '<|endoftext|>');
  const eos = tokenId(kv, 'tokenizer.ggml.eos_token_id', tokens.length, file);
  const json = gpt2TokenizerJson(vocab, merges, tokens.flatMap((t, id) => (special[id] ? [{ id, content: t }] : [])));
  return new HfTokenizer('gguf', dir, json, {}, eos === undefined ? {} : { eos_token_id: eos }, `${file} (GGUF metadata)`);
}

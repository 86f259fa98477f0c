// Tokenizers of a checkpoint folder (docs/spec.md, "Checkpoint
// folder"): tokenizer.json, GPT-2 vocab.json + merges.txt, or the byte
// tokenizer named by config.json. loadTokenizer picks by what is there.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { FileGuardError, parseJsonFile, readGuardedFileSync } from './file-guard';
import { ByteTokenizer } from './tokenizers/bytes';
import { loadGgufTokenizer } from './tokenizers/gguf';
import { loadGpt2Bpe, loadTokenizerJson } from './tokenizers/hf';
import { Tokenizer, TokenizerError } from './tokenizers/types';

/** A model given as one GGUF file (`--model FILE.gguf`): a regular file named *.gguf. */
export function isGgufFile(p: string): boolean {
  try {
    return p.toLowerCase().endsWith('.gguf') && fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

export { ByteTokenizer } from './tokenizers/bytes';
export { HfTokenizer } from './tokenizers/hf';
export { TokenizerError } from './tokenizers/types';
export type { EncodeOptions, Tokenizer, TokenizerKind } from './tokenizers/types';

/** The engine reads at most this much of config.json (cpp/config.cpp kMaxConfigBytes). */
const CONFIG_MAX_BYTES = 16 << 20;

function readConfig(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) return {};
  let v: unknown;
  try {
    v = parseJsonFile(file, readGuardedFileSync(file, CONFIG_MAX_BYTES));
  } catch (e) {
    if (e instanceof FileGuardError) throw new TokenizerError('E_CONFIG', e.message);
    throw e;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new TokenizerError('E_CONFIG', `${file}: must hold a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * The tokenizer of a checkpoint folder or GGUF file. Order: config.json
 * `"tokenizer_class": "bytes"`, then tokenizer.json, then vocab.json +
 * merges.txt, then model.gguf's GPT-2 vocabulary; a .gguf file: its vocabulary. Throws TokenizerError (code E_CHECKPOINT / E_CONFIG) naming the
 * folder or file.
 */
export function loadTokenizer(modelDir: string): Tokenizer {
  if (isGgufFile(modelDir)) return loadGgufTokenizer(modelDir, modelDir);
  if (!fs.existsSync(modelDir) || !fs.statSync(modelDir).isDirectory()) {
    throw new TokenizerError('E_CHECKPOINT', `${modelDir}: no such model folder or .gguf file`);
  }
  const config = readConfig(modelDir);
  const cls = config.tokenizer_class;
  if (cls === 'bytes') return new ByteTokenizer(modelDir, config, path.join(modelDir, 'config.json'));
  if (fs.existsSync(path.join(modelDir, 'tokenizer.json'))) return loadTokenizerJson(modelDir, config);
  const hasVocab = fs.existsSync(path.join(modelDir, 'vocab.json'));
  const hasMerges = fs.existsSync(path.join(modelDir, 'merges.txt'));
  if (hasVocab && hasMerges) return loadGpt2Bpe(modelDir, config);
  if (hasVocab !== hasMerges) {
    throw new TokenizerError(
      'E_CHECKPOINT',
      `${modelDir}: has ${hasVocab ? 'vocab.json but no merges.txt' : 'merges.txt but no vocab.json'}: a GPT-2 tokenizer needs both`,
    );
  }
  // Last: the vocabulary inside model.gguf (docs/models.md, "GGUF").
  if (fs.existsSync(path.join(modelDir, 'model.gguf'))) return loadGgufTokenizer(path.join(modelDir, 'model.gguf'), modelDir);
  throw new TokenizerError(
    'E_CHECKPOINT',
    `${modelDir}: no tokenizer found: expected tokenizer.json, vocab.json + merges.txt, ` +
      `or "tokenizer_class": "bytes" in config.json` +
      (typeof cls === 'string' && cls !== '' ? ` (config.json names tokenizer_class ${JSON.stringify(cls)})` : ''),
  );
}

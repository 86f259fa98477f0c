// HuggingFace tokenizers through the npm package @huggingface/tokenizers (its
// CommonJS build): a tokenizer.json as is, or GPT-2's vocab.json + merges.txt
// turned into the equivalent tokenizer.json object in memory. No BPE here:
// the library does it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';

import { FileGuardError, parseJsonFile, readGuardedFileSync } from '../file-guard';
import { byteLevelTokenBytes } from './byte_level';
import { stopIdsOf } from './stop_ids';
import { EncodeOptions, Tokenizer, TokenizerError, TokenizerKind } from './types';

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

/** The parts of tokenizer.json this file reads; the library reads the rest. */
export interface TokenizerJson {
  added_tokens?: AddedTokenJson[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  post_processor?: unknown;
  decoder?: { type?: string; decoders?: Array<{ type?: string }>; [k: string]: unknown } | null;
  model: { type?: string; vocab?: unknown; merges?: unknown; [k: string]: unknown };
  [k: string]: unknown;
}

const utf8 = new TextEncoder();
const NO_BYTES = new Uint8Array(0);

function isByteLevelDecoder(decoder: TokenizerJson['decoder']): boolean {
  if (!decoder) return false;
  if (decoder.type === 'ByteLevel') return true;
  return decoder.type === 'Sequence' && (decoder.decoders ?? []).some((d) => d?.type === 'ByteLevel');
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  readonly stopIds: readonly number[];
  readonly specialTokens: Readonly<Record<string, number>>;
  private readonly tok: HfLibTokenizer;
  private readonly byteLevel: boolean;
  private readonly addedContent = new Map<number, string>();
  private readonly decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  /**
   * Set when tokenizer_config.json gives add_bos_token / add_eos_token: HF's
   * Llama tokenizers rebuild their post-processor from those flags, so encode
   * adds exactly these ids around the text (else tokenizer.json's
   * post-processor decides).
   */
  private readonly around?: { bos?: number; eos?: number };
  /** Set for ByteLevel tokenizers only (see Tokenizer.tokenBytes). */
  readonly tokenBytes?: (id: number) => Uint8Array;
  /** Set for ByteLevel tokenizers without a normalizer, where each token covers exactly its bytes of the input. */
  readonly maxInputBytesPerToken?: number;

  /**
   * json: a tokenizer.json object; tokenizerConfig: tokenizer_config.json or {};
   * modelConfig: config.json or {} (eos_token_id, special_tokens).
   */
  constructor(
    readonly kind: TokenizerKind,
    readonly dir: string,
    json: TokenizerJson,
    tokenizerConfig: Record<string, unknown>,
    modelConfig: Record<string, unknown>,
    source: string,
  ) {
    const full = {
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      ...json,
      added_tokens: json.added_tokens ?? [],
    };
    try {
      this.tok = new HfLibTokenizer(full, tokenizerConfig);
    } catch (e) {
      throw new TokenizerError('E_CHECKPOINT', `${source}: not a tokenizer this runtime supports: ${(e as Error).message}`);
    }
    this.byteLevel = isByteLevelDecoder(json.decoder);
    if (this.byteLevel) this.tokenBytes = (id) => this.bytesOf(id);

    const special: Record<string, number> = {};
    for (const t of full.added_tokens) {
      this.addedContent.set(t.id, t.content);
      if (t.special) special[t.content] = t.id;
    }
    // Names the model's config gives (fim_prefix, eos, ...) are kept beside the token texts.
    const named = modelConfig.special_tokens;
    if (named && typeof named === 'object' && !Array.isArray(named)) {
      for (const [name, id] of Object.entries(named as Record<string, unknown>)) {
        if (typeof id === 'number' && Number.isInteger(id)) special[name] = id;
      }
    }
    this.specialTokens = Object.freeze(special);

    let maxId = -1;
    for (const id of this.tok.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
    if (this.byteLevel && full.normalizer === null) {
      let longest = 1;
      for (let id = 0; id < this.vocabSize; id++) longest = Math.max(longest, this.bytesOf(id).length);
      this.maxInputBytesPerToken = longest;
    }

    this.eosId = this.findEos(tokenizerConfig, modelConfig);
    this.stopIds = stopIdsOf(dir, this.eosId, modelConfig);

    const addBos = tokenizerConfig.add_bos_token, addEos = tokenizerConfig.add_eos_token;
    if (typeof addBos === 'boolean' || typeof addEos === 'boolean') {
      const configFile = path.join(dir, 'tokenizer_config.json');
      let bos: number | undefined;
      if (addBos === true) {
        const text = tokenContent(tokenizerConfig.bos_token);
        bos = text !== undefined ? this.tok.token_to_id(text) : undefined;
        if (bos === undefined) {
          throw new TokenizerError('E_CHECKPOINT', `${configFile}: add_bos_token is true but bos_token ${JSON.stringify(tokenizerConfig.bos_token)} is not a token of the tokenizer`);
        }
      }
      if (addEos === true && this.eosId < 0) {
        throw new TokenizerError('E_CHECKPOINT', `${configFile}: add_eos_token is true but the tokenizer has no eos token`);
      }
      this.around = { bos, eos: addEos === true ? this.eosId : undefined };
    }
  }

  private findEos(tokenizerConfig: Record<string, unknown>, modelConfig: Record<string, unknown>): number {
    let eos = modelConfig.eos_token_id;
    if (Array.isArray(eos)) eos = eos[0];
    if (typeof eos === 'number' && Number.isInteger(eos)) return eos;
    const text = tokenContent(tokenizerConfig.eos_token);
    const fromText = text !== undefined ? this.tok.token_to_id(text) : undefined;
    if (fromText !== undefined) return fromText;
    return this.tok.token_to_id('<|endoftext|>') ?? -1;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (options.addSpecialTokens === false) return this.tok.encode(text, { add_special_tokens: false }).ids;
    if (!this.around) return this.tok.encode(text).ids;
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    if (this.around.bos !== undefined) ids.unshift(this.around.bos);
    if (this.around.eos !== undefined) ids.push(this.around.eos);
    return ids;
  }

  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return '';
    if (this.byteLevel) {
      // Exact byte decode (no clean-up of spaces before punctuation).
      const parts: Uint8Array[] = [];
      let n = 0;
      for (let i = 0; i < ids.length; i++) {
        const b = this.bytesOf(ids[i]);
        parts.push(b);
        n += b.length;
      }
      const all = new Uint8Array(n);
      let o = 0;
      for (const p of parts) {
        all.set(p, o);
        o += p.length;
      }
      return this.decoder.decode(all);
    }
    return this.tok.decode(Array.from(ids), { clean_up_tokenization_spaces: false });
  }

  private bytesOf(id: number): Uint8Array {
    const added = this.addedContent.get(id);
    if (added !== undefined) return utf8.encode(added);
    const token = this.tok.id_to_token(id);
    return token === undefined ? NO_BYTES : byteLevelTokenBytes(token);
  }
}

/** The largest tokenizer file read (the biggest published tokenizer.json files are tens of MB). */
const TOKENIZER_FILE_MAX_BYTES = 256 << 20;

/** A tokenizer file, checked to be a bounded regular file (src/engine/file-guard.ts). */
function readFile(file: string): Buffer {
  try {
    return readGuardedFileSync(file, TOKENIZER_FILE_MAX_BYTES);
  } catch (e) {
    if (e instanceof FileGuardError) throw new TokenizerError('E_CHECKPOINT', e.message);
    throw e;
  }
}

function readJson(file: string): unknown {
  const buf = readFile(file);
  try {
    return parseJsonFile(file, buf);
  } catch (e) {
    if (e instanceof FileGuardError) throw new TokenizerError('E_CHECKPOINT', e.message);
    throw e;
  }
}

function readOptionalObject(file: string): Record<string, unknown> {
  if (!fs.existsSync(file)) return {};
  const v = readJson(file);
  if (!v || typeof v !== 'object' || Array.isArray(v)) {
    throw new TokenizerError('E_CHECKPOINT', `${file}: must hold a JSON object`);
  }
  return v as Record<string, unknown>;
}

/** <dir>/tokenizer.json (+ tokenizer_config.json when present). */
export function loadTokenizerJson(dir: string, modelConfig: Record<string, unknown>): HfTokenizer {
  const file = path.join(dir, 'tokenizer.json');
  const json = readJson(file) as TokenizerJson;
  if (!json || typeof json !== 'object' || !json.model || typeof json.model !== 'object') {
    throw new TokenizerError('E_CHECKPOINT', `${file}: has no "model" object`);
  }
  const tokenizerConfig = readOptionalObject(path.join(dir, 'tokenizer_config.json'));
  return new HfTokenizer('tokenizer.json', dir, json, tokenizerConfig, modelConfig, file);
}

/**
 * GPT-2's vocab.json + merges.txt: built into the tokenizer.json HuggingFace
 * writes for gpt2 (BPE, ByteLevel pre-tokenizer without prefix space,
 * ByteLevel decoder, <|endoftext|> as a special added token when in the vocab).
 */
export function loadGpt2Bpe(dir: string, modelConfig: Record<string, unknown>): HfTokenizer {
  const vocabFile = path.join(dir, 'vocab.json');
  const mergesFile = path.join(dir, 'merges.txt');
  const vocab = readJson(vocabFile);
  if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) {
    throw new TokenizerError('E_CHECKPOINT', `${vocabFile}: must map token strings to ids`);
  }
  for (const [token, id] of Object.entries(vocab as Record<string, unknown>)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new TokenizerError('E_CHECKPOINT', `${vocabFile}: id of ${JSON.stringify(token)} must be an integer >= 0`);
    }
  }
  const mergesText = readFile(mergesFile).toString('utf8');
  const merges: Array<[string, string]> = [];
  mergesText.split(/\r?\n/).forEach((line, i) => {
    if (line === '' || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2) {
      throw new TokenizerError('E_CHECKPOINT', `${mergesFile}:${i + 1}: expected two tokens separated by one space`);
    }
    merges.push([parts[0], parts[1]]);
  });
  const eot = (vocab as Record<string, number>)['<|endoftext|>'];
  const json = gpt2TokenizerJson(vocab as Record<string, number>, merges, eot === undefined ? [] : [{ id: eot, content: '<|endoftext|>' }]);
  const tokenizerConfig = readOptionalObject(path.join(dir, 'tokenizer_config.json'));
  return new HfTokenizer('vocab.json+merges.txt', dir, json, tokenizerConfig, modelConfig, `${vocabFile} + ${mergesFile}`);
}

/**
 * The tokenizer.json HuggingFace writes for gpt2 from a vocabulary, its merges
 * and its special tokens (<|endoftext|>): vocab.json + merges.txt above, and
 * GGUF metadata (gguf.ts).
 */
export function gpt2TokenizerJson(
  vocab: Record<string, number>,
  merges: Array<[string, string]>,
  specials: Array<{ id: number; content: string }>,
): TokenizerJson {
  return {
    version: '1.0',
    added_tokens: specials.map(
      ({ id, content }) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }) as AddedTokenJson,
    ),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

// What every tokenizer offers the engine layer, whatever its files.

export interface EncodeOptions {
  /** Add the tokenizer's special tokens around the text (default true). */
  addSpecialTokens?: boolean;
}

export type TokenizerKind = 'tokenizer.json' | 'vocab.json+merges.txt' | 'gguf' | 'bytes';

export interface Tokenizer {
  readonly kind: TokenizerKind;
  /** The folder it was loaded from (for messages). */
  readonly dir: string;
  /** 1 + the largest id the tokenizer knows (the model's vocab_size may be larger, padded). */
  readonly vocabSize: number;
  /** End-of-sequence id, -1 when there is none. */
  readonly eosId: number;
  /** Every id that ends a generation: eosId and the eos_token_id lists of config.json / generation_config.json. */
  readonly stopIds: readonly number[];
  /** Special tokens, name (or token text) -> id. */
  readonly specialTokens: Readonly<Record<string, number>>;
  /**
   * Text -> ids, as the reference tokenizer does it. addSpecialTokens false
   * leaves out what the tokenizer adds around the text (a BOS, say): a
   * rendered chat template writes its own (HF's add_special_tokens).
   */
  encode(text: string, options?: EncodeOptions): number[];
  /**
   * ids -> text. Lossy where the ids end inside a multi-byte UTF-8 character
   * (U+FFFD there); stream with Detokenizer instead.
   */
  decode(ids: ArrayLike<number>): string;
  /**
   * The raw bytes one token stands for, for byte-level tokenizers (GPT-2
   * ByteLevel BPE, the bytes tokenizer). Special tokens give the UTF-8 of
   * their text (HF) or no bytes (bytes tokenizer: they have no text).
   * Absent for tokenizers whose tokens are not byte strings.
   */
  tokenBytes?(id: number): Uint8Array;
  /**
   * The most bytes of input text one token can stand for, where that is known
   * exactly (1 for the bytes tokenizer; the longest token for byte-level BPE
   * without a normalizer): a text of B bytes encodes to at least
   * ceil(B / this) tokens, so a prompt can be refused by its length before it
   * is tokenized (src/engine/request-cost.ts). Absent when unknown.
   */
  readonly maxInputBytesPerToken?: number;
}

/** A tokenizer file is missing, unreadable or malformed. */
export class TokenizerError extends Error {
  readonly code: 'E_CHECKPOINT' | 'E_CONFIG';
  constructor(code: 'E_CHECKPOINT' | 'E_CONFIG', message: string) {
    super(message);
    this.name = 'TokenizerError';
    this.code = code;
  }
}

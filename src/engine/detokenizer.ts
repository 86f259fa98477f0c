// Incremental, UTF-8-safe detokenization: tokens go in one at a time, text
// comes out only as complete characters, so a multi-byte character split
// across tokens (byte-level BPE does that for CJK and emoji) is never emitted
// half, as U+FFFD.
//
// Byte-level tokenizers (GPT-2 ByteLevel BPE, the bytes tokenizer) expose
// tokenBytes(): their tokens are byte strings, streamed through a
// TextDecoder that holds an incomplete sequence back until it completes.
// Other tokenizers are decoded by text difference over a short window of
// ids (the method of HF text-generation-inference), holding back while the
// window's text ends in U+FFFD.
import { Tokenizer } from './tokenizer';

export interface DetokenizerOptions {
  /** Drop special tokens (eos, FIM markers, ...) from the text (default true). */
  skipSpecialTokens?: boolean;
}

const REPLACEMENT = '\uFFFD';

export class Detokenizer {
  private readonly special: ReadonlySet<number>;
  private readonly bytes?: (id: number) => Uint8Array;
  private readonly stream = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  // Text-difference mode:
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(
    private readonly tokenizer: Tokenizer,
    options: DetokenizerOptions = {},
  ) {
    this.special = new Set(options.skipSpecialTokens === false ? [] : Object.values(tokenizer.specialTokens));
    this.bytes = tokenizer.tokenBytes?.bind(tokenizer);
  }

  /** Adds one token; returns the text it completes ('' while a character is incomplete). */
  push(id: number): string {
    if (this.special.has(id)) return '';
    if (this.bytes) return this.stream.decode(this.bytes(id), { stream: true });
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith(REPLACEMENT)) {
      // Keep only the ids from the new prefix on: the window stays short.
      this.ids.splice(0, this.readOffset);
      this.prefixOffset = 0;
      this.readOffset = this.ids.length;
      return full.slice(prefix.length);
    }
    return '';
  }

  /** Adds several tokens; returns the text they complete. */
  pushAll(ids: Iterable<number>): string {
    let out = '';
    for (const id of ids) out += this.push(id);
    return out;
  }

  /**
   * Ends the stream: returns what is still held back. A character left
   * incomplete at the end becomes U+FFFD, as a lossy decode would give it.
   */
  flush(): string {
    if (this.bytes) return this.stream.decode();
    if (this.readOffset >= this.ids.length) return '';
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}

// The byte tokenizer of docs/spec.md: token id = byte value 0..255,
// special tokens from 256 up, named in config.json `special_tokens`. Encoding
// plain text never yields a special token (the text "<eos>" is its bytes), and
// nothing is prepended (no BOS).
import { stopIdsOf } from './stop_ids';
import { Tokenizer, TokenizerError } from './types';

const NO_BYTES = new Uint8Array(0);

export class ByteTokenizer implements Tokenizer {
  readonly kind = 'bytes' as const;
  /** One token per byte of text. */
  readonly maxInputBytesPerToken = 1;
  readonly vocabSize: number;
  readonly eosId: number;
  readonly stopIds: readonly number[];
  readonly specialTokens: Readonly<Record<string, number>>;
  private readonly decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  /** config: the parsed config.json; source names it in messages. */
  constructor(readonly dir: string, config: Record<string, unknown>, source: string) {
    const special: Record<string, number> = {};
    const raw = config.special_tokens;
    if (raw !== undefined && raw !== null) {
      if (typeof raw !== 'object' || Array.isArray(raw)) {
        throw new TokenizerError('E_CONFIG', `${source}: special_tokens must be an object of name -> id`);
      }
      for (const [name, id] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 256) {
          throw new TokenizerError(
            'E_CONFIG',
            `${source}: special_tokens.${name} must be an integer >= 256 (got ${JSON.stringify(id)})`,
          );
        }
        special[name] = id;
      }
    }
    this.specialTokens = Object.freeze(special);
    this.vocabSize = Math.max(256, ...Object.values(special).map((id) => id + 1));
    const eos = config.eos_token_id;
    this.eosId = typeof eos === 'number' && Number.isInteger(eos) ? eos : Array.isArray(eos) && Number.isInteger(eos[0]) ? eos[0] : (special.eos ?? -1);
    this.stopIds = stopIdsOf(dir, this.eosId, config);
  }

  encode(text: string): number[] {
    return Array.from(Buffer.from(text, 'utf8'));
  }

  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id >= 0 && id < 256) bytes.push(id);
    }
    return this.decoder.decode(Uint8Array.from(bytes));
  }

  tokenBytes(id: number): Uint8Array {
    return id >= 0 && id < 256 ? Uint8Array.of(id) : NO_BYTES;
  }
}

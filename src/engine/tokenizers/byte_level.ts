// GPT-2's byte <-> printable-character table (bytes_to_unicode in OpenAI's
// encoder.py): ByteLevel BPE token strings are bytes spelled with these chars.

function buildByteToChar(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b); // '!' .. '~'
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b); // '¡' .. '¬'
  for (let b = 0xae; b <= 0xff; b++) printable.push(b); // '®' .. 'ÿ'
  const table: string[] = new Array(256);
  for (const b of printable) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCharCode(256 + n++);
  }
  return table;
}

/** byte -> char */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** char code -> byte (-1 when the char is not in the table) */
const CHAR_TO_BYTE = new Int16Array(512).fill(-1);
BYTE_TO_CHAR.forEach((c, b) => {
  CHAR_TO_BYTE[c.charCodeAt(0)] = b;
});

const utf8 = new TextEncoder();

/**
 * The bytes a ByteLevel token string stands for. Characters outside the table
 * (never in a well-formed vocabulary) are kept as their own UTF-8.
 */
export function byteLevelTokenBytes(token: string): Uint8Array {
  const out: number[] = [];
  for (const ch of token) {
    const code = ch.codePointAt(0)!;
    const b = code < 512 ? CHAR_TO_BYTE[code] : -1;
    if (b >= 0) out.push(b);
    else out.push(...utf8.encode(ch));
  }
  return Uint8Array.from(out);
}

// The one word splitter of retrieval: lower-cased ASCII words. The BM25 index
// and the embedder (tools/train/embedder.py WORD) both read text through it.
const WORD = /[a-z]+/g;

export function words(text: string): string[] {
  return text.toLowerCase().match(WORD) ?? [];
}

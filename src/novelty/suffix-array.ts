// Suffix array of a symbol sequence (bytes or token ids) by prefix doubling
// with radix sort (Manber & Myers 1993, in the counting-sort form of
// Larsson & Sadakane's description): round k sorts the suffixes by their
// first 2k symbols from the ranks of round k/2, stopping as soon as every
// rank is distinct. O(n log L) for a longest repeat of L symbols (about 9
// rounds on the King James text), in typed arrays: 3 Int32Arrays of n plus
// one of max(n, alphabet). docs/novelty.md says why not SA-IS or a package.

export type Symbols = Uint8Array | Int32Array;

/** The starts of the suffixes of `s` in lexicographic order (a shorter suffix before its extensions). */
export function buildSuffixArray(s: Symbols, alphabet: number): Int32Array {
  const n = s.length;
  const sa = new Int32Array(n);
  if (n === 0) return sa;
  let rank = new Int32Array(n);
  let tmp = new Int32Array(n);
  const second = new Int32Array(n);
  const count = new Int32Array(Math.max(n, alphabet) + 1);

  // Round 0: counting sort by the first symbol; rank = the symbol.
  for (let i = 0; i < n; i++) {
    if (s[i] < 0 || s[i] >= alphabet) throw new RangeError(`symbol ${s[i]} at ${i} is outside 0..${alphabet - 1}`);
    rank[i] = s[i];
    count[s[i]]++;
  }
  for (let c = 1; c <= alphabet; c++) count[c] += count[c - 1];
  for (let i = n - 1; i >= 0; i--) sa[--count[s[i]]] = i;
  let classes = alphabet;

  for (let k = 1; ; k <<= 1) {
    // Order by the second key (rank at i + k; none sorts first), from the previous order.
    let p = 0;
    for (let i = n - k; i < n; i++) if (i >= 0) second[p++] = i;
    for (let j = 0; j < n; j++) if (sa[j] >= k) second[p++] = sa[j] - k;
    // Stable counting sort by the first key.
    count.fill(0, 0, classes + 1);
    for (let i = 0; i < n; i++) count[rank[i]]++;
    for (let c = 1; c <= classes; c++) count[c] += count[c - 1];
    for (let j = n - 1; j >= 0; j--) sa[--count[rank[second[j]]]] = second[j];
    // New ranks: equal while both keys are equal.
    tmp[sa[0]] = 0;
    let r = 0;
    for (let j = 1; j < n; j++) {
      const a = sa[j - 1];
      const b = sa[j];
      const a2 = a + k < n ? rank[a + k] : -1;
      const b2 = b + k < n ? rank[b + k] : -1;
      if (rank[a] !== rank[b] || a2 !== b2) r++;
      tmp[b] = r;
    }
    [rank, tmp] = [tmp, rank];
    classes = r + 1;
    if (classes === n) return sa;
  }
}

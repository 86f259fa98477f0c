// RAVEN's analysis (McCoy et al. 2021, "How much do language models copy
// from their training data?"): the share of novel n-grams, n = 1..10, of a
// model's generations against that of human text of the same length that
// the model never saw, both measured against the model's training corpus;
// and the longest span each copies. `roost novelty` runs it (src/cli/novelty.ts).
import { MAX_NGRAM, type Novelty } from './corpus';

export interface Curve {
  label: string;
  /** Samples measured. */
  samples: number;
  /** n = 1..10: novel n-grams / all n-grams, pooled over the samples. */
  ngrams: Array<{ n: number; novel: number }>;
  /** Longest copied span per sample, in units. */
  longest_copy: { mean: number; median: number; max: number; example: { length: number; offset: number; text: string } | null };
}

/** One curve from each sample's measures and its length in units (the n-gram counts are length - n + 1). */
export function pool(label: string, measured: Array<{ novelty: Novelty; units: number }>): Curve {
  const ngrams = [];
  for (let n = 1; n <= MAX_NGRAM; n++) {
    let novel = 0;
    let total = 0;
    for (const { novelty, units } of measured) {
      const grams = units - n + 1;
      const share = novelty.ngrams[n - 1].novel;
      if (grams <= 0 || share === null) continue;
      novel += Math.round(share * grams);
      total += grams;
    }
    ngrams.push({ n, novel: total > 0 ? novel / total : 0 });
  }
  const lengths = measured.map((m) => m.novelty.longest_copy?.length ?? 0).sort((a, b) => a - b);
  const best = measured.reduce<Novelty['longest_copy']>((b, m) => ((m.novelty.longest_copy?.length ?? 0) > (b?.length ?? 0) ? m.novelty.longest_copy : b), null);
  const mid = lengths.length >> 1;
  return {
    label,
    samples: measured.length,
    ngrams,
    longest_copy: {
      mean: lengths.length ? lengths.reduce((a, b) => a + b, 0) / lengths.length : 0,
      median: lengths.length ? (lengths.length % 2 ? lengths[mid] : (lengths[mid - 1] + lengths[mid]) / 2) : 0,
      max: lengths.length ? lengths[lengths.length - 1] : 0,
      example: best,
    },
  };
}

const COLORS = ['#222222', '#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** RAVEN's figure: % novel n-grams against n, one line per curve (the first is the human baseline, dashed). */
export function plotSvg(title: string, unit: string, curves: Curve[]): string {
  const W = 560;
  const H = 340;
  const L = 56;
  const R = 170;
  const T = 36;
  const B = 48;
  const x = (n: number) => L + ((n - 1) / (MAX_NGRAM - 1)) * (W - L - R);
  const y = (v: number) => T + (1 - v) * (H - T - B);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${L}" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`);
  for (let t = 0; t <= 100; t += 20) {
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y(t / 100)}" y2="${y(t / 100)}" stroke="#ddd"/>`);
    out.push(`<text x="${L - 6}" y="${y(t / 100) + 4}" text-anchor="end">${t}%</text>`);
  }
  for (let n = 1; n <= MAX_NGRAM; n++) out.push(`<text x="${x(n)}" y="${H - B + 16}" text-anchor="middle">${n}</text>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">n (${esc(unit)})</text>`);
  out.push(`<text transform="translate(14 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">novel n-grams</text>`);
  out.push(`<line x1="${L}" x2="${W - R}" y1="${y(0)}" y2="${y(0)}" stroke="#444"/><line x1="${L}" x2="${L}" y1="${T}" y2="${y(0)}" stroke="#444"/>`);
  curves.forEach((c, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = c.ngrams.map((g) => `${x(g.n).toFixed(1)},${y(g.novel).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"${i === 0 ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const g of c.ngrams) out.push(`<circle cx="${x(g.n).toFixed(1)}" cy="${y(g.novel).toFixed(1)}" r="2.5" fill="${color}"/>`);
    const ly = T + 10 + i * 20;
    out.push(`<line x1="${W - R + 12}" x2="${W - R + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${i === 0 ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${W - R + 42}" y="${ly + 4}">${esc(c.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** The markdown table of a report, as in the model cards. */
export function markdownTable(unit: string, curves: Curve[]): string {
  const head = `| % novel ${unit} n-grams | ${Array.from({ length: MAX_NGRAM }, (_, i) => `n=${i + 1}`).join(' | ')} | longest copy: mean / median / max |`;
  const rule = `|---|${'---:|'.repeat(MAX_NGRAM)}---:|`;
  const rows = curves.map(
    (c) =>
      `| ${c.label} (${c.samples}) | ${c.ngrams.map((g) => (100 * g.novel).toFixed(1)).join(' | ')} | ${c.longest_copy.mean.toFixed(1)} / ${c.longest_copy.median} / ${c.longest_copy.max} |`,
  );
  return [head, rule, ...rows].join('\n') + '\n';
}

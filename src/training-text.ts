// The training text of the shipped byte-level models (tools/train/data.py): the
// King James Bible as Debian's bible-kjv prints it (`bible -f Gen1:1-Rev22:21`),
// up to the line "Jas1:1 ..." (the tail from there is the held-out split in
// models/data/). Nothing is downloaded: without the package this says what to
// install. `npm start` builds its novelty corpus (src/novelty/kjv.ts) and its
// datastore (src/retrieval/training-datastore.ts) from it.
import { spawnSync } from 'node:child_process';

export const KJV_BYTES = 4_404_412;
export const KJV_TRAINING_BYTES = 4_281_890;
export const HELDOUT_FIRST_LINE = 'Jas1:1 ';

/** The training text (pure ASCII), or an Error saying what to install. */
export function kjvTrainingText(): Buffer {
  const r = spawnSync('bible', ['-f', 'Gen1:1-Rev22:21'], { maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0) {
    throw new Error(`cannot run \`bible\` (${r.error?.message ?? r.stderr?.toString().trim()}): apt-get install bible-kjv bible-kjv-text`);
  }
  const all = r.stdout;
  if (all.length !== KJV_BYTES) throw new Error(`bible printed ${all.length} bytes, expected ${KJV_BYTES} (Debian's bible-kjv-text 4.x)`);
  const cut = all.indexOf('\n' + HELDOUT_FIRST_LINE) + 1;
  if (cut !== KJV_TRAINING_BYTES) throw new Error(`the held-out split starts at byte ${cut}, expected ${KJV_TRAINING_BYTES}`);
  return all.subarray(0, cut);
}

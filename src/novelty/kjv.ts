// The training text of the shipped byte-level models (tools/train/data.py):
// the King James Bible as Debian's bible-kjv prints it, up to the line
// "Jas1:1 ..." (the tail from there is the held-out split in models/data/).
// `npm start` serves its corpus as `kjv`, built here on first start
// (models/data/kjv-corpus/, not in git: 21 MB, a few seconds to build).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { packageRoot } from '../package-root';
import { Corpus } from './corpus';

export const KJV_BYTES = 4_404_412;
export const KJV_TRAINING_BYTES = 4_281_890;
export const HELDOUT_FIRST_LINE = 'Jas1:1 ';
export const KJV_CORPUS_DIR = path.join(packageRoot(), 'models', 'data', 'kjv-corpus');

/** The training text, or an Error saying what to install. */
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

/** The KJV training corpus folder, built when missing (into a temporary folder renamed when whole). */
export function ensureKjvCorpus(dir = KJV_CORPUS_DIR): string {
  if (fs.existsSync(path.join(dir, 'corpus.json'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  Corpus.build(tmp, kjvTrainingText(), 'bible -f Gen1:1-Rev22:21, up to "Jas1:1 " (tools/train/data.py)');
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    // Another process built it meanwhile.
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(dir, 'corpus.json'))) throw e;
  }
  return dir;
}

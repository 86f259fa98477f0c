// The novelty corpus of the shipped models' training text (src/training-text.ts):
// `npm start` serves it as `kjv`, built here on first start
// (models/data/kjv-corpus/, not in git: 21 MB, a few seconds to build).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { packageRoot } from '../package-root';
import { kjvTrainingText } from '../training-text';
import { Corpus } from './corpus';

export const KJV_CORPUS_DIR = path.join(packageRoot(), 'models', 'data', 'kjv-corpus');

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

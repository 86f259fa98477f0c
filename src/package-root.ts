// Where the installed package lives (models/, proto/, build/): a leaf that
// imports nothing from src/, so every layer may use it.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The package root: the nearest folder above this file with Roost's package.json. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if (JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'roost') return dir;
      } catch {
        // an unreadable package.json is not ours; keep looking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the roost package root above ${__dirname}`);
    dir = parent;
  }
}

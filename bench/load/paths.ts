// The repository root, found from this file (bench/load/*.ts under ts-jest,
// dist/bench/load/*.js when compiled).
import * as fs from 'node:fs';
import * as path from 'node:path';

let cached: string | undefined;

export function repoRoot(): string {
  if (cached) return cached;
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if (JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'roost') return (cached = dir);
      } catch {
        // not ours
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`bench/load: no roost package.json above ${__dirname}`);
    dir = up;
  }
}

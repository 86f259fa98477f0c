// Tests that run the compiled CLI or modules as a process (bin/roost.js runs
// dist/): compile first when dist/ is missing or older than src/ or bench/.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.join(__dirname, '..');

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

/** Runs tsc when dist/src/server.js is missing or older than anything under src/ (or bench/, which some tests run too). */
export function compileIfStale(): void {
  const serve = path.join(ROOT, 'dist', 'src', 'server.js');
  const newest = Math.max(newestMtime(path.join(ROOT, 'src')), newestMtime(path.join(ROOT, 'bench')));
  if (!fs.existsSync(serve) || fs.statSync(serve).mtimeMs < newest) {
    const r = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8' });
    // tsc still emits when some other file has a type error; only missing output stops the tests.
    if (!fs.existsSync(serve)) throw new Error(`tsc did not produce ${serve}: ${r.stdout}${r.stderr}`);
    if (r.status !== 0) console.warn(`tsc reported errors:\n${r.stdout}${r.stderr}`);
  }
}

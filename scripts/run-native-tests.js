#!/usr/bin/env node
// Runs every native test executable that the CMake build produced
// (test/native/test_*.cpp -> build/**/test_*). Each is a doctest executable
// (third_party/doctest): it prints every failed check and a summary, and exits
// non-zero when a check failed; this exits non-zero if any of them fails.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const sources = fs.readdirSync(path.join(root, 'test', 'native')).filter((f) => /^test_.*\.cpp$/.test(f));
const searchDirs = ['build/Release', 'build', 'build/Debug'].map((d) => path.join(root, d));

let failed = 0;
for (const src of sources) {
  const name = src.replace(/\.cpp$/, '');
  const exe = searchDirs.map((d) => path.join(d, name)).find((p) => fs.existsSync(p));
  if (!exe) {
    console.error(`native test ${name}: no executable in build/ (run npm install or npm run build:native)`);
    failed++;
    continue;
  }
  console.log(`--- ${name}`);
  const r = spawnSync(exe, [], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) {
    console.error(`native test ${name} failed (exit ${r.status}${r.signal ? ', signal ' + r.signal : ''})`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);

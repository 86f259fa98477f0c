#!/usr/bin/env node
// Runs every native test executable that the CMake build produced:
//   test/native/test_*.cpp -> build/**/test_*
//   test/cuda/test_*.cpp   -> build/**/test_*_emulated (the CUDA backend's host
//     code against host implementations of its kernels, test/cuda/emu; built
//     on every machine, no nvcc or GPU needed)
// Both kinds are doctest executables (third_party/doctest, one shared main:
// test/native/doctest_main.cpp): each prints every failed check and a summary
// and exits non-zero when a check failed; this exits non-zero if any of them
// fails or is missing. ROOST_BUILD_DIR=dir looks in dir instead of
// build/ (a second build tree, e.g. a CPU-only one beside a CUDA one).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const buildDir = process.env.ROOST_BUILD_DIR || 'build';
const searchDirs = ['Release', '.', 'Debug'].map((d) => path.resolve(root, buildDir, d));
const suites = [
  { dir: 'test/native', suffix: '' },
  { dir: 'test/cuda', suffix: '_emulated' },
];

let failed = 0;
for (const { dir, suffix } of suites) {
  const sources = fs.readdirSync(path.join(root, dir)).filter((f) => /^test_.*\.cpp$/.test(f));
  for (const src of sources) {
    const name = src.replace(/\.cpp$/, '') + suffix;
    const exe = searchDirs.map((d) => path.join(d, name)).find((p) => fs.existsSync(p));
    if (!exe) {
      console.error(`native test ${name}: no executable in ${buildDir}/ (run npm install or npm run build:native)`);
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
}
process.exit(failed ? 1 : 0);

#!/usr/bin/env node
// npm start: `roost serve` with the shipped default model, its adapters and
// chat template, and the datastore of the models' training text as "kjv"
// (docs/retrieval.md "npm start"). The datastore is built on the first start
// (a progress bar on stderr) into datastores/kjv-train, not at install, so
// `npm install` and `npm test` never pay for it.
'use strict';
process.env.UV_THREADPOOL_SIZE ??= '2';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const dir = path.join(root, 'datastores', 'kjv-train');
const serveArgs = process.argv.slice(2);
let args = serveArgs;
if (!fs.existsSync(path.join(dir, 'manifest.json'))) {
  const { buildTrainingDatastore } = require('../dist/src/retrieval/training-datastore.js');
  const { resolveModel } = require('../dist/src/cli/model.js');
  const { progressBar } = require('../dist/src/cli/progress.js');
  process.stderr.write(`npm start: building the datastore of the training text into ${dir} (first start only)\n`);
  try {
    const bar = progressBar('training-text datastore', 'books');
    const r = buildTrainingDatastore(resolveModel('default'), dir, bar.update);
    bar.done();
    process.stderr.write(`npm start: ${r.documents} books, ${r.chunks} chunks in ${r.seconds.toFixed(1)} s\n`);
  } catch (e) {
    process.stderr.write(`npm start: no training-text datastore (${e.message}); serving without it\n`);
  }
}
if (fs.existsSync(path.join(dir, 'manifest.json'))) args = [...serveArgs, '--datastore', `kjv=${dir}`];
require('../dist/src/cli.js')
  .main(['serve', ...args])
  .then((code) => {
    if (code !== 0) process.exitCode = code;
  });

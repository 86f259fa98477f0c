#!/usr/bin/env node
// npm start: `roost serve` with the shipped default model, its adapters and
// chat template, the playground (--ui), and two things made from the models'
// training text (src/training-text.ts), both served as "kjv": the datastore
// (docs/retrieval.md "npm start", in datastores/kjv-train) and the novelty
// corpus (docs/novelty.md, in models/data/kjv-corpus). Each is built on the
// first start (the datastore with a progress bar on stderr), not at install,
// so `npm install` and `npm test` never pay for them; without Debian's
// bible-kjv the server starts without them and says so.
'use strict';
process.env.UV_THREADPOOL_SIZE ??= '2';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const dist = (m) => require(path.join(root, 'dist', 'src', m));
const args = process.argv.slice(2);

const datastore = path.join(root, 'datastores', 'kjv-train');
if (!fs.existsSync(path.join(datastore, 'manifest.json'))) {
  const { buildTrainingDatastore } = dist('retrieval/training-datastore.js');
  const { resolveModel } = dist('cli/model.js');
  const { progressBar } = dist('cli/progress.js');
  process.stderr.write(`npm start: building the datastore of the training text into ${datastore} (first start only)\n`);
  try {
    const bar = progressBar('training-text datastore', 'books');
    const r = buildTrainingDatastore(resolveModel('default'), datastore, bar.update);
    bar.done();
    process.stderr.write(`npm start: ${r.documents} books, ${r.chunks} chunks in ${r.seconds.toFixed(1)} s\n`);
  } catch (e) {
    process.stderr.write(`npm start: no training-text datastore (${e.message}); serving without it\n`);
  }
}
if (fs.existsSync(path.join(datastore, 'manifest.json'))) args.push('--datastore', `kjv=${datastore}`);

try {
  args.push('--corpus', `kjv=${dist('novelty/kjv.js').ensureKjvCorpus()}`);
} catch (e) {
  process.stderr.write(`npm start: no kjv novelty corpus (${e.message}); serving without it\n`);
}

dist('cli.js')
  .main(['serve', ...args])
  .then((code) => {
    if (code !== 0) process.exitCode = code;
  });

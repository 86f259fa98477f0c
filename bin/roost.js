#!/usr/bin/env node
// The roost command: the compiled CLI (tsc writes src/cli.ts to dist/src/cli.js).
'use strict';
// Before anything uses libuv's pool: the engine runs its own compute threads.
process.env.UV_THREADPOOL_SIZE ??= '2';
require('../dist/src/cli.js').run();

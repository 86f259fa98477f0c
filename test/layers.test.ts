// The layer rules of the TypeScript: the transports src/http and src/ws never
// import each other nor the addon (src/native), and reach the engine's
// statistics and adapters through src/engine/runtime.ts, not the engine
// handle; src/engine imports no transport; the composition roots
// (src/server.ts, src/cli.ts) are imported by nothing. A break fails here, named.
import * as fs from 'node:fs';
import * as path from 'node:path';

const SRC = path.join(__dirname, '..', 'src');

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The relative modules `text` (the source of src/`from`) imports, as paths under src/ without extension. */
function importsOf(from: string, text: string): string[] {
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)].map((m) => m[1]);
  return specs.filter((s) => s.startsWith('.')).map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(from), s)));
}

/** A module's layer: its folder under src/, or the file's own name at the top. */
const layer = (rel: string) => (rel.includes('/') ? rel.split('/')[0] : rel.replace(/\.ts$/, ''));

const FORBIDDEN: Record<string, string[]> = {
  http: ['ws', 'native', 'server', 'cli'],
  ws: ['http', 'native', 'server', 'cli'],
  engine: ['http', 'ws', 'server', 'cli'],
  native: ['engine', 'http', 'ws', 'server', 'cli'],
  retrieval: ['http', 'ws', 'server', 'cli'],
  // a leaf every layer may use
  'package-root': ['engine', 'http', 'ws', 'native', 'retrieval', 'server', 'cli'],
  'training-text': ['engine', 'http', 'ws', 'native', 'retrieval', 'novelty', 'server', 'cli'],
};

/** `src/<from> imports src/<target>` for each import the rules forbid. */
function violations(from: string, text: string): string[] {
  return importsOf(from, text)
    .filter((target) => target.startsWith('..') || FORBIDDEN[layer(from)]?.includes(layer(target)))
    .map((target) => `src/${from} imports src/${target}`);
}

test('src/http and src/ws import neither each other nor src/native; src/engine imports no transport', () => {
  const found = files(SRC).flatMap((f) => violations(path.relative(SRC, f).split(path.sep).join('/'), fs.readFileSync(f, 'utf8')));
  expect(found).toEqual([]);
});

test('every import form is seen, so a forbidden one cannot slip through', () => {
  const probe = [
    "import { Gateway } from '../ws/gateway';",
    'export * from "../native";',
    "const frames = require('../ws/frames');",
    "void import('../native/index');",
    "import '../cli';",
    "import { startCompletion } from '../engine/completion';",
  ].join('\n');
  expect(violations('http/probe.ts', probe)).toEqual([
    'src/http/probe.ts imports src/ws/gateway',
    'src/http/probe.ts imports src/native',
    'src/http/probe.ts imports src/ws/frames',
    'src/http/probe.ts imports src/native/index',
    'src/http/probe.ts imports src/cli',
  ]);
  expect(violations('ws/probe.ts', "import { bearerMatches } from '../http/auth';")).toEqual(['src/ws/probe.ts imports src/http/auth']);
});

/** Uses of a runtime's engine handle (`rt.engine`) in a transport's source, as `src/FILE:LINE uses rt.engine`. */
function engineHandles(from: string, text: string): string[] {
  if (!['http', 'ws'].includes(layer(from))) return [];
  return [...text.matchAll(/([\w$)\]]+)\s*\.\s*engine\b/g)].map((m) => `src/${from}:${text.slice(0, m.index).split('\n').length} uses ${m[1]}.engine`);
}

test('src/http and src/ws never hold the engine: statistics and adapters go through the runtime', () => {
  const found = files(SRC).flatMap((f) => engineHandles(path.relative(SRC, f).split(path.sep).join('/'), fs.readFileSync(f, 'utf8')));
  expect(found).toEqual([]);
  expect(engineHandles('http/probe.ts', "import { x } from '../engine/runtime';\nconst n = rt.engine.stats();")).toEqual(['src/http/probe.ts:2 uses rt.engine']);
});

// `roost serve --chat-template FILE` as users run it: npm start serves the
// shipped model with the shipped assistant template (chat works, the prompt is
// the template as jinja2 renders it), and a template path that is a FIFO, a
// folder or missing stops the server at start with a message naming it.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { goldenOf } from './chat.helpers';
import { TINY } from './http.helpers';
import { compileIfStale, ROOT } from './serve.helpers';

const BIN = path.join(ROOT, 'bin', 'roost.js');

beforeAll(compileIfStale, 120000);

test("npm start's flags serve the default model with the assistant template", async () => {
  const start: string = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start;
  // "node bin/start.js FLAGS": start.js adds the training-text datastore (built on a first start,
  // never in tests) and runs `roost serve FLAGS`; the flags alone are served here.
  expect(start.split(' ').slice(0, 2)).toEqual(['node', 'bin/start.js']);
  const args = ['serve', ...start.split(' ').slice(2)];
  expect(args.slice(args.indexOf('--chat-template'), args.indexOf('--chat-template') + 2)).toEqual(['--chat-template', 'models/templates/assistant.jinja']);
  args[args.indexOf('--port') + 1] = '0';
  const p = spawn(process.execPath, [BIN, ...args, '--threads', '1'], { cwd: ROOT });
  let stdout = '';
  p.stdout.on('data', (d) => (stdout += d));
  const exited = new Promise((r) => p.once('exit', r));
  try {
    const end = Date.now() + 60000;
    while (!stdout.includes('\n')) {
      if (Date.now() > end || p.exitCode !== null) throw new Error(`no listening line: ${stdout}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const url = /listening on (\S+)/.exec(stdout)![1];
    const g = goldenOf('assistant');
    const c = g.cases[0];
    // The shipped model's tokenizer is bytes: one token per UTF-8 byte of the jinja2 rendering.
    const tok = await fetch(`${url}/tokenize`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ messages: c.messages }) });
    expect(((await tok.json()) as any).tokens).toEqual(Array.from(Buffer.from(c.rendered!, 'utf8')));
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages: c.messages, max_tokens: 20, seed: 1 }),
    });
    expect(r.status).toBe(200);
    const body = (await r.json()) as any;
    expect(body.choices[0].message.role).toBe('assistant');
    // The route applies the template's stop string: the completion of the rendered prompt with that stop.
    const legacy = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: c.rendered, max_tokens: 20, seed: 1, stop: '\nHuman:' }),
    });
    const want = ((await legacy.json()) as any).choices[0];
    expect(body.choices[0].message.content).toBe(want.text);
    expect(body.choices[0].finish_reason).toBe(want.finish_reason);
    expect(body.choices[0].message.content).not.toContain('\nHuman:');
  } finally {
    p.kill('SIGTERM');
    await exited;
  }
}, 90000);

test('a --chat-template that is a FIFO, a folder or missing stops serve with a message naming it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-chat-cli-'));
  try {
    const fifo = path.join(dir, 'template.fifo');
    execFileSync('mkfifo', [fifo]);
    const cases: Array<[string, RegExp]> = [
      [fifo, /--chat-template: .*template\.fifo: not a regular file \(a FIFO\)/],
      [dir, /--chat-template: .*not a regular file \(a folder\)/],
      [path.join(dir, 'none.jinja'), /--chat-template: .*none\.jinja: cannot open: no such file/],
    ];
    for (const [file, message] of cases) {
      const r = spawnSync(process.execPath, [BIN, 'serve', '--model', TINY, '--port', '0', '--chat-template', file], { cwd: ROOT, encoding: 'utf8', timeout: 30000 });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 90000);

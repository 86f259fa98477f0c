// The roost command as users run it: `node bin/roost.js ...` on the fixtures.
// Usage errors exit 2 and name the flag; runtime errors exit 1; results on stdout.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { main } from '../src/cli';
import { evalCommand } from '../src/cli/eval';
import { generateCommand } from '../src/cli/generate';
import { scoreCommand } from '../src/cli/score';
import { serveCommand } from '../src/cli/serve';
import { Detokenizer } from '../src/engine/detokenizer';
import { loadTokenizer } from '../src/engine/tokenizer';
import { Engine, native } from '../src/native';
import { post, start } from './http.helpers';
import { compileIfStale, ROOT } from './serve.helpers';

const BIN = path.join(ROOT, 'bin', 'roost.js');
const FIXTURES = path.join(__dirname, 'fixtures');
const TINY = path.join(FIXTURES, 'gpt2-tiny');
const BYTES = path.join(FIXTURES, 'gpt2-bytes');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function roost(...args: string[]): Result {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function golden(dir: string): any {
  return JSON.parse(fs.readFileSync(path.join(dir, 'golden.json'), 'utf8'));
}

beforeAll(compileIfStale, 120000);

describe('generate', () => {
  test('greedy output is the reference continuation, and only it', () => {
    const g = golden(TINY).greedy[0];
    expect(g.text_valid_utf8).toBe(true);
    expect(g.tokens).not.toContain(golden(TINY).eos_token_id);
    const r = roost('generate', '--model', TINY, '--prompt', g.prompt, '--max-tokens', String(g.max_tokens), '--temperature', '0');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(g.text);
  });

  test('byte model: the text is the reference bytes, multi-byte characters whole', () => {
    const g = golden(BYTES).greedy[0];
    expect(g.text).toContain('\u2659'); // a 3-byte character the byte model emits one byte per token
    const r = spawnSync(process.execPath, [BIN, 'generate', '--model', BYTES, '--prompt', g.prompt, '--max-tokens', String(g.max_tokens), '--temperature', '0'], { cwd: ROOT, timeout: 60000 });
    expect(r.status).toBe(0);
    expect(Buffer.compare(r.stdout, Buffer.from(g.text, 'utf8'))).toBe(0);
  });

  test('the text is streamed: one write per released piece, each whole UTF-8', async () => {
    const g = golden(BYTES).greedy[0];
    const writes: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: any) => {
      writes.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return true;
    });
    let code: number;
    try {
      code = await main(['generate', '--model', BYTES, '--prompt', g.prompt, '--max-tokens', String(g.max_tokens), '--temperature', '0', '--threads', '1']);
    } finally {
      spy.mockRestore();
    }
    expect(code).toBe(0);
    expect(writes.join('')).toBe(g.text);
    // Token by token: as many writes as pieces the detokenizer releases, the 3-byte character in one of them.
    const d = new Detokenizer(loadTokenizer(BYTES));
    const pieces = g.tokens.map((t: number) => d.push(t)).filter((p: string) => p !== '');
    expect(writes).toEqual(pieces);
    expect(writes.length).toBeGreaterThan(5);
    expect(writes).toContain('\u2659');
  });

  test('at a terminal the text ends with a newline; into a pipe it is the text exactly', async () => {
    const g = golden(TINY).greedy[0];
    expect(g.text.endsWith('\n')).toBe(false);
    const args = ['generate', '--model', TINY, '--prompt', g.prompt, '--max-tokens', String(g.max_tokens), '--temperature', '0', '--threads', '1'];
    const outputs: string[] = [];
    for (const tty of [true, false]) {
      const writes: string[] = [];
      const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: any) => {
        writes.push(String(chunk));
        return true;
      });
      const was = Object.getOwnPropertyDescriptor(process.stdout, 'isTTY');
      Object.defineProperty(process.stdout, 'isTTY', { value: tty, configurable: true });
      try {
        expect(await main(args)).toBe(0);
      } finally {
        spy.mockRestore();
        if (was) Object.defineProperty(process.stdout, 'isTTY', was);
        else delete (process.stdout as { isTTY?: boolean }).isTTY;
      }
      outputs.push(writes.join(''));
    }
    expect(outputs).toEqual([g.text + '\n', g.text]);
  });

  test('the same seed gives the same text', () => {
    const args = ['generate', '--model', TINY, '--prompt', 'The license', '--max-tokens', '12', '--temperature', '1.0', '--top-p', '0.9', '--top-k', '50'];
    const a = roost(...args, '--seed', '1234');
    expect(a.code).toBe(0);
    expect(roost(...args, '--seed', '1234').stdout).toBe(a.stdout);
    expect(a.stdout.length).toBeGreaterThan(0);
    expect(roost(...args, '--seed', '1235').stdout).not.toBe(a.stdout);
    const big = roost(...args, '--seed', String(Number.MAX_SAFE_INTEGER));
    expect(big.code).toBe(0);
    expect(roost(...args, '--seed', String(Number.MAX_SAFE_INTEGER)).stdout).toBe(big.stdout);
  });

  test('--device auto picks CUDA when a device is usable, else the CPU', async () => {
    const devices: string[] = [];
    const load = Engine.load;
    const spy = jest.spyOn(Engine, 'load').mockImplementation(async (dir, opts) => {
      const e = await load(dir, opts);
      devices.push(e.info().device);
      return e;
    });
    const out = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(await main(['generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '2', '--device', 'auto', '--temperature', '0'])).toBe(0);
    } finally {
      spy.mockRestore();
      out.mockRestore();
    }
    expect(devices).toEqual([native().cuda().available ? 'cuda' : 'cpu']);
  });

  test('sampling flags and the context are checked by the request validation HTTP uses, with its messages', async () => {
    const s = await start(TINY);
    try {
      for (const [flags, body] of [
        [['--temperature', '5'], { temperature: 5 }],
        [['--top-p', '0'], { top_p: 0 }],
        [['--top-k', '-2'], { top_k: -2 }],
        [['--seed', '1.5'], { seed: 1.5 }],
        [['--max-tokens', '-3'], { max_tokens: -3 }],
      ] as Array<[string[], Record<string, number>]>) {
        const http = await post(s.url, { prompt: 'Hi', max_tokens: 5, ...body });
        expect(http.status).toBe(400);
        const field = Object.keys(body)[0];
        expect(http.json.error.message.startsWith(`${field} must be`)).toBe(true);
        const r = roost('generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '5', ...flags);
        expect(r).toMatchObject({ code: 2, stdout: '' });
        expect(r.stderr).toBe(`roost generate: ${flags[0]}${http.json.error.message.slice(field.length)}\n`);
      }
      // 2 prompt tokens + 127 > 128: HTTP answers 400, generate refuses the same way instead of stopping at the limit.
      const http = await post(s.url, { prompt: 'Hi', max_tokens: 127 });
      expect(http.status).toBe(400);
      expect(http.json.error).toMatchObject({ code: 'context_length_exceeded', param: 'max_tokens' });
      const r = roost('generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '127');
      expect(r).toMatchObject({ code: 2, stdout: '', stderr: `roost generate: --max-tokens: ${http.json.error.message}\n` });
      expect(roost('generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '126', '--temperature', '0').code).toBe(0);
    } finally {
      await s.close(0);
    }
  });

  test.each([
    [['--max-tokens', '-3'], '--max-tokens must be an integer from 0 to 16777216 (got -3)'],
    [['--max-tokens', '2.5'], '--max-tokens must be an integer from 0 to 16777216 (got 2.5)'],
    [['--max-tokens', '5', '--temperature', 'hot'], '--temperature must be a number from 0 to 2 (got "hot")'],
    [['--max-tokens', '5', '--temperature', '-1'], '--temperature must be a number from 0 to 2 (got -1)'],
    [['--max-tokens', '5', '--temperature', '2.5'], '--temperature must be a number from 0 to 2 (got 2.5)'],
    [['--max-tokens', '5', '--top-p', '1.5'], '--top-p must be a number greater than 0 and at most 1 (got 1.5)'],
    [['--max-tokens', '5', '--top-p', '0'], '--top-p must be a number greater than 0 and at most 1 (got 0)'],
    [['--max-tokens', '5', '--top-k', '-2'], '--top-k must be an integer from -1 to 1073741824 (got -2)'],
    [['--max-tokens', '5', '--seed', 'abc'], '--seed must be an integer from -9007199254740991 to 9007199254740991 (got "abc")'],
    [['--max-tokens', '5', '--seed', '9007199254740993'], '--seed must be an integer from -9007199254740991 to 9007199254740991 (got "9007199254740993")'],
    [['--max-tokens', '5', '--threads', '0'], '--threads must be a positive integer (got 0)'],
    [['--max-tokens', '5', '--device', 'gpu'], '--device must be cpu, cuda or auto (got gpu)'],
    [['--max-tokens', '5', '--bogus', '1'], "Unknown option '--bogus'"],
    [['--max-tokens', '5', 'stray'], 'Unexpected argument'],
    [[], '--max-tokens is required'],
  ])('usage error %j exits 2 naming the flag', (extra, message) => {
    const r = roost('generate', '--model', TINY, '--prompt', 'Hi', ...extra);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe('');
  });

  test('missing --model and --prompt are usage errors', () => {
    expect(roost('generate', '--prompt', 'x', '--max-tokens', '1')).toMatchObject({ code: 2, stderr: expect.stringContaining('--model is required') });
    expect(roost('generate', '--model', TINY, '--max-tokens', '1')).toMatchObject({ code: 2, stderr: expect.stringContaining('--prompt is required') });
    expect(roost('generate', '--model', TINY, '--prompt', '', '--max-tokens', '1')).toMatchObject({
      code: 2,
      stderr: 'roost generate: --prompt must not be empty: it encodes to no tokens\n',
    });
  });

  test('--device: cuda without a usable GPU says why; cpu runs, and auto gives its text when no GPU is usable', () => {
    const cuda = native().cuda();
    const r = roost('generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '1', '--device', 'cuda', '--temperature', '0');
    if (cuda.available) {
      expect(r.code).toBe(0);
    } else {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(cuda.built ? /--device cuda: no usable CUDA device/ : /this build of Roost has no CUDA support/);
    }
    const cpu = roost('generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '3', '--device', 'cpu', '--temperature', '0');
    expect(cpu.code).toBe(0);
    if (!cuda.available) expect(roost('generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '3', '--device', 'auto', '--temperature', '0').stdout).toBe(cpu.stdout);
    expect(roost('generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '1', '--device', 'gpu')).toMatchObject({ code: 2, stderr: expect.stringContaining('--device must be cpu, cuda or auto') });
  });
});

describe('score', () => {
  test('--tokens prints the reference log-probs', () => {
    const g = golden(TINY);
    const c = g.cases.find((x: any) => x.name === 'random-33');
    const r = roost('score', '--model', TINY, '--tokens', c.tokens.join(','));
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out)).toEqual(['tokens', 'logprobs']);
    expect(out.tokens).toEqual(c.tokens);
    expect(out.logprobs[0]).toBeNull();
    out.logprobs.slice(1).forEach((lp: number, i: number) => expect(Math.abs(lp - c.logprobs[i + 1])).toBeLessThanOrEqual(g.logprob_tolerance));
  });

  test('--text tokenizes with the model tokenizer', () => {
    const g = golden(TINY);
    const c = g.tokenizer.find((x: any) => x.text === 'Hello world');
    const r = roost('score', '--model', TINY, '--text', 'Hello world');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toEqual(c.ids);
    expect(out.logprobs).toHaveLength(c.ids.length);
    expect(out.logprobs[0]).toBeNull();
    // the same log-probs as scoring those ids directly
    expect(out.logprobs).toEqual(JSON.parse(roost('score', '--model', TINY, '--tokens', c.ids.join(',')).stdout).logprobs);
  });

  test('a single token scores [null]', () => {
    expect(JSON.parse(roost('score', '--model', TINY, '--tokens', '7').stdout)).toEqual({ tokens: [7], logprobs: [null] });
  });

  test.each([
    [['--tokens', '1,2', '--text', 'x'], 'give exactly one of --tokens or --text'],
    [[], 'give exactly one of --tokens or --text'],
    [['--tokens', '1,x,3'], '--tokens must be a comma-separated list of token ids'],
    [['--tokens', '-1'], '--tokens must be a comma-separated list of token ids'],
    [['--tokens', '1,512'], '--tokens: prompt[1] must be a token id from 0 to 511 (got 512)'],
    [['--text', ''], '--text must not be empty: it encodes to no tokens'],
    [
      ['--tokens', new Array(129).fill(1).join(',')],
      "--tokens: This model's maximum context length is 128 tokens, however you requested 129 tokens (129 in prompt, 0 for max_tokens). " +
        'Please reduce the prompt or max_tokens. (roost eval scores texts longer than the context)',
    ],
  ])('usage error %#', (extra, message) => {
    const r = roost('score', '--model', TINY, ...extra);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });
});

describe('eval', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-cli-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('a text within one window equals the sum of score', () => {
    const text = 'The quick brown fox jumps over the lazy dog. Café, 東京.';
    const file = path.join(tmp, 'short.txt');
    fs.writeFileSync(file, text);
    const r = roost('eval', '--model', TINY, '--file', file);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const s = JSON.parse(roost('score', '--model', TINY, '--text', text).stdout);
    const nll = -s.logprobs.slice(1).reduce((a: number, b: number) => a + b, 0);
    expect(out.tokens).toBe(s.tokens.length);
    expect(out.bytes).toBe(Buffer.byteLength(text));
    expect(out.windows).toBe(1);
    expect(out.bits_per_byte).toBeCloseTo(nll / Math.LN2 / Buffer.byteLength(text), 6);
    expect(out.perplexity).toBeCloseTo(Math.exp(nll / (s.tokens.length - 1)), 6);
  });

  test('a long text is scored in overlapping windows, every token once', () => {
    const text = fs.readFileSync(path.join(ROOT, 'tools', 'reference', 'corpus_en.txt'), 'utf8').slice(0, 1200);
    const file = path.join(tmp, 'long.txt');
    fs.writeFileSync(file, text);
    const r = roost('eval', '--model', TINY, '--file', file);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const ids = loadTokenizer(TINY).encode(text);
    const T = ids.length;
    expect(out).toMatchObject({ window: 128, stride: 64, tokens: T, scored_tokens: T - 1, bytes: Buffer.byteLength(text) });
    expect(T).toBeGreaterThan(300);
    expect(out.windows).toBe(1 + Math.ceil((T - 128) / 64));
    // Recompute the total from `roost score` on each window: the first window
    // scores tokens 1..127, each later one (ending 64 further) only its new tokens.
    let nll = 0;
    let end = 0;
    for (let b = 128; end < T; b = Math.min(end + 64, T)) {
      const a = Math.max(0, b - 128);
      const s = JSON.parse(roost('score', '--model', TINY, '--tokens', ids.slice(a, b).join(',')).stdout);
      for (let t = Math.max(end, 1); t < b; t++) nll -= s.logprobs[t - a];
      end = b;
    }
    expect(out.nll).toBeCloseTo(nll, 6);
    expect(out.bits_per_byte).toBeCloseTo(nll / Math.LN2 / out.bytes, 8);
    expect(out.perplexity).toBeCloseTo(Math.exp(nll / (T - 1)), 6);
  });

  test('a missing file is a usage error naming --file', () => {
    const r = roost('eval', '--model', TINY, '--file', path.join(tmp, 'nope.txt'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--file: cannot read');
  });
});

describe('--help', () => {
  /** Help text with its wrapping undone: one space between words. */
  const flat = (s: string) => s.replace(/\s+/g, ' ');

  test.each([
    ['serve', serveCommand],
    ['generate', generateCommand],
    ['score', scoreCommand],
    ['eval', evalCommand],
  ])('roost %s --help lists every flag with its description, on stdout, exit 0', (name, make) => {
    const r = roost(name, '--help');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const help = flat(r.stdout);
    expect(help.startsWith(`Usage: roost ${name} --model DIR`)).toBe(true);
    const options = make().options;
    expect(options.length).toBeGreaterThan(4);
    for (const o of options) {
      expect(o.description.length).toBeGreaterThan(10);
      expect(help).toContain(flat(`${o.flags} ${o.description}`));
    }
  });

  test('the defaults are listed: the ones the command applies, and generate\'s sampling defaults', () => {
    const serve = flat(roost('serve', '--help').stdout);
    for (const [f, d] of [
      ['--host <h>', '127.0.0.1'],
      ['--port <p>', '8080'],
      ['--max-batch <n>', '64'],
      ['--max-queue <n>', '256'],
      ['--max-request-share <f>', '1'],
      ['--request-timeout <seconds>', '600'],
      ['--stall-timeout <seconds>', '60'],
      ['--device <device>', 'auto'],
    ]) {
      const o = serveCommand().options.find((x) => x.flags === f)!;
      expect(serve).toContain(flat(`${f} ${o.description} (default: ${d})`));
    }
    const generate = flat(roost('generate', '--help').stdout);
    expect(generate).toContain('--temperature <t> sampling temperature from 0 to 2; 0 is greedy (default: 1)');
    expect(generate).toContain('--seed <s> the sampling seed, for a repeatable run (default: a random seed each run)');
    expect(generate).toContain('--max-tokens <n> how many tokens to generate at most (required)');
  });

  test('roost help, roost --help and roost help <command> print help; roost alone prints it to stderr and exits 2', () => {
    const top = roost('--help');
    expect(top).toMatchObject({ code: 0, stderr: '' });
    for (const name of ['serve', 'generate', 'score', 'eval']) expect(top.stdout).toContain(`  roost ${name} --model DIR`);
    expect(roost('help')).toMatchObject({ code: 0, stdout: top.stdout });
    expect(roost('help', 'eval')).toMatchObject({ code: 0, stdout: roost('eval', '--help').stdout });
    expect(roost()).toMatchObject({ code: 2, stdout: '', stderr: top.stdout });
    expect(roost('--version')).toMatchObject({ code: 0, stdout: `${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version}\n` });
  });

  test('a mistyped flag is a usage error with a suggestion', () => {
    const r = roost('generate', '--model', TINY, '--prompt', 'Hi', '--max-tokens', '1', '--temprature', '0');
    expect(r).toMatchObject({
      code: 2,
      stdout: '',
      stderr: "roost generate: Unknown option '--temprature'\n(Did you mean --temperature?)\n(see roost generate --help)\n",
    });
  });
});

describe('models and commands', () => {
  test('a missing model folder is a usage error', () => {
    const r = roost('score', '--model', path.join(FIXTURES, 'nope'), '--tokens', '1');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--model: no model folder or .gguf file at');
  });

  test('a bare name resolves to models/<name> of the package', () => {
    const name = `.roost-cli-test-${process.pid}`;
    const dir = path.join(ROOT, 'models', name);
    fs.mkdirSync(dir, { recursive: true });
    try {
      for (const f of fs.readdirSync(TINY)) fs.copyFileSync(path.join(TINY, f), path.join(dir, f));
      const r = roost('score', '--model', name, '--tokens', '1,2');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).tokens).toEqual([1, 2]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a broken checkpoint is a runtime error (exit 1) with its code', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-cli-'));
    try {
      for (const f of fs.readdirSync(TINY)) fs.copyFileSync(path.join(TINY, f), path.join(dir, f));
      fs.truncateSync(path.join(dir, 'model.safetensors'), 1000);
      const r = roost('score', '--model', dir, '--tokens', '1,2');
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('E_CHECKPOINT');
      expect(r.stderr).toContain(path.join(dir, 'model.safetensors'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('unknown commands and bad serve flags are usage errors; --help exits 0', () => {
    expect(roost('frobnicate')).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown command "frobnicate"') });
    expect(roost('serve', '--model', TINY, '--port', '-1')).toMatchObject({ code: 2, stderr: expect.stringContaining('--port') });
    expect(roost('generate', '--help')).toMatchObject({ code: 0, stdout: expect.stringContaining('roost generate --model DIR') });
    expect(roost('--help')).toMatchObject({ code: 0, stdout: expect.stringContaining('roost eval --model DIR --file F') });
    expect(roost()).toMatchObject({ code: 2 });
  });
});

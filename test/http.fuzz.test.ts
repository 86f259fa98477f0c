// 200+ malformed requests: wrong types, huge or negative numbers, unknown
// fields, invalid UTF-8, token ids out of range, truncated JSON, oversized
// bodies. Each must get a 4xx whose message names the problem; afterwards a
// valid request is still served.
import type { RunningServer } from '../src/server';
import { post, start, TINY } from './http.helpers';

let s: RunningServer;
const LIMIT = 64 * 1024;

beforeAll(async () => {
  s = await start(TINY, { app: { bodyLimit: LIMIT } });
});
afterAll(() => s.close(0));

interface Case {
  body: string | Uint8Array;
  /** The error must name this: a string is in the message and is the param (unless `param` says otherwise); a RegExp matches the message. */
  names: string | RegExp;
  param?: string;
  status?: number;
}

// A small deterministic generator, so a failure reproduces.
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];

const VALID = { prompt: 'hello', max_tokens: 2 };
const WRONG_TYPES: unknown[] = ['str', { a: 1 }, [1, 2], true, -0.5, 1e308];
const NUMERIC: Record<string, unknown[]> = {
  max_tokens: [-1, -1e9, 1e308, 2 ** 53 + 2, 1.5, 1e12],
  temperature: [-0.1, 2.5, 1e308, -1e308],
  top_p: [0, -1, 1.01, 1e308],
  top_k: [-2, 1e308, 0.5, 2 ** 40],
  n: [0, -1, 129, 1e308, 2.5],
  best_of: [0, -3, 1e308, 1.5],
  logprobs: [-1, 21, 1e308, 2.2],
  seed: [1e308, -1e308, 0.5, 2 ** 60],
  presence_penalty: [-2.5, 3, 1e308],
  frequency_penalty: [-1e308, 2.01],
  repetition_penalty: [0, -1, 2.5, 1e308],
  min_p: [-0.1, 1.01, 1e308],
  min_tokens: [-1, 3, 1.5, 1e308],
};
const TYPED = ['model', 'prompt', 'suffix', 'max_tokens', 'temperature', 'top_p', 'top_k', 'n', 'best_of', 'stop', 'seed', 'echo', 'logprobs', 'logit_bias', 'stream', 'stream_options', 'user',
  'min_tokens', 'ignore_eos', 'include_stop_str_in_output', 'stop_token_ids'];

const isPlainObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);

function cases(): Case[] {
  const out: Case[] = [];
  const json = (o: unknown) => JSON.stringify(o);
  // Wrong types, each typed field.
  for (const field of TYPED) {
    for (const v of WRONG_TYPES) {
      if (field === 'prompt' && (typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'number')))) continue;
      if (['temperature', 'top_p'].includes(field) && typeof v === 'number') continue;
      if (field === 'stop' && typeof v === 'string') continue;
      if (field === 'model' && typeof v === 'string') continue; // a wrong model name is a 404, below
      if (field === 'suffix' && typeof v === 'string') continue; // a valid suffix on a non-FIM model: its own 400, below
      if (field === 'user' && typeof v === 'string') continue;
      if (['echo', 'stream', 'ignore_eos', 'include_stop_str_in_output'].includes(field) && typeof v === 'boolean') continue;
      if (field === 'stop_token_ids' && Array.isArray(v)) continue;
      const body: Record<string, unknown> = { ...VALID, [field]: v };
      if (field === 'stream_options') body.stream = true;
      // A wrong entry of a stop list is named by its index; an unknown key of stream_options by its path.
      const param = field === 'stop' && Array.isArray(v) ? 'stop[0]' : field === 'stream_options' && isPlainObject(v) ? 'stream_options.a' : field;
      out.push({ body: json(body), names: field, param });
    }
  }
  // Huge, negative, fractional numbers.
  for (const [field, vals] of Object.entries(NUMERIC)) {
    for (const v of vals) out.push({ body: json({ ...VALID, [field]: v }), names: field });
  }
  // Unknown fields.
  for (const name of ['foo', 'max_token', 'temprature', 'functions', 'messages', 'tools', 'Stream', '__proto__', 'constructor', 'x'.repeat(300)]) {
    out.push({ body: `{"prompt":"a","${name}":1}`, names: name.slice(0, 64), param: name });
  }
  // Token ids out of range or malformed, in every prompt shape.
  for (const bad of [512, 513, -1, 1e9, 2 ** 31, 1.5, 1e308]) {
    out.push({ body: json({ prompt: [1, bad] }), names: 'prompt[1]' });
    out.push({ body: json({ prompt: [[1], [2, bad]] }), names: 'prompt[1][1]' });
    out.push({ body: json({ ...VALID, logit_bias: { [String(bad)]: 1 } }), names: 'logit_bias' });
  }
  // Invalid UTF-8 at random places of a valid body.
  const valid = Buffer.from(json({ prompt: 'héllo wörld', max_tokens: 2 }));
  for (const bad of [[0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80]]) {
    for (let k = 0; k < 3; k++) {
      const at = 1 + Math.floor(rand() * (valid.length - 2));
      out.push({ body: new Uint8Array(Buffer.concat([valid.subarray(0, at), Buffer.from(bad), valid.subarray(at)])), names: /UTF-8/ });
    }
  }
  // Truncated JSON.
  const full = json({ prompt: ['a', 'b'], max_tokens: 3, stop: ['x'], logit_bias: { '5': 1 } });
  for (let k = 0; k < 20; k++) {
    const cut = 1 + Math.floor(rand() * (full.length - 2));
    out.push({ body: full.slice(0, cut), names: /not valid JSON/ });
  }
  // Not an object, or garbage.
  for (const b of ['null', '42', '"prompt"', '[]', '[{"prompt":"a"}]', 'true', 'undefined', '{prompt: "a"}', "{'prompt':'a'}", '{"prompt":"a",}', 'NaN', '{"prompt":"a"}}']) {
    out.push({ body: b, names: /JSON/ });
  }
  out.push({ body: '', names: /empty/ });
  // Oversized bodies.
  for (const size of [LIMIT + 1, LIMIT * 2, LIMIT * 16]) {
    out.push({ body: json({ prompt: 'x'.repeat(size) }), names: /too large/, status: 413 });
  }
  // Other semantic errors.
  out.push({ body: json({ ...VALID, model: 'other' }), names: 'model', status: 404 });
  out.push({ body: json({ ...VALID, suffix: 'x' }), names: 'suffix' });
  out.push({ body: json({ prompt: Array(200).fill(1), max_tokens: 1 }), names: /maximum context length is 128/ });
  out.push({ body: json({ ...VALID, n: 100, best_of: 100, prompt: ['a', 'b', 'c'] }), names: 'best_of' });
  out.push({ body: json({ ...VALID, stop: Array(17).fill('s') }), names: 'stop' });
  out.push({ body: json({ ...VALID, stop: ['ok', 'x'.repeat(300)] }), names: 'stop[1]' });
  out.push({ body: json({ ...VALID, presence_penalty: 3 }), names: 'presence_penalty' });
  // Random mixes of the above.
  while (out.length < 220) {
    const field = pick(Object.keys(NUMERIC));
    out.push({ body: json({ ...VALID, [field]: pick(NUMERIC[field]), [pick(['zz', 'aa_bb'])]: 1 }), names: /zz|aa_bb|[a-z_]+/ });
  }
  return out;
}

test('every malformed request gets a 4xx naming the problem, and the server keeps serving', async () => {
  const all = cases();
  expect(all.length).toBeGreaterThanOrEqual(200);
  for (const c of all) {
    const r = await post(s.url, c.body);
    const where = `body ${String(typeof c.body === 'string' ? c.body.slice(0, 120) : Buffer.from(c.body).toString('hex').slice(0, 120))}`;
    expect({ where, status: r.status }).toEqual({ where, status: c.status ?? 400 });
    expect(Object.keys(r.json?.error ?? {}).sort()).toEqual(['code', 'message', 'param', 'type']);
    const { message, param } = r.json.error;
    if (typeof c.names === 'string') {
      expect({ where, named: message.includes(c.names), param }).toEqual({ where, named: true, param: c.param ?? c.names });
    } else {
      expect({ where, message, named: c.names.test(message) }).toEqual({ where, message, named: true });
    }
  }
  const ok = await post(s.url, { prompt: 'hello', max_tokens: 3 });
  expect(ok.status).toBe(200);
  expect(ok.json.usage.completion_tokens).toBeGreaterThan(0);
  expect((await fetch(`${s.url}/health`)).status).toBe(200);
});

// T5 (docs/t5.md) as users run it, against tools/reference/t5.py's goldens
// (test/fixtures/t5-*/t5-golden.json): `roost score --target-tokens`,
// greedy `roost generate` and POST /v1/completions (prompt = encoder input,
// generation = decoder output), echo and suffix refused, and concurrent
// requests (one cancelled) giving each its tokens alone with every
// sequence's state freed (the engine's counters).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { WebSocket } from 'ws';

import { loadTokenizer } from '../src/engine/tokenizer';
import { RunningServer } from '../src/server';
import { roost } from './family-goldens.helpers';
import { FIXTURES, post, postStream, waitFor } from './http.helpers';
import { start } from './http.helpers';

const MODELS = ['t5-v1-tied', 't5-v1-untied', 't5-v11-tied', 't5-v11-untied'];
const EOS = 1;

function t5Golden(name: string): any {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 't5-golden.json'), 'utf8'));
}

/** The reference's greedy tokens as the server returns them: up to the first </s>. */
function untilEos(tokens: number[]): number[] {
  const k = tokens.indexOf(EOS);
  return k < 0 ? tokens : tokens.slice(0, k);
}

/** The text of ids as completions show it: special tokens (<pad>, the <extra_id_N> sentinels) leave no text. */
function shown(dir: string, ids: number[]): string {
  const added = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')).added_tokens as Array<{ id: number }>;
  const special = new Set(added.map((t) => t.id));
  return loadTokenizer(dir).decode(ids.filter((t) => !special.has(t)));
}

describe.each(MODELS)('%s', (name) => {
  const dir = path.join(FIXTURES, name);
  const g = t5Golden(name);

  test('roost score --target-tokens equals the reference decoder log-probs to 1e-4', () => {
    for (const caseName of ['random-45/target-30', 'text/target-30', 'one-token/target-1']) {
      const c = g.score.find((x: any) => x.name === caseName);
      const r = roost('score', '--model', dir, '--tokens', c.input.join(','), '--target-tokens', c.target.join(','), '--device', 'cpu');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.tokens).toEqual(c.target);
      expect(out.logprobs).toHaveLength(c.target.length);
      for (let i = 0; i < c.target.length; i++) expect(Math.abs(out.logprobs[i] - c.logprobs[i])).toBeLessThanOrEqual(1e-4);
    }
  });

  test('greedy roost generate of the text prompt is the reference decoder output', () => {
    const want = g.greedy.find((x: any) => x.name === 'text');
    const tok = loadTokenizer(dir);
    expect(tok.encode(g.text)).toEqual(want.input); // the unigram tokenizer appends </s>, as T5's
    const r = roost('generate', '--model', dir, '--prompt', g.text, '--max-tokens', String(want.n), '--temperature', '0', '--device', 'cpu');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(shown(dir, untilEos(want.tokens)));
  });
});

test('roost score on a t5 model without --target says what is missing', () => {
  const r = roost('score', '--model', path.join(FIXTURES, 't5-v11-untied'), '--tokens', '5,6,1', '--device', 'cpu');
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/encoder-decoder model: give --target/);
});

test('roost eval on a t5 model points to roost score --target', () => {
  const r = roost('eval', '--model', path.join(FIXTURES, 't5-v1-tied'), '--file', path.join(FIXTURES, '..', '..', 'tools', 'reference', 'corpus_en.txt'), '--device', 'cpu');
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/encoder-decoder model \(t5\): score a target given an input with roost score --text INPUT --target TARGET/);
});

describe('POST /v1/completions on a t5 checkpoint', () => {
  const name = 't5-v11-untied';
  const g = t5Golden(name);
  let s: RunningServer;
  beforeAll(async () => {
    s = await start(path.join(FIXTURES, name));
  });
  afterAll(async () => {
    await s.close();
  });

  test('the prompt is the encoder input and the completion the decoder output (greedy = reference)', async () => {
    for (const want of g.greedy) {
      const r = await post(s.url, { prompt: want.input, max_tokens: want.n, temperature: 0 });
      expect(r.status).toBe(200);
      const ids = untilEos(want.tokens);
      expect(r.json.usage.completion_tokens).toBe(ids.length + (ids.length < want.n ? 1 : 0)); // </s> counts when reached
      expect(r.json.choices[0].text).toBe(shown(path.join(FIXTURES, name), ids));
      expect(r.json.choices[0].finish_reason).toBe(ids.length < want.n ? 'stop' : 'length');
    }
  });

  test('logprobs of the generated tokens are the reference decoder log-probs; n = 2 greedy choices agree', async () => {
    const want = g.greedy.find((x: any) => x.name === 'random-45');
    const k = untilEos(want.tokens).length;
    const r = await post(s.url, { prompt: want.input, max_tokens: k, temperature: 0, logprobs: 2, n: 2 });
    expect(r.status).toBe(200);
    expect(r.json.choices).toHaveLength(2);
    for (const c of r.json.choices) {
      const lp = c.logprobs.token_logprobs;
      expect(lp).toHaveLength(k);
      for (let i = 0; i < k; i++) expect(Math.abs(lp[i] - want.logprobs[i])).toBeLessThanOrEqual(1e-4);
    }
    expect(r.json.choices[1].text).toBe(r.json.choices[0].text);
  });

  test('WebSocket: the prompt is the encoder input; token events are the reference decoder tokens and log-probs', async () => {
    const want = g.greedy.find((x: any) => x.name === 'text');
    const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/stream');
    const events: any[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const done = new Promise<void>((resolve) =>
      ws.on('message', (data: Buffer) => {
        const e = JSON.parse(data.toString());
        events.push(e);
        if (e.type === 'done' || e.type === 'error') resolve();
      }),
    );
    ws.send(JSON.stringify({ type: 'request', id: 'w', prompt: want.input, max_tokens: 8, temperature: 0 }));
    await done;
    ws.close();
    const tokens = events.filter((e) => e.type === 'token');
    const ids = untilEos(want.tokens).slice(0, 8);
    expect(tokens.map((e) => e.token)).toEqual(ids);
    tokens.forEach((e, i) => expect(Math.abs(e.logprob - want.logprobs[i])).toBeLessThanOrEqual(1e-4));
  });

  test('echo and suffix are refused with a message that says why', async () => {
    const echo = await post(s.url, { prompt: [5, 6, 1], max_tokens: 2, echo: true });
    expect(echo.status).toBe(400);
    expect(echo.json.error.param).toBe('echo');
    expect(echo.json.error.message).toMatch(/encoder-decoder model: the prompt is the encoder's input/);
    const suffix = await post(s.url, { prompt: 'And he', max_tokens: 2, suffix: 'water.' });
    expect(suffix.status).toBe(400);
    expect(suffix.json.error.param).toBe('suffix');
  });

  test('concurrent requests at different stages, one cancelled, give the tokens each gives alone; all state freed', async () => {
    const engine = s.holder.runtime!.engine;
    const alone = await Promise.all(g.greedy.map((w: any) => post(s.url, { prompt: w.input, max_tokens: 12, temperature: 0 })));
    const abort = new AbortController();
    const cancelled = postStream(s.url, { prompt: g.greedy[4].input, max_tokens: 10000, temperature: 0, ignore_eos: true }, abort.signal).catch(
      () => null,
    );
    await waitFor(() => engine.stats().sequences > 0, 5000, 'the cancelled request to start');
    const together = g.greedy.map(
      (w: any, i: number) =>
        new Promise((res) => setTimeout(res, 3 * i)).then(() => post(s.url, { prompt: w.input, max_tokens: 12, temperature: 0 })),
    );
    setTimeout(() => abort.abort(), 20);
    const got = await Promise.all(together);
    await cancelled;
    for (let i = 0; i < got.length; i++) expect(got[i].json.choices[0].text).toBe(alone[i].json.choices[0].text);
    await waitFor(() => engine.stats().sequences === 0, 5000, 'every sequence freed');
    expect(engine.stats().stateBytes).toBe(0);
  });
});

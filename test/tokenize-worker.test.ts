// Large prompts are tokenized off the event loop (src/engine/tokenize-offthread.ts):
// the worker's ids equal the served tokenizer's, a dead worker rejects what it
// had and is replaced, a request cancelled while its prompt is tokenized is
// never submitted, and a server keeps answering /health while a prompt of
// about a MiB goes through a normalizing HF tokenizer (seconds on the event loop
// before), refusing it with a 400 also when streamed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { ModelRuntime, startCompletion } from '../src/engine/completion';
import { RequestError } from '../src/engine/errors';
import { parseCompletionBody } from '../src/engine/params';
import { Scheduler } from '../src/engine/scheduler';
import { OFF_THREAD_PROMPT_BYTES, TokenizerWorker } from '../src/engine/tokenize-offthread';
import { loadTokenizer } from '../src/engine/tokenizer';
import type { EngineInfo, NativeEngine } from '../src/native';
import { FakeEngine } from './scheduler.fake-engine';
import { FIXTURES, post, start } from './http.helpers';

const BYTES = path.join(FIXTURES, 'gpt2-bytes');
const TEXT = 'The quick brown fox jumps over the lazy dog. Grüße, naïve café, 日本語のテキスト 🦊\n';

/** `bytes` of UTF-8 or a little more: TEXT repeated. */
const large = (bytes: number) => TEXT.repeat(Math.ceil(bytes / Buffer.byteLength(TEXT)));

/** gpt2-tok (weights + tokenizer.json) with an NFC normalizer: no exact bytes-per-token bound, so a long prompt is tokenized before the context check. */
function normalizingModel(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-nfc-'));
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(FIXTURES, 'gpt2-tok', f), path.join(dir, f));
  const json = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'gpt2-tok', 'tokenizer.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ ...json, normalizer: { type: 'NFC' } }));
  return dir;
}

describe('TokenizerWorker', () => {
  const nfc = normalizingModel();
  afterAll(() => fs.rmSync(nfc, { recursive: true, force: true }));

  test.each([
    ['gpt2-tok (tokenizer.json)', path.join(FIXTURES, 'gpt2-tok')],
    ['bpe (tokenizer.json)', path.join(FIXTURES, 'bpe')],
    ['gpt2-tiny (vocab.json + merges.txt)', path.join(FIXTURES, 'gpt2-tiny')],
    ['gpt2-bytes (bytes)', BYTES],
    ['gpt2-tok with an NFC normalizer', nfc],
  ])('%s: the worker gives the ids of the served tokenizer', async (_name, dir) => {
    const texts = [large(OFF_THREAD_PROMPT_BYTES * 2), 'short', ''];
    const worker = new TokenizerWorker(dir);
    try {
      const ids = await worker.encode(texts);
      const tok = loadTokenizer(dir);
      expect(ids).toEqual(texts.map((t) => tok.encode(t)));
      expect(ids[0].length).toBeGreaterThan(1000);
    } finally {
      await worker.close();
    }
  });

  test('a worker that dies rejects its pending requests with engine_error; the next request starts a fresh one', async () => {
    const dir = normalizingModel();
    const worker = new TokenizerWorker(dir);
    try {
      const json = path.join(dir, 'tokenizer.json');
      fs.renameSync(json, json + '.away'); // the worker's loadTokenizer throws: it ends
      const failed = await worker.encode(['abc']).catch((e) => e);
      expect(failed).toBeInstanceOf(RequestError);
      expect(failed.code).toBe('engine_error');
      expect(failed.message).toContain(`the tokenizer worker for ${dir} failed`);
      expect(failed.message).toContain('no tokenizer found');
      fs.renameSync(json + '.away', json);
      expect(await worker.encode(['abc'])).toEqual([loadTokenizer(dir).encode('abc')]);
    } finally {
      await worker.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('after close, requests are refused with shutting_down', async () => {
    const worker = new TokenizerWorker(BYTES);
    await worker.close();
    await expect(worker.encode(['abc'])).rejects.toMatchObject({ code: 'shutting_down' });
  });
});

describe('startCompletion with a large prompt', () => {
  function runtime(): { rt: ModelRuntime; engine: FakeEngine } {
    const engine = new FakeEngine(260, 0);
    const info: EngineInfo = {
      modelType: 'gpt2', decodeDiffersFromPrefill: false, vocabSize: 260, nEmbd: 1, nLayer: 1, nHead: 1, maxContext: 0, eosTokenId: 256,
      tokenizerClass: 'bytes', specialTokens: { eos: 256 }, threads: 1, isa: 'reference',
    };
    const rt: ModelRuntime = {
      engine: engine as unknown as NativeEngine,
      info,
      tokenizer: loadTokenizer(BYTES),
      tokenizeWorker: new TokenizerWorker(BYTES),
      scheduler: new Scheduler(engine),
      modelId: 'fake',
      adapters: new Map(),
    };
    return { rt, engine };
  }
  const prompt = 'x'.repeat(OFF_THREAD_PROMPT_BYTES);

  test('is tokenized by the worker and submitted with its exact ids', async () => {
    const { rt, engine } = runtime();
    try {
      const run = startCompletion(rt, parseCompletionBody({ prompt, max_tokens: 1 }, { vocabSize: 260 }));
      expect(engine.live.size + engine.freed.length).toBe(0); // not yet: the worker has it
      await run.accepted;
      const r = await run.result;
      expect(r.usage).toEqual({ prompt_tokens: OFF_THREAD_PROMPT_BYTES, completion_tokens: 1, total_tokens: OFF_THREAD_PROMPT_BYTES + 1 });
      expect(engine.freed.length).toBe(1);
    } finally {
      await rt.tokenizeWorker!.close();
    }
  });

  test('cancelled while its prompt is tokenized: never submitted, no choices', async () => {
    const { rt, engine } = runtime();
    try {
      const run = startCompletion(rt, parseCompletionBody({ prompt, max_tokens: 1 }, { vocabSize: 260 }));
      run.cancel();
      await run.accepted;
      expect(await run.result).toEqual({ choices: [], usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } });
      expect(engine.live.size + engine.freed.length + engine.steps.length).toBe(0);
    } finally {
      await rt.tokenizeWorker!.close();
    }
  });

  test('a refusal found after tokenizing rejects accepted and result with it', async () => {
    const { rt } = runtime();
    rt.info = { ...rt.info, maxContext: 100 };
    // Refused before tokenizing would need an exact bound; the bytes tokenizer has one, so take it away.
    rt.tokenizer = Object.assign(Object.create(Object.getPrototypeOf(rt.tokenizer)), rt.tokenizer, { maxInputBytesPerToken: undefined });
    try {
      const run = startCompletion(rt, parseCompletionBody({ prompt, max_tokens: 1 }, { vocabSize: 260 }));
      await expect(run.accepted).rejects.toMatchObject({ code: 'context_length_exceeded' });
      await expect(run.result).rejects.toThrow(`however you requested ${OFF_THREAD_PROMPT_BYTES + 1} tokens (${OFF_THREAD_PROMPT_BYTES} in prompt`);
    } finally {
      await rt.tokenizeWorker!.close();
    }
  });
});

test('the event loop keeps answering /health while a large prompt is tokenized by a normalizing HF tokenizer', async () => {
  const dir = normalizingModel();
  const server = await start(dir);
  try {
    const text = large(1 << 20);
    // What the old code spent on the event loop: the same encode, here.
    const t0 = performance.now();
    const tokens = loadTokenizer(dir).encode(text).length;
    const syncMs = performance.now() - t0;

    // The worst gap between two /health answers (a poll every 10 ms): a stalled event loop delays the
    // poll in flight or the timer of the next one, so either way the gap holds the stall.
    let done = false;
    let worstMs = 0;
    let polls = 0;
    let last = performance.now();
    const poll = (async () => {
      while (!done) {
        await new Promise((r) => setTimeout(r, 10));
        const res = await fetch(`${server.url}/health`);
        await res.text();
        const now = performance.now();
        worstMs = Math.max(worstMs, now - last);
        last = now;
        polls++;
      }
    })();
    const res = await post(server.url, { prompt: text, max_tokens: 1 });
    done = true;
    await poll;
    // The context (64) is far too small: refused, with the exact count only tokenizing gives.
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('context_length_exceeded');
    expect(res.json.error.message).toContain(`however you requested ${tokens + 1} tokens (${tokens} in prompt`);
    expect(polls).toBeGreaterThan(3);
    // Synchronously, one gap held the whole encode; off the event loop no gap comes near it.
    expect(worstMs).toBeLessThan(syncMs / 2);

    // Streamed, the refusal found after tokenizing is still a 400, before any event stream starts.
    const streamed = await post(server.url, { prompt: text, max_tokens: 1, stream: true });
    expect(streamed.status).toBe(400);
    expect(streamed.json.error.code).toBe('context_length_exceeded');
  } finally {
    await server.close(0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

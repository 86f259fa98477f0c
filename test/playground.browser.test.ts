// The playground (`roost serve --ui`, ui/) in headless Chromium: the page
// loads with no console error, a prompt streams tokens into the page (the
// same text as the HTTP API gives), the novelty shows with the copied span
// highlighted, stop cancels (the engine's sequences return to 0), the suffix
// field fills a middle, chat mode answers as the chat API does, a bad
// parameter shows the server's message, and a
// server with an API key gets it asked for. Needs Chromium:
// /usr/bin/chromium (Debian's `chromium`, which .ci/run installs) or
// $ROOST_CHROMIUM; where there is none the tests are skipped with a message
// saying so. ROOST_SCREENSHOT=FILE saves the page after a generation (the one
// in docs/playground.png).
import * as fs from 'node:fs';
import * as path from 'node:path';

import puppeteer, { Browser, Page } from 'puppeteer-core';

import { ensureKjvCorpus } from '../src/novelty/kjv';
import type { RunningServer } from '../src/server';
import { post, sequences, start, TINY, waitFor } from './http.helpers';

const CHROMIUM = process.env.ROOST_CHROMIUM ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const DEFAULT_MODEL = path.join(__dirname, '..', 'models', 'bigbird');
const LEV = 'Lev1:1 And the LORD called unto Moses';

if (!HAVE_CHROMIUM) {
  // eslint-disable-next-line no-console
  console.warn(`playground browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set ROOST_CHROMIUM)`);
}
const maybe = HAVE_CHROMIUM ? describe : describe.skip;

maybe('the playground in Chromium', () => {
  let s: RunningServer;
  let browser: Browser;
  let page: Page;
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    s = await start(DEFAULT_MODEL, { ui: true, corpora: { kjv: ensureKjvCorpus() }, chatTemplate: path.join(__dirname, '..', 'models', 'templates', 'assistant.jinja') });
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 640 });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(`${s.url}/`);
    await page.waitForSelector('body[data-ready="true"]');
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await s?.close(0);
  });

  async function fill(fields: Record<string, string>): Promise<void> {
    for (const [id, value] of Object.entries(fields)) {
      await page.$eval(`#${id}`, (el, v) => ((el as HTMLInputElement).value = v as string), value);
    }
  }

  async function generate(): Promise<string> {
    await page.click('#generate');
    await page.waitForFunction(() => document.body.dataset.state !== 'running' && document.body.dataset.state !== undefined, { timeout: 60_000 });
    return page.$eval('body', (b) => b.dataset.state!);
  }

  test('loads with no console error, lists the model and the corpus', async () => {
    expect(await page.$$eval('#model option', (o) => o.map((x) => (x as HTMLOptionElement).value))).toEqual(['bigbird']);
    expect(await page.$eval('#corpus', (el) => (el as HTMLSelectElement).value)).toBe('kjv');
    expect(consoleErrors).toEqual([]);
  });

  test('a prompt streams its tokens into the page; the novelty shows with the copied span highlighted', async () => {
    await fill({ prompt: LEV, suffix: '', max_tokens: '64', temperature: '0', logprobs: '5' });
    // Tokens arrive one by one: the page holds some before the request is done.
    await page.click('#generate');
    await page.waitForFunction(() => document.querySelectorAll('#out-tokens .tok').length > 0);
    await page.waitForFunction(() => document.body.dataset.state === 'length', { timeout: 60_000 });
    const want = await post(s.url, { prompt: LEV, max_tokens: 64, temperature: 0, novelty: { corpus: 'kjv' } });
    const choice = want.json.choices[0];
    expect(await page.$$eval('#out-tokens .tok', (t) => t.length)).toBe(64);
    expect(await page.$eval('#out-tokens', (el) => el.textContent)).toBe(choice.text);
    expect(await page.$eval('#out-prompt', (el) => el.textContent)).toBe(LEV);
    // The highlighted tokens spell the longest copy (token = byte here, so exactly).
    expect(await page.$$eval('#out-tokens .tok.copied', (t) => t.map((x) => x.textContent).join(''))).toBe(choice.novelty.longest_copy.text);
    expect(await page.$eval('#copy', (el) => el.textContent)).toBe(
      `Longest copy: ${choice.novelty.longest_copy.length} bytes at corpus offset ${choice.novelty.longest_copy.offset}: ${JSON.stringify(choice.novelty.longest_copy.text)}`,
    );
    expect(await page.$$eval('#novelty tbody td', (t) => t.map((x) => x.textContent))).toEqual(
      choice.novelty.ngrams.map((g: { novel: number }) => `${(100 * g.novel).toFixed(0)}%`),
    );
    // Alternatives on hover: the title of a token lists them with their probabilities.
    expect((await page.$eval('#out-tokens .tok', (el) => (el as HTMLElement).title)).split('\n')).toHaveLength(6);
    expect(await page.$eval('#stats', (el) => el.textContent)).toContain('prompt 37 + completion 64 tokens');
    if (process.env.ROOST_SCREENSHOT) await page.screenshot({ path: process.env.ROOST_SCREENSHOT as `${string}.png`, clip: { x: 0, y: 0, width: 1100, height: 470 } });
    expect(consoleErrors).toEqual([]);
  }, 120_000);

  test('stop cancels: the page says so and the engine frees the sequence', async () => {
    // Greedy from this prompt loops on a phrase and never samples eos (a sampled run may end first).
    // The most the context allows, and stop at the first token: at about 1000 tokens/s, a
    // shorter run or a later click can end by length first on a loaded machine.
    await fill({ prompt: 'Ge1:1 In the beginning', max_tokens: '4000', temperature: '0' });
    await page.click('#generate');
    await page.waitForFunction(() => document.querySelectorAll('#out-tokens .tok').length >= 1);
    await page.click('#stop');
    await page.waitForFunction(() => document.body.dataset.state === 'cancelled', { timeout: 30_000 });
    await waitFor(() => sequences(s) === 0, 10_000, 'the engine to free the sequence');
    expect(await page.$$eval('#out-tokens .tok', (t) => t.length)).toBeLessThan(3000);
    expect(await page.$eval('#stats', (el) => el.textContent)).toMatch(/^finish: cancelled/);
  }, 60_000);

  test('the suffix fills a middle (fill-in-the-middle), as the HTTP API does', async () => {
    const body = { prompt: 'Ge1:1 In the beginning God created the ', suffix: ' and the earth.\n', max_tokens: 12, temperature: 0 };
    await fill({ prompt: body.prompt, suffix: body.suffix, max_tokens: '12', temperature: '0' });
    await generate();
    const want = await post(s.url, body);
    expect(await page.$eval('#out-tokens', (el) => el.textContent)).toBe(want.json.choices[0].text);
    expect(await page.$eval('#out-suffix', (el) => el.textContent)).toBe(body.suffix);
    await fill({ suffix: '' });
  }, 60_000);

  test('chat mode sends the prompt as a user message and shows the reply the chat API gives', async () => {
    await fill({ prompt: 'Who made the heaven and the earth?', suffix: '', max_tokens: '24', temperature: '0' });
    await page.click('#chat');
    try {
      expect(['length', 'stop']).toContain(await generate());
      const r = await fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'Who made the heaven and the earth?' }], max_tokens: 24, temperature: 0 }),
      });
      const want = (await r.json()) as any;
      expect(await page.$eval('#out-tokens', (el) => el.textContent)).toBe(want.choices[0].message.content);
      expect(await page.$eval('#out-prompt', (el) => el.textContent)).toBe('');
      expect(await page.$eval('#novelty', (el) => (el as HTMLElement).hidden)).toBe(true);
    } finally {
      await page.click('#chat');
    }
  }, 60_000);

  test("a bad parameter shows the server's error message", async () => {
    await fill({ temperature: '5', max_tokens: '8' });
    expect(await generate()).toBe('error');
    expect(await page.$eval('#error', (el) => [(el as HTMLElement).hidden, el.textContent])).toEqual([false, 'temperature must be a number from 0 to 2 (got 5)']);
    await fill({ temperature: '0' });
  }, 60_000);

  test('with an API key set, the page asks for it and works once it is given', async () => {
    const keyed = await start(TINY, { ui: true, apiKey: 'k1' });
    const p = await browser.newPage();
    try {
      await p.goto(`${keyed.url}/`);
      await p.waitForSelector('body[data-ready="true"]');
      expect(await p.$eval('#key-row', (el) => (el as HTMLElement).hidden)).toBe(false);
      await p.type('#api-key', 'k1');
      await p.$eval('#api-key', (el) => el.dispatchEvent(new Event('change')));
      await p.waitForFunction(() => document.querySelectorAll('#model option').length > 0);
      await p.$eval('#prompt', (el) => ((el as HTMLTextAreaElement).value = 'Hi'));
      await p.$eval('#max_tokens', (el) => ((el as HTMLInputElement).value = '3'));
      await p.click('#generate');
      await p.waitForFunction(() => document.body.dataset.state === 'length', { timeout: 30_000 });
      expect(await p.$$eval('#out-tokens .tok', (t) => t.length)).toBe(3);
    } finally {
      await p.close();
      await keyed.close(0);
    }
  }, 60_000);
});

test('without --ui there is no page', async () => {
  const s = await start(TINY);
  try {
    const r = await fetch(`${s.url}/`);
    expect(r.status).toBe(404);
  } finally {
    await s.close(0);
  }
});

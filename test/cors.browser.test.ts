// CORS as a browser enforces it: headless Chromium opens a page from one
// origin (a tiny server here) and fetches the Roost server on another port.
// With the page's origin in --allowed-origins the fetch succeeds (after its
// preflight, Authorization included); without, it fails and the POST never
// reaches the server; a text/plain POST (sent without a preflight) gets 415;
// a WebSocket (no CORS in browsers) opens only from an allowed origin.
// Needs Chromium: /usr/bin/chromium (Debian's `chromium`, which .ci/run
// installs) or $ROOST_CHROMIUM.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

import puppeteer, { Browser, Page } from 'puppeteer-core';

import type { RunningServer } from '../src/server';
import { start, TINY } from './http.helpers';

const CHROMIUM = process.env.ROOST_CHROMIUM ?? '/usr/bin/chromium';
const KEY = 'browser-key';

interface FetchResult {
  ok: boolean;
  status?: number;
  body?: any;
  error?: string;
}

/** Runs fetch in the page: the outcome as the page sees it. */
function pageFetch(page: Page, url: string, init: { headers?: Record<string, string>; body: string }): Promise<FetchResult> {
  return page.evaluate(
    async (u, i) => {
      try {
        const r = await fetch(u, { method: 'POST', ...i });
        return { ok: true, status: r.status, body: await r.json() };
      } catch (e) {
        return { ok: false, error: String(e) };
      }
    },
    url,
    init,
  );
}

let pages: http.Server;
let pageOrigin: string;
let allowed: RunningServer;
/** Allows another origin than the page's, and has no API key. */
let other: RunningServer;
const otherLog: string[] = [];
let browser: Browser;
let page: Page;

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium, or set ROOST_CHROMIUM`);
  pages = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>another origin</title>');
  });
  await new Promise<void>((r) => pages.listen(0, '127.0.0.1', r));
  pageOrigin = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
  allowed = await start(TINY, { allowedOrigins: [pageOrigin], apiKey: KEY });
  other = await start(TINY, { allowedOrigins: ['http://127.0.0.1:1'], accessLog: { format: 'json', write: (l) => otherLog.push(l) } });
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  page = await browser.newPage();
  await page.goto(`${pageOrigin}/`);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await allowed?.close(0);
  await other?.close(0);
  await new Promise((r) => pages?.close(r));
});

const json = JSON.stringify({ prompt: 'Hi', max_tokens: 3, temperature: 0 });
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` };

test('the allowed origin: the page reads the completion (preflight with Authorization passed)', async () => {
  const r = await pageFetch(page, `${allowed.url}/v1/completions`, { headers, body: json });
  expect(r).toMatchObject({ ok: true, status: 200 });
  expect(r.body.usage).toEqual({ prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 });
}, 60_000);

test('an origin not allowed: the fetch fails, and the POST never reaches the server', async () => {
  const r = await pageFetch(page, `${other.url}/v1/completions`, { headers, body: json });
  expect(r).toEqual({ ok: false, error: 'TypeError: Failed to fetch' });
  // Only the preflight arrived, and it got no CORS answer.
  expect(otherLog.map((l) => JSON.parse(l)).map((e) => `${e.method} ${e.path}`)).toEqual(['OPTIONS /v1/completions']);
}, 60_000);

test('a text/plain POST (no preflight) is refused with 415, whether or not the page may read the answer', async () => {
  const plain = await pageFetch(page, `${allowed.url}/v1/completions`, { headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'text/plain' }, body: json });
  expect(plain).toMatchObject({ ok: true, status: 415, body: { error: { code: 'unsupported_media_type' } } });
  // From a page that may not call the server (which has no API key, as on a laptop): a simple
  // request is sent without a preflight, so only the 415 stops it from running a completion.
  otherLog.length = 0;
  const r = await pageFetch(page, `${other.url}/v1/completions`, { body: json });
  expect(r).toEqual({ ok: false, error: 'TypeError: Failed to fetch' });
  expect(otherLog.map((l) => JSON.parse(l))).toEqual([expect.objectContaining({ method: 'POST', path: '/v1/completions', status: 415 })]);
}, 60_000);

test('a WebSocket opens from the allowed origin only', async () => {
  const open = (url: string) =>
    page.evaluate(
      (u) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(u.replace(/^http/, 'ws') + '/v1/stream?api_key=' + encodeURIComponent('browser-key'));
          ws.onopen = () => {
            ws.close();
            resolve('open');
          };
          ws.onerror = () => resolve('error');
        }),
      url,
    );
  expect(await open(allowed.url)).toBe('open');
  expect(await open(other.url)).toBe('error');
}, 60_000);

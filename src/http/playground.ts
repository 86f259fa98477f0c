// The playground (`roost serve --ui`, docs/playground.md): the static page in
// ui/ at GET /, plain HTML and JavaScript with no build step, which streams
// over the WebSocket (/v1/stream) and shows each choice's novelty. GET
// /playground/config tells it what the server has (an API key to ask for,
// the corpora it can measure against).
import * as path from 'node:path';

import express, { type Express } from 'express';

import { packageRoot } from '../package-root';

export const UI_DIR = path.join(packageRoot(), 'ui');

export function playgroundRoutes(app: Express, config: { apiKey: boolean; corpora: string[] }): void {
  app.get('/', (_req, res) => res.sendFile(path.join(UI_DIR, 'index.html')));
  app.get('/playground/config', (_req, res) => res.json({ api_key_required: config.apiKey, corpora: config.corpora }));
  app.use('/playground', express.static(UI_DIR, { index: false, fallthrough: true }));
}

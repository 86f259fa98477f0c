// The Express app (no listen here: serve.ts and the tests listen). Routes:
// POST /v1/completions, POST /v1/chat/completions, POST /tokenize and
// /detokenize, GET /version, GET /v1/models, GET /health, GET /metrics; every
// error goes through the catalogue in errors.ts. Before the routes: the request
// id and access log (access-log.ts), then CORS (cors.ts), then the API key.
import express, { NextFunction, Request, Response } from 'express';

import { RequestError, toRequestError } from '../engine/errors';
import type { RuntimeHolder } from '../engine/runtime';
import { DEFAULT_STALL_TIMEOUT_MS } from '../engine/scheduler';
import { AccessLogOptions, accessLog, requestId } from './access-log';
import { adapterRoutes } from './adapter-routes';
import { requireApiKey } from './auth';
import { jsonBody } from './body';
import { chatCompletionsHandler } from './chat-completions';
import { completionsHandler } from './completions';
import { cors } from './cors';
import { datastoreRoutes } from './datastore-routes';
import type { Corpora } from '../novelty/registry';
import type { Datastores } from '../retrieval/registry';
import { playgroundRoutes } from './playground';
import { sendError } from './errors';
import type { Metrics } from './metrics';
import { tokenizeRoutes } from './tokenize-routes';

export interface AppOptions {
  apiKey?: string;
  /** Largest accepted request body, bytes (default 8 MiB: a 128k-token prompt as ids fits). */
  bodyLimit?: number;
  /** `: keep-alive` period on idle streams, ms (default 10 s). */
  keepAliveMs?: number;
  /** A stream whose client reads nothing for this long is ended and its sequences freed, ms (default 60 s). */
  stallTimeoutMs?: number;
  /** POST /v1/load_lora_adapter and /v1/unload_lora_adapter (src/http/adapter-routes.ts). */
  allowAdapterLoading?: boolean;
  /** Origins whose pages may call the API from a browser (`*`: any); default none (src/http/cors.ts). */
  allowedOrigins?: readonly string[];
  /** One line per request (src/http/access-log.ts); absent: no log. */
  accessLog?: AccessLogOptions;
  /** Served datastores: the `retrieval` field and /v1/datastores (src/http/datastore-routes.ts). */
  datastores?: Datastores;
  /** Served novelty corpora: the `novelty` field (src/novelty). */
  corpora?: Corpora;
  /** Serve the playground page at GET / (ui/, docs/playground.md): `--ui`. */
  ui?: boolean;
}

export function createApp(holder: RuntimeHolder, metrics: Metrics, opts: AppOptions = {}): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use(requestId());
  if (opts.accessLog) app.use(accessLog(opts.accessLog));
  app.use(cors(opts.allowedOrigins ?? []));

  // While leaving or draining, every answer closes its connection, so keep-alive clients move to another replica.
  app.use((_req, res, next) => {
    if (holder.status === 'leaving' || holder.status === 'draining') res.setHeader('Connection', 'close');
    next();
  });

  app.get('/health', (_req, res) => {
    if (holder.status === 'ready') res.json({ status: 'ok' });
    else res.status(503).json({ status: holder.status === 'loading' ? 'loading' : 'shutting_down' });
  });

  // The page is public (it holds no data); it asks for the API key when the server has one.
  if (opts.ui) playgroundRoutes(app, { apiKey: opts.apiKey !== undefined, corpora: opts.corpora?.names() ?? [] });

  app.use(requireApiKey(opts.apiKey));

  app.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  });

  // The base model, then each adapter as "base:adapter" with the base as parent (vLLM lists LoRA adapters so).
  const models = () => {
    const rt = holder.require();
    const base = {
      id: rt.modelId,
      object: 'model',
      created: 0,
      owned_by: 'roost',
      max_model_len: rt.info.maxContext > 0 ? rt.info.maxContext : null,
    };
    const adapters = [...rt.adapters.values()].map((a) => ({
      ...base,
      id: `${rt.modelId}:${a.name}`,
      parent: rt.modelId,
      adapter: { name: a.name, type: a.type, prompt_tokens: a.promptTokens },
    }));
    return [{ ...base, parent: null }, ...adapters];
  };
  app.get('/v1/models', (_req, res) => {
    res.json({ object: 'list', data: models() });
  });
  app.get('/v1/models/:id', (req, res) => {
    const m = models().find((x) => x.id === req.params.id);
    if (!m) throw new RequestError('model_not_found', `The model ${JSON.stringify(req.params.id)} does not exist`, 'model');
    res.json(m);
  });

  adapterRoutes(app, holder, opts.allowAdapterLoading ?? false);
  datastoreRoutes(app, holder, opts.datastores, opts.bodyLimit ?? 8 << 20);
  const generation = {
    keepAliveMs: opts.keepAliveMs ?? 10_000,
    stallTimeoutMs: opts.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
    datastores: opts.datastores,
    corpora: opts.corpora,
  };
  app.post('/v1/completions', jsonBody(opts.bodyLimit ?? 8 << 20), completionsHandler(holder, generation));
  app.all('/v1/completions', (req) => {
    throw new RequestError('not_found', `${req.method} /v1/completions is not supported: use POST`);
  });
  // Chat Completions and vLLM's /tokenize, /detokenize, /version (src/http/chat-completions.ts, tokenize-routes.ts).
  app.post('/v1/chat/completions', jsonBody(opts.bodyLimit ?? 8 << 20), chatCompletionsHandler(holder, generation));
  app.all('/v1/chat/completions', (req) => {
    throw new RequestError('not_found', `${req.method} /v1/chat/completions is not supported: use POST`);
  });
  tokenizeRoutes(app, holder, jsonBody(opts.bodyLimit ?? 8 << 20));

  app.use((req: Request) => {
    throw new RequestError('not_found', `no route for ${req.method} ${req.path}`);
  });

  // Express recognises an error handler by its four parameters.
  app.use((e: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const err = malformedUrlError(e) ?? toRequestError(e);
    metrics.countError(err.code);
    sendError(res, err.code === 'server_error' ? e : err);
  });
  return app;
}

/** The router's failure to percent-decode a path parameter (GET /v1/models/%) is the client's mistake. */
function malformedUrlError(e: unknown): RequestError | undefined {
  if (!(e instanceof URIError)) return undefined;
  return new RequestError('invalid_parameter', `the request path is not valid percent-encoding: ${e.message}`);
}

// The composition root of `roost serve`: loads the model, builds the
// scheduler, attaches the HTTP app and the WebSocket gateway (which know
// neither each other nor the addon). Listens at once (GET /health answers
// 503 while the model loads), loads the model, then prints
// `listening on http://HOST:PORT`.
// SIGTERM / SIGINT: refuse new requests (503 shutting_down, still listening so
// clients get that answer rather than a refused connection), let in-flight
// requests finish within the grace period, cancel the rest, close.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

import { loadAdapterDir } from './engine/adapters';
import { loadChatTemplate } from './engine/chat-template';
import { RuntimeHolder } from './engine/runtime';
import { SchedulerOptions } from './engine/scheduler';
import { loadTokenizer } from './engine/tokenizer';
import { Engine, native, Quantize } from './native';
import { Gateway, GatewayOptions } from './ws/gateway';
import type { AccessLogOptions } from './http/access-log';
import { AppOptions, createApp } from './http/app';
import { HttpTimeouts, keepHalfOpenClients, serverOptions } from './http/limits';
import { Metrics } from './http/metrics';
import { Datastores } from './retrieval/registry';

export interface ServeOptions {
  /** Checkpoint folder or GGUF file (already resolved). */
  model: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  device?: 'cpu' | 'cuda' | 'auto';
  threads?: number;
  /** "q8_0": weight matrices quantized at load (src/native LoadOptions.quantize). */
  quantize?: Quantize;
  maxBatch?: number;
  maxQueue?: number;
  maxRequestShare?: number;
  /** Bytes of the paged KV pool (LoadOptions.kvMemory; absent: the engine's default). */
  kvMemory?: number;
  /** Reuse cached KV blocks of shared prompt prefixes (default true; --no-prefix-cache). */
  prefixCache?: boolean;
  apiKey?: string;
  /** A folder of adapter folders (or one adapter folder) to serve beside the model. */
  adapters?: string;
  /** POST /v1/load_lora_adapter and /v1/unload_lora_adapter at run time. */
  allowAdapterLoading?: boolean;
  /** Origins whose pages may call the API from a browser (`*`: any); default none. */
  allowedOrigins?: string[];
  /** One line per HTTP request; absent: no access log. */
  accessLog?: AccessLogOptions;
  /** A Jinja chat template file replacing the model's (src/engine/chat-template.ts). */
  chatTemplate?: string;
  /** The name in GET /v1/models and `model` (default: the folder's name). */
  modelId?: string;
  requestTimeoutMs?: number;
  /** A stream (SSE or WebSocket) whose client reads nothing for this long is ended, ms (default 60 s). */
  stallTimeoutMs?: number;
  /** Header and body receive timeouts (src/http/limits.ts). */
  http?: HttpTimeouts;
  stepTokens?: number;
  /** How long in-flight requests may run after SIGTERM, ms. */
  shutdownGraceMs?: number;
  /** Datastores served for retrieval, name -> folder (`--datastore NAME=DIR`). */
  datastores?: Record<string, string>;
  app?: Omit<AppOptions, 'apiKey'>;
  ws?: Omit<GatewayOptions, 'apiKey'>;
}

export interface RunningServer {
  url: string;
  server: http.Server;
  holder: RuntimeHolder;
  metrics: Metrics;
  gateway: Gateway;
  /** Graceful stop: refuse new work, wait up to graceMs for running requests, cancel the rest, close. */
  close(graceMs?: number): Promise<void>;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Listens, then loads the model; resolves once requests are served. */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const holder = new RuntimeHolder();
  const metrics = new Metrics(() => holder.runtime);
  const stall = opts.stallTimeoutMs !== undefined ? { stallTimeoutMs: opts.stallTimeoutMs } : {};
  const datastores = opts.datastores ? new Datastores(opts.datastores) : undefined;
  const app = createApp(holder, metrics, {
    allowAdapterLoading: opts.allowAdapterLoading,
    allowedOrigins: opts.allowedOrigins,
    accessLog: opts.accessLog,
    datastores,
    ...stall,
    ...opts.app,
    apiKey: opts.apiKey,
  });
  // The request timeouts bound only receiving a request; a response (a long stream) may take longer.
  const server = http.createServer(serverOptions(opts.http), app);
  keepHalfOpenClients(server);
  server.keepAliveTimeout = 65_000;
  const gateway = new Gateway(holder, { allowedOrigins: opts.allowedOrigins ?? [], ...stall, datastores, ...opts.ws, apiKey: opts.apiKey });
  gateway.attach(server);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${hostForUrl(opts.host)}:${port}`;

  let closing: Promise<void> | undefined;
  const close = (graceMs = opts.shutdownGraceMs ?? 30_000) =>
    (closing ??= (async () => {
      holder.status = 'draining';
      server.closeIdleConnections();
      await holder.runtime?.scheduler.drain(graceMs);
      gateway.close();
      await holder.runtime?.tokenizeWorker?.close();
      const stopped = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await stopped;
    })());

  try {
    const tokenizer = loadTokenizer(opts.model);
    if (datastores) {
      // A datastore that cannot be opened is reported and refused per request; the server still serves.
      datastores.open(tokenizer);
      for (const [name, why] of datastores.errors()) process.stderr.write(`roost serve: datastore ${name} unavailable: ${why}\n`);
    }
    // Before the weights load: a bad --chat-template fails at once.
    const chatTemplate = loadChatTemplate(opts.model, tokenizer, opts.chatTemplate);
    const engine = await Engine.load(opts.model, {
      device: opts.device ?? 'cpu',
      ...(opts.threads ? { threads: opts.threads } : {}),
      ...(opts.kvMemory ? { kvMemory: opts.kvMemory } : {}),
      prefixCache: opts.prefixCache !== false,
      ...(opts.quantize ? { quantize: opts.quantize } : {}),
    });
    const info = engine.info();
    process.stderr.write(`roost serve: ${path.basename(opts.model)} on ${info.device === 'cuda' ? `cuda (${native().cuda().device})` : `cpu (${info.threads} threads, ${info.isa})`}${opts.quantize ? `, weights ${opts.quantize}` : ''}\n`);
    if (opts.adapters !== undefined) {
      for (const a of loadAdapterDir(engine, opts.adapters, opts.model)) {
        process.stderr.write(`roost serve: adapter ${a.name} (${a.type}${a.promptTokens ? `, ${a.promptTokens} virtual tokens` : ''})\n`);
      }
    }
    const schedulerOptions: Partial<SchedulerOptions> = {};
    if (opts.maxBatch !== undefined) schedulerOptions.maxBatch = opts.maxBatch;
    if (opts.maxQueue !== undefined) schedulerOptions.maxQueue = opts.maxQueue;
    if (opts.maxRequestShare !== undefined) schedulerOptions.maxRequestShare = opts.maxRequestShare;
    if (opts.requestTimeoutMs !== undefined) schedulerOptions.requestTimeoutMs = opts.requestTimeoutMs;
    if (opts.stepTokens !== undefined) schedulerOptions.stepTokens = opts.stepTokens;
    // n / best_of siblings wait for the first to prefill when the engine can hand them its blocks.
    schedulerOptions.prefixCache = opts.prefixCache !== false && engine.stats().kvBlockRows > 0;
    const rt = holder.attach(engine, tokenizer, opts.modelId ?? path.basename(path.resolve(opts.model)), schedulerOptions, {
      scheduler: metrics.scheduler,
      completion: metrics.completion,
    });
    rt.modelDir = opts.model;
    rt.chatTemplate = chatTemplate;
  } catch (e) {
    await close(0);
    throw e;
  }
  return { url, server, holder, metrics, gateway, close };
}

/** The serve command: runs until SIGTERM / SIGINT, then shuts down gracefully. */
export async function serve(opts: ServeOptions): Promise<void> {
  const running = await startServer(opts);
  process.stdout.write(`listening on ${running.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.stderr.write(`roost serve: ${signal}: finishing in-flight requests\n`);
      running.close().then(resolve, resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

// The composition root of `roost serve`: loads the model, builds the
// scheduler, attaches the HTTP app and the WebSocket gateway (which know
// neither each other nor the addon). Listens at once (GET /health answers
// 503 while the model loads), loads the model, then prints
// `listening on http://HOST:PORT`.
// SIGTERM: for --drain-seconds GET /health answers 503 while everything else
// is still served (a balancer's health check takes the replica out of
// rotation), then new requests get 503 shutting_down (still listening, so a
// client gets that answer rather than a refused connection; a balancer retries
// them on another replica), WebSocket connections close with 1012 once idle, and running
// requests (streams included) finish within the grace period; the rest are
// cancelled, and the process exits 0. SIGINT (Ctrl-C) and a second signal skip
// the health period.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

import { loadAdapterDir } from './engine/adapters';
import { loadChatTemplate } from './engine/chat-template';
import { RuntimeHolder } from './engine/runtime';
import { SchedulerOptions } from './engine/scheduler';
import { loadTokenizer } from './engine/tokenizer';
import { Engine, KvCacheDtype, native, Quantize } from './native';
import { Gateway, GatewayOptions } from './ws/gateway';
import type { AccessLogOptions } from './http/access-log';
import { AppOptions, createApp } from './http/app';
import { HttpTimeouts, keepHalfOpenClients, serverOptions } from './http/limits';
import { Metrics } from './http/metrics';
import { Corpora } from './novelty/registry';
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
  /** The KV cache's element type (LoadOptions.kvCacheDtype; absent: auto). */
  kvCacheDtype?: KvCacheDtype;
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
  /** Novelty corpora, name -> folder (`--corpus NAME=DIR`, src/novelty). */
  corpora?: Record<string, string>;
  /** The playground page at GET / (`--ui`). */
  ui?: boolean;
  /** How long /health answers 503 after SIGTERM before new requests are refused, ms (serve(): default DEFAULT_DRAIN_MS; close(): 0). */
  drainMs?: number;
  app?: Omit<AppOptions, 'apiKey'>;
  ws?: Omit<GatewayOptions, 'apiKey'>;
}

export interface RunningServer {
  url: string;
  server: http.Server;
  holder: RuntimeHolder;
  metrics: Metrics;
  gateway: Gateway;
  /**
   * Graceful stop: fail /health for drainMs while serving (skipped when 0 or by
   * skipDrain), then stop accepting, wait up to graceMs for running requests,
   * cancel the rest, close.
   */
  close(graceMs?: number, drainMs?: number): Promise<void>;
  /** Ends close()'s health-fail period now. */
  skipDrain(): void;
}

/** Default --drain-seconds: a few health-check periods of a balancer or a Kubernetes readiness probe. */
export const DEFAULT_DRAIN_MS = 5_000;

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Listens, then loads the model; resolves once requests are served. */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const holder = new RuntimeHolder();
  const metrics = new Metrics(() => holder.runtime);
  const stall = opts.stallTimeoutMs !== undefined ? { stallTimeoutMs: opts.stallTimeoutMs } : {};
  const datastores = opts.datastores ? new Datastores(opts.datastores) : undefined;
  const corpora = opts.corpora ? new Corpora(opts.corpora) : undefined;
  const app = createApp(holder, metrics, {
    corpora,
    ui: opts.ui,
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
  const gateway = new Gateway(holder, { allowedOrigins: opts.allowedOrigins ?? [], ...stall, datastores, corpora, allowOwnOrigin: opts.ui === true, ...opts.ws, apiKey: opts.apiKey });
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
  let endHealthPeriod = () => {};
  const close = (graceMs = opts.shutdownGraceMs ?? 30_000, drainMs = opts.drainMs ?? 0) =>
    (closing ??= (async () => {
      if (drainMs > 0 && holder.status === 'ready') {
        holder.status = 'leaving';
        await new Promise<void>((r) => {
          const timer = setTimeout(r, drainMs);
          endHealthPeriod = () => {
            clearTimeout(timer);
            r();
          };
        });
      }
      // Still listening: a new request gets 503 shutting_down (a balancer retries it elsewhere; a
      // direct client learns why), not a refused connection.
      holder.status = 'draining';
      server.closeIdleConnections();
      gateway.drain();
      await holder.runtime?.scheduler.drain(graceMs);
      gateway.close();
      await holder.runtime?.tokenizeWorker?.close();
      // Stop listening; the callback runs once every connection has ended. Let finished responses
      // and WebSocket close handshakes flush before cutting what is left.
      const stopped = new Promise<void>((r) => server.close(() => r()));
      await Promise.race([stopped, new Promise((r) => setTimeout(r, 2_000).unref())]);
      server.closeAllConnections();
      await stopped;
    })());
  const skipDrain = () => endHealthPeriod();

  try {
    const tokenizer = loadTokenizer(opts.model);
    if (datastores) {
      // A datastore that cannot be opened is reported and refused per request; the server still serves.
      datastores.open(tokenizer);
      for (const [name, why] of datastores.errors()) process.stderr.write(`roost serve: datastore ${name} unavailable: ${why}\n`);
    }
    if (corpora) {
      corpora.open(tokenizer);
      for (const [name, why] of corpora.errors()) process.stderr.write(`roost serve: corpus ${name} unavailable: ${why}\n`);
    }
    // Before the weights load: a bad --chat-template fails at once.
    const chatTemplate = loadChatTemplate(opts.model, tokenizer, opts.chatTemplate);
    const engine = await Engine.load(opts.model, {
      device: opts.device ?? 'cpu',
      ...(opts.threads ? { threads: opts.threads } : {}),
      ...(opts.kvMemory ? { kvMemory: opts.kvMemory } : {}),
      prefixCache: opts.prefixCache !== false,
      ...(opts.quantize ? { quantize: opts.quantize } : {}),
      ...(opts.kvCacheDtype ? { kvCacheDtype: opts.kvCacheDtype } : {}),
    });
    const info = engine.info();
    process.stderr.write(`roost serve: ${path.basename(opts.model)} on ${info.device === 'cuda' ? `cuda (${native().cuda().device})` : `cpu (${info.threads} threads, ${info.isa})`}${opts.quantize ? `, weights ${opts.quantize}` : ''}, kv cache ${info.kvCacheDtype}\n`);
    if (opts.adapters !== undefined) {
      for (const a of loadAdapterDir(engine, opts.adapters, opts.model)) {
        process.stderr.write(`roost serve: adapter ${a.name} (${a.type}${a.promptTokens ? `, ${a.promptTokens} virtual tokens` : ''})\n`);
      }
    }
    if (datastores) {
      datastores.loadMemories((name, dir) => engine.loadMemory(name, dir));
      for (const d of datastores.list()) {
        const m = d.knn_memory as { entries?: number; error?: string } | undefined;
        if (m?.entries !== undefined) process.stderr.write(`roost serve: datastore ${d.name as string}: kNN memory of ${m.entries} entries\n`);
        if (m?.error !== undefined) process.stderr.write(`roost serve: datastore ${d.name as string}: kNN memory unavailable: ${m.error}\n`);
      }
    }
    const schedulerOptions: Partial<SchedulerOptions> = {};
    if (opts.maxBatch !== undefined) schedulerOptions.maxBatch = opts.maxBatch;
    if (opts.maxQueue !== undefined) schedulerOptions.maxQueue = opts.maxQueue;
    if (opts.maxRequestShare !== undefined) schedulerOptions.maxRequestShare = opts.maxRequestShare;
    if (opts.requestTimeoutMs !== undefined) schedulerOptions.requestTimeoutMs = opts.requestTimeoutMs;
    if (opts.stepTokens !== undefined) schedulerOptions.stepTokens = opts.stepTokens;
    // n / best_of siblings wait for the first to prefill when the engine can hand them its blocks (or state copies).
    schedulerOptions.prefixCache = engine.stats().prefixCache;
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
  return { url, server, holder, metrics, gateway, close, skipDrain };
}

/** The serve command: runs until SIGTERM / SIGINT, then shuts down gracefully. */
export async function serve(opts: ServeOptions): Promise<void> {
  const running = await startServer(opts);
  process.stdout.write(`listening on ${running.url}\n`);
  await new Promise<void>((resolve) => {
    // The first signal starts the shutdown; a second ends the health period; a third has the default effect (the process dies).
    const again = () => {
      process.off('SIGTERM', again);
      process.off('SIGINT', again);
      running.skipDrain();
    };
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.once('SIGTERM', again);
      process.once('SIGINT', again);
      const drainMs = signal === 'SIGINT' ? 0 : (opts.drainMs ?? DEFAULT_DRAIN_MS);
      process.stderr.write(
        drainMs > 0
          ? `roost serve: ${signal}: /health fails for ${drainMs / 1000} s, then finishing in-flight requests\n`
          : `roost serve: ${signal}: finishing in-flight requests\n`,
      );
      running.close(undefined, drainMs).then(resolve, resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

// roost serve: the HTTP and WebSocket server (src/server.ts) on one model.
import * as path from 'node:path';

import { Command } from 'commander';

import { DEFAULT_SCHEDULER_OPTIONS, DEFAULT_STALL_TIMEOUT_MS } from '../engine/scheduler';
import { LOG_FORMATS, LogFormat } from '../http/access-log';
import { normalizeOrigin } from '../engine/origins';
import { DEFAULT_DRAIN_MS, serve } from '../server';
import { flag, integer, nonEmpty, number, oneOf, Parse, seconds, UsageError } from './flags';
import { ModelFlags, modelFlags, resolveModel } from './model';

interface ServeFlags extends ModelFlags {
  adapters?: string;
  allowAdapterLoading?: boolean;
  host: string;
  port: number;
  maxBatch: number;
  maxQueue: number;
  maxRequestShare: number;
  apiKey?: string;
  requestTimeout: number;
  stallTimeout: number;
  drainSeconds: number;
  allowedOrigins?: string[];
  logFormat: LogFormat;
  quiet?: boolean;
  chatTemplate?: string;
  kvMemory?: number;
  prefixCache: boolean;
  datastore?: Record<string, string>;
  corpus?: Record<string, string>;
  ui?: boolean;
}

/** ORIGIN[,ORIGIN...] as the browser writes Origin, or `*`. */
const origins: Parse<string[]> = (v, name) =>
  v.split(',').map((o) => {
    const origin = normalizeOrigin(o.trim());
    if (origin === undefined) throw new UsageError(`${name} must be * or comma-separated origins such as http://localhost:3000 (got ${JSON.stringify(o.trim())})`);
    return origin;
  });

/** NAME=DIR, repeatable: the served datastores (or corpora) by name. */
const namedDir: Parse<Record<string, string>> = (v, name, previous) => {
  const m = /^([^=]+)=(.+)$/.exec(v);
  if (!m) throw new UsageError(`${name} must be NAME=DIR (got ${v})`);
  if (previous?.[m[1]] !== undefined) throw new UsageError(`${name}: the name ${m[1]} is given twice`);
  return { ...previous, [m[1]]: path.resolve(m[2]) };
};

const D = DEFAULT_SCHEDULER_OPTIONS;

export function serveCommand(): Command {
  const cmd = new Command('serve')
    .description('Serve the model over HTTP (OpenAI-compatible) and WebSocket until SIGTERM or SIGINT.')
    .usage('--model DIR [options]');
  return modelFlags(cmd)
    .addOption(flag('--host <h>', 'the address to listen on', undefined, '127.0.0.1'))
    .addOption(flag('--port <p>', 'the port to listen on; 0 picks a free one', integer(0, 'an integer from 0 to 65535 (0 = a free port)', 65535), 8080))
    .addOption(flag('--kv-memory <bytes>', 'bytes of paged KV blocks at most (default: half the memory available once the weights are loaded; docs/design.md)', integer(1, 'a positive number of bytes')))
    .addOption(flag('--no-prefix-cache', 'prefill every prompt in full: no reuse of cached KV blocks across requests'))
    .addOption(flag('--api-key <k>', 'require Authorization: Bearer <k> on every route but /health (default: no key)', nonEmpty))
    .addOption(flag('--adapters <dir>', 'a folder of adapter folders (or one adapter folder) to serve beside the model (default: --adapter)'))
    .addOption(flag('--allow-adapter-loading', 'allow POST /v1/load_lora_adapter and /v1/unload_lora_adapter (they read server paths)'))
    .addOption(flag('--max-batch <n>', 'sequences decoded together at most', integer(1, 'a positive integer'), D.maxBatch))
    .addOption(flag('--max-queue <n>', 'requests waiting for a slot at most; beyond, 429', integer(0, 'an integer >= 0'), D.maxQueue))
    .addOption(
      flag(
        '--max-request-share <f>',
        "while another request waits, no request's n / best_of holds more than floor(F x --max-batch) slots",
        number((x) => x > 0 && x <= 1, 'a number above 0 and at most 1'),
        D.maxRequestShare,
      ),
    )
    .addOption(flag('--request-timeout <seconds>', 'a request still running this long after it was queued ends with 504; 0 is none', seconds('zero'), D.requestTimeoutMs, String(D.requestTimeoutMs / 1000)))
    .addOption(
      flag(
        '--stall-timeout <seconds>',
        'a stream whose client reads nothing for this long is ended',
        seconds('positive'),
        DEFAULT_STALL_TIMEOUT_MS,
        String(DEFAULT_STALL_TIMEOUT_MS / 1000),
      ),
    )
    .addOption(
      flag(
        '--drain-seconds <seconds>',
        'after SIGTERM, /health answers 503 this long while requests are still served (a balancer stops sending), then new requests get 503 and running ones finish',
        seconds('zero'),
        DEFAULT_DRAIN_MS,
        String(DEFAULT_DRAIN_MS / 1000),
      ),
    )
    .addOption(flag('--allowed-origins <origins>', 'ORIGIN[,ORIGIN...] (scheme://host[:port]) whose web pages may call the API from a browser (CORS); * for any (default: none)', origins))
    .addOption(flag('--log-format <format>', 'the access log on stderr, one line per request: text or json', oneOf<LogFormat>(...LOG_FORMATS), 'text' as LogFormat))
    .addOption(flag('--quiet', 'no access log'))
    .addOption(flag('--datastore <name=dir>', 'serve the datastore folder DIR as NAME for the `retrieval` field and /v1/datastores (repeatable; docs/retrieval.md)', namedDir))
    .addOption(flag('--corpus <name=dir>', 'serve the corpus folder DIR (roost corpus build) as NAME for the `novelty` field (repeatable; docs/novelty.md)', namedDir))
    .addOption(flag('--ui', 'serve the playground page at GET / (docs/playground.md)'))
    .addOption(flag('--chat-template <file>', "a Jinja chat template for /v1/chat/completions and /tokenize, replacing the model's (tokenizer_config.json chat_template)"))
    .action(runServe);
}

async function runServe(flags: ServeFlags): Promise<void> {
  await serve({
    model: resolveModel(flags.model),
    host: flags.host,
    port: flags.port,
    device: flags.device,
    threads: flags.threads,
    quantize: flags.quantize,
    kvCacheDtype: flags.kvCacheDtype,
    maxBatch: flags.maxBatch,
    maxQueue: flags.maxQueue,
    maxRequestShare: flags.maxRequestShare,
    apiKey: flags.apiKey,
    requestTimeoutMs: flags.requestTimeout,
    stallTimeoutMs: flags.stallTimeout,
    drainMs: flags.drainSeconds,
    adapters: flags.adapters ?? flags.adapter,
    allowAdapterLoading: flags.allowAdapterLoading === true,
    allowedOrigins: flags.allowedOrigins,
    chatTemplate: flags.chatTemplate,
    datastores: flags.datastore,
    corpora: flags.corpus,
    ui: flags.ui === true,
    kvMemory: flags.kvMemory,
    prefixCache: flags.prefixCache,
    accessLog: flags.quiet ? undefined : { format: flags.logFormat, write: (line) => process.stderr.write(line) },
  });
}

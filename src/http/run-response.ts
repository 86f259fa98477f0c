// The answer of a started completion run, shared by the completion routes
// (/v1/completions, /v1/chat/completions): awaited whole, or streamed as
// server-sent events. Both note the run's usage for the access log and cancel
// the run when the client goes away (its sequences are freed at once).
import type { Request, Response } from 'express';

import type { CompletionRun, CompletionResult, Usage } from '../engine/completion';
import { toRequestError } from '../engine/errors';
import { noteUsage } from './access-log';
import { probeHalfClosedClient } from './limits';
import { SseStream } from './sse';

function cancelOnClose(res: Response, run: CompletionRun): void {
  res.on('close', () => {
    if (!res.writableFinished) run.cancel();
  });
}

/**
 * The whole result of a non-streamed run; undefined when the client went
 * away meanwhile. A half-closed client is probed with 102 Processing.
 */
export async function awaitRun(req: Request, res: Response, run: CompletionRun): Promise<CompletionResult | undefined> {
  noteUsage(res, run.result);
  cancelOnClose(res, run);
  probeHalfClosedClient(req, res, () => {
    if (!res.headersSent) res.writeProcessing();
  });
  const result = await run.result;
  return res.destroyed ? undefined : result;
}

/**
 * The streamed answer of a started run, shared by the completion routes: a
 * client that goes away cancels it; once it is accepted (a refusal before that
 * is still a 4xx) the 200 event stream opens (`open` sends any first chunks),
 * then the usage chunk `usage` returns (if any) and `[DONE]`; an error after
 * the headers is reported in-band, as OpenAI-compatible servers do. `attach`
 * hands the stream to the run's event callbacks.
 */
export async function streamRun(
  req: Request,
  res: Response,
  run: CompletionRun,
  opts: { keepAliveMs: number; stallTimeoutMs: number },
  attach: (sse: SseStream) => void,
  usage: (u: Usage) => object | null,
): Promise<void> {
  noteUsage(res, run.result);
  cancelOnClose(res, run);
  // A large prompt is still being tokenized (off the event loop): a refusal is still a 4xx.
  await run.accepted;
  if (res.destroyed) return;
  const sse = new SseStream(res, opts.keepAliveMs, (paused) => run.setPaused(paused), opts.stallTimeoutMs);
  attach(sse);
  probeHalfClosedClient(req, res, () => sse.probe());
  try {
    const result = await run.result;
    const chunk = usage(result.usage);
    if (chunk) sse.send(chunk);
  } catch (e) {
    sse.send(toRequestError(e).body());
  }
  sse.done();
}

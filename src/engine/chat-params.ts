// A Chat Completions request (POST /v1/chat/completions, the WebSocket's
// "chat" message) as the completion path takes it: the chat-only fields are
// checked here (messages, logprobs as a boolean with top_logprobs,
// max_completion_tokens), the messages are rendered with the chat template and
// tokenized, and the rest of the body goes to parseCompletionBody with the
// prompt as token ids, so every sampling field is validated in one place
// (src/engine/params.ts) and runs through the one generation loop.
import { resolveTarget } from './adapters';
import type { ChatMessage, ChatTemplate } from './chat-template';
import { noChatTemplate } from './chat-template';
import { CompletionEvents, CompletionRun, deferredRun, ModelRuntime, startCompletion } from './completion';
import { describe, invalidParam, RequestError } from './errors';
import { CompletionParams, LIMITS, parseCompletionBody, STREAM_FIELDS } from './params';
import { OFF_THREAD_PROMPT_BYTES } from './tokenize-offthread';

/** max_tokens when neither it nor max_completion_tokens is given and the model's context is unbounded. */
export const DEFAULT_CHAT_MAX_TOKENS_UNBOUNDED = 1024;

type Obj = Record<string, unknown>;

const ROLES = ['system', 'user', 'assistant'];

/** Legacy Completions fields a chat request may not carry (it has messages, and logprobs is a boolean here). */
const LEGACY_ONLY = ['prompt', 'suffix', 'echo', 'best_of', 'novelty'];
/** OpenAI chat fields Roost does not implement (docs/api.md, "Not supported"). */
const UNSUPPORTED = ['tools', 'tool_choice', 'parallel_tool_calls', 'functions', 'function_call', 'response_format', 'modalities', 'audio'];

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function present(o: Obj, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k) && o[k] !== null && o[k] !== undefined;
}

/** A message's content: a string, or text parts joined by "\n" (as vLLM's "string" content format does). */
function content(v: unknown, at: string): string {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) throw invalidParam(`${at}.content`, 'a string or an array of {"type": "text", "text": ...} parts', v);
  return v
    .map((part, j) => {
      const name = `${at}.content[${j}]`;
      if (!isObject(part)) throw invalidParam(name, 'an object {"type": "text", "text": ...}', part);
      if (part.type !== 'text') {
        if (typeof part.type === 'string') {
          throw new RequestError('unsupported_parameter', `${name}.type ${describe(part.type)} is not supported: only "text" parts are`, `${name}.type`);
        }
        throw invalidParam(`${name}.type`, '"text"', part.type);
      }
      if (typeof part.text !== 'string') throw invalidParam(`${name}.text`, 'a string', part.text);
      for (const k of Object.keys(part)) {
        if (k !== 'type' && k !== 'text') throw new RequestError('unknown_parameter', `Unrecognized content part argument supplied: ${name}.${k}`, `${name}.${k}`);
      }
      return part.text;
    })
    .join('\n');
}

/** messages: a non-empty array of {role: system|user|assistant, content, name?}. */
export function parseMessages(v: unknown): ChatMessage[] {
  if (v === undefined || v === null) throw new RequestError('invalid_parameter', 'messages is required', 'messages');
  if (!Array.isArray(v)) throw invalidParam('messages', 'an array of messages', v);
  if (v.length === 0) throw new RequestError('invalid_parameter', 'messages must not be empty', 'messages');
  return v.map((m, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m)) throw invalidParam(at, 'an object {"role": ..., "content": ...}', m);
    if (typeof m.role !== 'string' || !ROLES.includes(m.role)) {
      throw invalidParam(`${at}.role`, '"system", "user" or "assistant"', m.role);
    }
    if (!present(m, 'content')) throw new RequestError('invalid_parameter', `${at}.content is required`, `${at}.content`);
    const msg: ChatMessage & { name?: string } = { role: m.role, content: content(m.content, at) };
    for (const k of Object.keys(m)) {
      if (k === 'role' || k === 'content') continue;
      if (k === 'name') {
        if (typeof m.name !== 'string') throw invalidParam(`${at}.name`, 'a string', m.name);
        msg.name = m.name;
      } else if (k === 'tool_calls' || k === 'function_call' || k === 'tool_call_id') {
        throw new RequestError('unsupported_parameter', `${at}.${k} is not supported: Roost has no tool calling`, `${at}.${k}`);
      } else {
        throw new RequestError('unknown_parameter', `Unrecognized message argument supplied: ${at}.${k}`, `${at}.${k}`);
      }
    }
    return msg;
  });
}

/** The chat-only fields of a body, checked; `rest` is what parseCompletionBody validates. */
export interface ChatFields {
  messages: ChatMessage[];
  /** Top alternatives per token (top_logprobs), or null when logprobs is off. */
  logprobs: number | null;
  /** max_completion_tokens, else max_tokens; null = the rest of the context. */
  maxTokens: number | null;
  rest: Obj;
}

function maxTokensField(o: Obj, k: string): number | null {
  if (!present(o, k)) return null;
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > LIMITS.maxTokens) throw invalidParam(k, `an integer from 0 to ${LIMITS.maxTokens}`, v);
  return v;
}

/** Checks the chat-only fields of a request body (HTTP) or message (WebSocket, without type / id). */
export function parseChatFields(body: unknown): ChatFields {
  if (!isObject(body)) throw new RequestError('invalid_parameter', `the request body must be a JSON object (got ${describe(body)})`, null);
  for (const k of LEGACY_ONLY) {
    if (k in body) {
      throw new RequestError('unknown_parameter', `Unrecognized request argument supplied: ${JSON.stringify(k)} (a /v1/completions field; chat requests send messages)`, k);
    }
  }
  for (const k of UNSUPPORTED) {
    if (present(body, k)) throw new RequestError('unsupported_parameter', `${k} is not supported: Roost has no tool calling, structured output or audio (docs/api.md)`, k);
  }
  const { messages, logprobs, top_logprobs: top, max_tokens: _mt, max_completion_tokens: _mct, ...rest } = body;
  const parsed = parseMessages(messages);
  let want = false;
  if (present(body, 'logprobs')) {
    if (typeof logprobs !== 'boolean') throw invalidParam('logprobs', 'a boolean (the chat API; top_logprobs gives the count)', logprobs);
    want = logprobs;
  }
  let k = 0;
  if (present(body, 'top_logprobs')) {
    if (typeof top !== 'number' || !Number.isInteger(top) || top < 0 || top > LIMITS.logprobs) throw invalidParam('top_logprobs', `an integer from 0 to ${LIMITS.logprobs}`, top);
    if (!want) throw new RequestError('invalid_parameter', 'top_logprobs needs logprobs: true', 'top_logprobs');
    k = top;
  }
  const legacyMax = maxTokensField(body, 'max_tokens'); // validated even when max_completion_tokens wins
  const maxTokens = maxTokensField(body, 'max_completion_tokens') ?? legacyMax;
  return { messages: parsed, logprobs: want ? k : null, maxTokens, rest };
}

/**
 * What in-context retrieval searches for on a chat request: the last user message
 * (undefined when there is none: then the rendered prompt's end, as for a completion).
 */
export function retrievalQuery(messages: ChatMessage[]): string | undefined {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i].role === 'user') return messages[i].content;
  return undefined;
}

/** The prompt text of a chat request, rendered with the served model's template. */
export function renderChat(rt: ModelRuntime, messages: ChatMessage[], addGenerationPrompt = true): { text: string; template: ChatTemplate } {
  const template = rt.chatTemplate;
  if (!template) throw noChatTemplate(rt.modelId);
  return { text: template.render(messages, addGenerationPrompt), template };
}

/**
 * A rendered prompt's ids without the tokenizer's added special tokens (the
 * template writes its own, as transformers and vLLM do for chat); large
 * prompts are tokenized off the event loop.
 */
export function encodeRendered(rt: ModelRuntime, text: string, addSpecialTokens = false): number[] | Promise<number[]> {
  if (rt.tokenizeWorker && Buffer.byteLength(text, 'utf8') >= OFF_THREAD_PROMPT_BYTES) {
    return rt.tokenizeWorker.encode([text], { addSpecialTokens }).then((ids) => ids[0]);
  }
  return rt.tokenizer.encode(text, { addSpecialTokens });
}

/**
 * The completion params of a chat request whose prompt is `ids`: the default
 * max_tokens is the rest of the context, and the template's stop strings
 * (roost:stop) are added to the request's.
 */
export function chatCompletionParams(rt: ModelRuntime, chat: ChatFields, ids: number[], template: ChatTemplate, extra: Obj = {}): CompletionParams {
  if (ids.length === 0) throw new RequestError('invalid_parameter', 'the chat template rendered the messages to an empty prompt', 'messages');
  // Without a length, the largest one is validated and then replaced by the rest of the context.
  const body: Obj = { ...chat.rest, ...extra, prompt: ids, max_tokens: chat.maxTokens ?? LIMITS.maxTokens };
  if (chat.logprobs !== null) body.logprobs = chat.logprobs;
  const p = parseCompletionBody(body, { vocabSize: rt.info.vocabSize });
  if (chat.maxTokens === null) {
    const max = rt.info.maxContext;
    // An adapter's soft prompt takes positions too; at least 1, so a prompt that fills the context gets the context-length error naming it.
    const reserved = resolveTarget(rt.modelId, rt.adapters, p.model, p.adapter).adapter?.promptTokens ?? 0;
    p.maxTokens = max > 0 ? Math.max(1, max - reserved - ids.length) : DEFAULT_CHAT_MAX_TOKENS_UNBOUNDED;
  }
  for (const s of template.stops) if (!p.stop.includes(s)) p.stop.push(s);
  return p;
}

/** A WebSocket "chat" message: one sequence, streamed token by token, like a "request" with messages for its prompt. */
export interface ChatStreamRequest {
  id: string;
  chat: ChatFields;
}

/** Fields of a WebSocket chat message: a request message's, with messages (and the chat API's log-prob and length fields) for prompt. */
const CHAT_STREAM_FIELDS = new Set([
  ...[...STREAM_FIELDS].filter((k) => k !== 'prompt' && k !== 'suffix'),
  'messages', 'max_completion_tokens', 'top_logprobs',
]);

/** Validates a WebSocket chat message (decoded from JSON or protobuf; type is "chat"). */
export function parseChatStreamMessage(msg: Obj): ChatStreamRequest {
  const id = msg.id;
  if (typeof id !== 'string' || id.length === 0 || id.length > LIMITS.idLength) {
    throw invalidParam('id', `a string of 1 to ${LIMITS.idLength} characters`, id);
  }
  for (const k of Object.keys(msg)) {
    if (!CHAT_STREAM_FIELDS.has(k)) throw new RequestError('unknown_parameter', `Unrecognized chat argument supplied: ${JSON.stringify(k.slice(0, 64))}`, k);
  }
  const { type: _type, id: _id, ...body } = msg;
  return { id, chat: parseChatFields(body) };
}

/**
 * Renders, tokenizes (off the event loop when large) and starts a chat
 * request as one streamed sequence (the WebSocket's); refusals before the
 * prompt is tokenized throw, later ones reject the run.
 */
export function startChatStream(
  rt: ModelRuntime,
  chat: ChatFields,
  events: CompletionEvents,
  /** Turns the params into those to run (the WebSocket's retrieval), once the prompt is tokenized; may throw a refusal. */
  prepare: (p: CompletionParams) => CompletionParams = (p) => p,
): CompletionRun {
  const { text, template } = renderChat(rt, chat.messages);
  const start = (ids: number[]) => {
    const p = prepare(chatCompletionParams(rt, chat, ids, template));
    return startCompletion(rt, { ...p, n: 1, bestOf: 1, stream: true, includeUsage: true, echo: false }, events);
  };
  const encoded = encodeRendered(rt, text);
  return encoded instanceof Promise ? deferredRun(encoded.then((ids) => () => start(ids))) : start(encoded);
}

/** The `type` of a WebSocket chat message. */
export const chatMessageType = 'chat';

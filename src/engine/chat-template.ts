// Chat templates (docs/api.md, "Chat templates"): the Jinja template that
// turns a list of messages into the prompt text a model was trained on. It
// comes from `roost serve --chat-template FILE`, else from the model folder's
// tokenizer_config.json `chat_template` (a string, or HF's list of
// {name, template}: the one named "default"). Rendered with
// @huggingface/jinja, the implementation HF wrote for chat templates (it
// strips blocks as transformers' Jinja environment does, and has
// raise_exception), with `messages`, `bos_token`, `eos_token` and
// `add_generation_prompt`. A template may name strings that end the
// assistant's turn, in a comment `{#- roost:stop "\n\nHuman:" -#}` (a JSON
// string): the chat route adds them to the request's stop strings.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from '@huggingface/jinja';

import { RequestError } from './errors';
import { FileGuardError, parseJsonFile, readGuardedFileSync } from './file-guard';
import type { Tokenizer } from './tokenizer';

/** One message as the template sees it: text parts already joined. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** The largest template file read (published templates are a few KiB; 1 MiB leaves room). */
export const CHAT_TEMPLATE_MAX_BYTES = 1 << 20;
/** tokenizer_config.json files are small; a big one is the tokenizer.json limit's business, not ours. */
const TOKENIZER_CONFIG_MAX_BYTES = 64 << 20;

/** A template file or tokenizer_config.json that cannot be used; the message names the file. */
export class ChatTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChatTemplateError';
  }
}

export class ChatTemplate {
  private readonly template: Template;
  /** Strings that end the assistant's turn, from `roost:stop` comments. */
  readonly stops: string[];

  /** source: the template text; origin: where it came from (for messages); bos/eos: the special tokens' texts. */
  constructor(
    readonly source: string,
    readonly origin: string,
    readonly bosToken: string,
    readonly eosToken: string,
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ChatTemplateError(`${origin}: not a valid Jinja template: ${(e as Error).message}`);
    }
    this.stops = stopDirectives(source, origin);
  }

  /**
   * The prompt for `messages`. A template that refuses them (raise_exception,
   * an unknown role) or fails answers 400 naming `messages`.
   */
  render(messages: ChatMessage[], addGenerationPrompt = true): string {
    try {
      return this.template.render({
        messages,
        bos_token: this.bosToken,
        eos_token: this.eosToken,
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (e) {
      throw new RequestError('invalid_parameter', `the chat template (${this.origin}) refused the messages: ${(e as Error).message}`, 'messages');
    }
  }
}

const STOP_DIRECTIVE = /\{#-?\s*roost:stop\s+("(?:[^"\\]|\\.)*")\s*-?#\}/g;

function stopDirectives(source: string, origin: string): string[] {
  const stops: string[] = [];
  for (const m of source.matchAll(STOP_DIRECTIVE)) {
    let s: unknown;
    try {
      s = JSON.parse(m[1]);
    } catch {
      s = undefined;
    }
    if (typeof s !== 'string' || s === '') throw new ChatTemplateError(`${origin}: roost:stop ${m[1]} must be a non-empty JSON string`);
    stops.push(s);
  }
  return stops;
}

/** A special token's text in tokenizer_config.json: a string or an AddedToken {content}. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

function readTokenizerConfig(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(file)) return {};
  let v: unknown;
  try {
    v = parseJsonFile(file, readGuardedFileSync(file, TOKENIZER_CONFIG_MAX_BYTES));
  } catch (e) {
    if (e instanceof FileGuardError) throw new ChatTemplateError(e.message);
    throw e;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ChatTemplateError(`${file}: must hold a JSON object`);
  return v as Record<string, unknown>;
}

/** tokenizer_config.json's chat_template: a string, or the list form's "default" entry. */
function configTemplate(config: Record<string, unknown>, file: string): string | undefined {
  const t = config.chat_template;
  if (t === undefined || t === null) return undefined;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t.find((x) => x && typeof x === 'object' && (x as { name?: unknown }).name === 'default');
    if (!named) return undefined;
    const body = (named as { template?: unknown }).template;
    if (typeof body !== 'string') throw new ChatTemplateError(`${file}: chat_template "default" has no template string`);
    return body;
  }
  throw new ChatTemplateError(`${file}: chat_template must be a string or a list of {name, template}`);
}

/**
 * The served model's chat template: `file` (--chat-template) when given, else
 * the model folder's; null when neither has one. bos_token / eos_token come
 * from tokenizer_config.json, else from the tokenizer's eos token text.
 * Throws ChatTemplateError naming the file.
 */
export function loadChatTemplate(modelDir: string, tokenizer: Tokenizer, file?: string): ChatTemplate | null {
  const configFile = path.join(modelDir, 'tokenizer_config.json');
  const config = readTokenizerConfig(modelDir);
  const bos = tokenText(config.bos_token) ?? '';
  const eos = tokenText(config.eos_token) ?? (tokenizer.eosId >= 0 ? tokenizer.decode([tokenizer.eosId]) : '');
  if (file !== undefined) {
    let buf: Buffer;
    try {
      buf = readGuardedFileSync(file, CHAT_TEMPLATE_MAX_BYTES);
    } catch (e) {
      if (e instanceof FileGuardError) throw new ChatTemplateError(`--chat-template: ${e.message}`);
      throw e;
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    } catch {
      throw new ChatTemplateError(`--chat-template: ${file}: not UTF-8 text`);
    }
    return new ChatTemplate(text, file, bos, eos);
  }
  const text = configTemplate(config, configFile);
  return text === undefined ? null : new ChatTemplate(text, configFile, bos, eos);
}

/** The 400 of a chat request to a model without a template. */
export function noChatTemplate(modelId: string): RequestError {
  return new RequestError(
    'invalid_parameter',
    `model ${modelId} has no chat template (no chat_template in its tokenizer_config.json): ` +
      'start the server with --chat-template FILE (models/templates/assistant.jinja suits base models), or use /v1/completions',
    'messages',
  );
}

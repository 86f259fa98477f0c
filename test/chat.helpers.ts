// A GPT-2 fixture checkpoint with a chat template: gpt2-tiny copied into a
// temp folder with a tokenizer_config.json holding the ChatML template of
// test/fixtures/chat-templates/ (whose renderings Python jinja2 wrote in its
// golden.json).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { FIXTURES, TINY } from './http.helpers';

export const CHAT_TEMPLATES = path.join(FIXTURES, 'chat-templates');
export const chatGolden = JSON.parse(fs.readFileSync(path.join(CHAT_TEMPLATES, 'golden.json'), 'utf8'));

/** The golden cases of one template (by name). */
export function goldenOf(name: string): { bos_token: string; eos_token: string; cases: Array<{ messages: any[]; add_generation_prompt: boolean; rendered?: string; error?: string }> } {
  return chatGolden.templates.find((t: any) => t.name === name);
}

/** A copy of gpt2-tiny whose tokenizer_config.json has the ChatML template; remove it with fs.rmSync. */
export function tinyWithChatml(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-chat-'));
  for (const f of fs.readdirSync(TINY)) fs.copyFileSync(path.join(TINY, f), path.join(dir, f));
  const g = goldenOf('chatml');
  const config = { chat_template: fs.readFileSync(path.join(CHAT_TEMPLATES, 'chatml.jinja'), 'utf8'), bos_token: g.bos_token, eos_token: g.eos_token };
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

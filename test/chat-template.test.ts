// Chat templates rendered by src/engine/chat-template.ts (@huggingface/jinja)
// against the reference Jinja implementation: Python jinja2 in transformers'
// environment, goldens written by tools/reference/render_chat_template.py.
// Also: where the template comes from (tokenizer_config.json, its list form,
// --chat-template through the file guard) and the roost:stop directive.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';

import { ChatTemplate, ChatTemplateError, loadChatTemplate } from '../src/engine/chat-template';
import { RequestError } from '../src/engine/errors';
import { loadTokenizer } from '../src/engine/tokenizer';
import { FIXTURES, TINY } from './http.helpers';

const ROOT = path.join(__dirname, '..');
const golden = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'chat-templates', 'golden.json'), 'utf8'));

describe.each(golden.templates.map((t: any) => [t.name, t]))('template %s equals Python jinja2', (_name, t: any) => {
  const tpl = new ChatTemplate(fs.readFileSync(path.join(ROOT, t.template), 'utf8'), t.template, t.bos_token, t.eos_token);
  test.each(t.cases.map((c: any, i: number) => [i, c]))('case %d', (_i, c: any) => {
    if (c.error === undefined) {
      expect(tpl.render(c.messages, c.add_generation_prompt)).toBe(c.rendered);
    } else {
      let err: unknown;
      try {
        tpl.render(c.messages, c.add_generation_prompt);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RequestError);
      expect((err as RequestError).code).toBe('invalid_parameter');
      expect((err as RequestError).param).toBe('messages');
      expect((err as RequestError).message).toContain(c.error);
    }
  });
});

test('the goldens cover the shipped assistant template, ChatML and Llama-2, with refusals', () => {
  expect(golden.templates.map((t: any) => t.template)).toEqual([
    'models/templates/assistant.jinja',
    'test/fixtures/chat-templates/chatml.jinja',
    'test/fixtures/chat-templates/llama2.jinja',
  ]);
  expect(golden.templates.every((t: any) => t.cases.some((c: any) => c.error !== undefined))).toBe(true);
});

test('the shipped assistant template stops at the next Human turn and ends with the assistant turn', () => {
  const file = path.join(ROOT, 'models', 'templates', 'assistant.jinja');
  const tpl = new ChatTemplate(fs.readFileSync(file, 'utf8'), file, '', '');
  expect(tpl.stops).toEqual(['\nHuman:']);
  const text = tpl.render([{ role: 'user', content: 'Hi' }]);
  expect(text.endsWith('\n\nHuman: Hi\n\nAssistant:')).toBe(true);
  // The example turns are not stopped early by the stop string: it only ends generated text.
  expect(text.split('\nHuman:')).toHaveLength(5);
});

describe('where the template comes from', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-chat-template-'));
    for (const f of fs.readdirSync(TINY)) fs.copyFileSync(path.join(TINY, f), path.join(dir, f));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const writeConfig = (o: object) => fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(o));

  test('none: null', () => {
    expect(loadChatTemplate(dir, loadTokenizer(dir))).toBeNull();
  });

  test('tokenizer_config.json string, with its bos / eos tokens; eos defaults to the tokenizer eos text', () => {
    writeConfig({ chat_template: '{{ bos_token }}|{{ messages[0].content }}|{{ eos_token }}', bos_token: { content: '<s>' } });
    const tpl = loadChatTemplate(dir, loadTokenizer(dir))!;
    expect(tpl.render([{ role: 'user', content: 'x' }])).toBe('<s>|x|<|endoftext|>');
  });

  test('the list form: the template named "default"', () => {
    writeConfig({ chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D{{ messages|length }}' }] });
    expect(loadChatTemplate(dir, loadTokenizer(dir))!.render([{ role: 'user', content: 'x' }])).toBe('D1');
  });

  test('--chat-template overrides the model; FIFO, folder, too big and bad Jinja are refused naming the file', () => {
    writeConfig({ chat_template: 'model' });
    const file = path.join(dir, 'mine.jinja');
    fs.writeFileSync(file, 'mine');
    const tok = loadTokenizer(dir);
    expect(loadChatTemplate(dir, tok, file)!.render([{ role: 'user', content: 'x' }])).toBe('mine');

    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(() => loadChatTemplate(dir, tok, fifo)).toThrow(new ChatTemplateError(`--chat-template: ${fifo}: not a regular file (a FIFO)`));
    expect(() => loadChatTemplate(dir, tok, dir)).toThrow(/--chat-template: .*not a regular file \(a folder\)/);
    fs.writeFileSync(file, Buffer.alloc((1 << 20) + 1, 0x61));
    expect(() => loadChatTemplate(dir, tok, file)).toThrow(/--chat-template: .*more than the limit of 1048576/);
    fs.writeFileSync(file, '{% for m in messages %}');
    expect(() => loadChatTemplate(dir, tok, file)).toThrow(/mine.jinja: not a valid Jinja template/);
  });

  test('a roost:stop directive that is not a JSON string is refused', () => {
    expect(() => new ChatTemplate('{#- roost:stop "" -#}x', 't', '', '')).toThrow(/roost:stop "" must be a non-empty JSON string/);
  });
});

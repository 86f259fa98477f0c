"""Golden renderings of chat templates by the reference Jinja implementation.

Renders a few templates with Python's jinja2 in the environment transformers
builds for chat templates (`_compile_jinja_template` in
transformers/utils/chat_template_utils.py: an immutable sandbox with
trim_blocks, lstrip_blocks, the loopcontrols extension, `raise_exception`
raising TemplateError), for fixed message lists, and writes
test/fixtures/chat-templates/golden.json. test/chat-template.test.ts renders
the same cases with src/engine/chat-template.ts (@huggingface/jinja) and
asserts the same text, or a refusal where jinja2 raised.

Templates: Roost's shipped models/templates/assistant.jinja, a ChatML
template and Llama-2's (bos_token, eos_token, raise_exception on roles that
do not alternate), both in test/fixtures/chat-templates/.

Run: /usr/bin/python3 tools/reference/render_chat_template.py
"""

import json
import os

import jinja2
from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', '..'))
FIXTURES = os.path.join(ROOT, 'test', 'fixtures', 'chat-templates')


def raise_exception(message):
    raise TemplateError(message)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals['raise_exception'] = raise_exception
    return env


def msgs(*pairs):
    return [{'role': r, 'content': c} for r, c in pairs]


# Each template's cases: messages, add_generation_prompt. Texts include
# surrounding whitespace (trim / strip in templates), quotes and non-ASCII.
COMMON = [
    (msgs(('user', 'Hello there')), True),
    (msgs(('system', 'You answer briefly.'), ('user', 'What is 2+2?')), True),
    (msgs(('user', 'Hi'), ('assistant', 'Hello! How can I help?'), ('user', '  Say "été" in French.  ')), True),
    (msgs(('user', 'Hi'), ('assistant', 'Hello.')), False),
]

TEMPLATES = [
    # (name, template file, bos_token, eos_token, extra cases)
    ('assistant', os.path.join(ROOT, 'models', 'templates', 'assistant.jinja'), '', '', [
        (msgs(('user', 'Hi'), ('system', 'late system message')), True),
    ]),
    ('chatml', os.path.join(FIXTURES, 'chatml.jinja'), '', '<|endoftext|>', [
        (msgs(('user', 'Hi'), ('tool', '42')), True),
    ]),
    ('llama2', os.path.join(FIXTURES, 'llama2.jinja'), '<s>', '</s>', [
        (msgs(('user', 'Hi'), ('user', 'Hi again')), True),
        (msgs(('assistant', 'I speak first')), True),
    ]),
]


def main():
    env = environment()
    out = []
    for name, file, bos, eos, extra in TEMPLATES:
        with open(file, encoding='utf-8') as f:
            source = f.read()
        template = env.from_string(source)
        cases = []
        for messages, gen in COMMON + extra:
            case = {'messages': messages, 'add_generation_prompt': gen}
            try:
                case['rendered'] = template.render(messages=messages, bos_token=bos, eos_token=eos, add_generation_prompt=gen)
            except TemplateError as e:
                case['error'] = str(e)
            cases.append(case)
        out.append({
            'name': name,
            'template': os.path.relpath(file, ROOT),
            'bos_token': bos,
            'eos_token': eos,
            'cases': cases,
        })
    golden = {
        'generator': 'tools/reference/render_chat_template.py (Python jinja2 %s)' % jinja2.__version__,
        'templates': out,
    }
    path = os.path.join(FIXTURES, 'golden.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write('\n')
    print('wrote %s: %d templates, %d cases' % (os.path.relpath(path, ROOT), len(out), sum(len(t['cases']) for t in out)))


if __name__ == '__main__':
    main()

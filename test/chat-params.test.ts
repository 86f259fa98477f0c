// A chat request's completion params (src/engine/chat-params.ts): the
// default length is the rest of the context (less an adapter's soft prompt),
// max_completion_tokens wins over max_tokens, the template's stop strings
// join the request's, the chat-only fields map onto the completion ones.
import { chatCompletionParams, DEFAULT_CHAT_MAX_TOKENS_UNBOUNDED, parseChatFields } from '../src/engine/chat-params';
import { ChatTemplate } from '../src/engine/chat-template';
import type { ModelRuntime } from '../src/engine/completion';

const runtime = (maxContext: number) =>
  ({
    modelId: 'm',
    adapters: new Map([['soft', { name: 'soft', type: 'prompt', promptTokens: 8 }]]),
    info: { maxContext, vocabSize: 512 },
  }) as unknown as ModelRuntime;
const template = new ChatTemplate('{#- roost:stop "\\nHuman:" -#}x', 'test', '', '');
const messages = [{ role: 'user', content: 'hi' }];
const params = (body: object, maxContext = 100) => chatCompletionParams(runtime(maxContext), parseChatFields({ messages, ...body }), [1, 2, 3], template);

test('max_tokens: the rest of the context, less a soft prompt; the unbounded default; the given ones', () => {
  expect(params({}).maxTokens).toBe(97);
  expect(params({ model: 'm:soft' }).maxTokens).toBe(89);
  expect(params({ adapter: 'soft' }).maxTokens).toBe(89);
  expect(params({}, 3).maxTokens).toBe(1); // the context check then names the prompt
  expect(params({}, 0).maxTokens).toBe(DEFAULT_CHAT_MAX_TOKENS_UNBOUNDED);
  expect(params({ max_tokens: 5 }).maxTokens).toBe(5);
  expect(params({ max_tokens: 5, max_completion_tokens: 7 }).maxTokens).toBe(7);
  expect(() => params({ max_tokens: -5, max_completion_tokens: 7 })).toThrow('max_tokens must be an integer from 0 to 16777216 (got -5)');
});

test('stop strings: the request\'s, then the template\'s, once', () => {
  expect(params({}).stop).toEqual(['\nHuman:']);
  expect(params({ stop: ['a', '\nHuman:'] }).stop).toEqual(['a', '\nHuman:']);
  expect(params({ stop: 'b' }).stop).toEqual(['b', '\nHuman:']);
});

test('logprobs / top_logprobs map onto the completion count; the prompt is the ids', () => {
  expect(params({}).logprobs).toBeNull();
  expect(params({ logprobs: false }).logprobs).toBeNull();
  expect(params({ logprobs: true }).logprobs).toBe(0);
  expect(params({ logprobs: true, top_logprobs: 4 }).logprobs).toBe(4);
  expect(params({}).prompts).toEqual([[1, 2, 3]]);
  expect(params({ n: 3, seed: 2, temperature: 0.5 })).toMatchObject({ n: 3, bestOf: 3, seed: 2, temperature: 0.5, echo: false, suffix: null });
});

test('an unknown adapter is refused by name, as in completions', () => {
  expect(() => params({ adapter: 'nope' })).toThrow(/unknown adapter "nope"/);
});

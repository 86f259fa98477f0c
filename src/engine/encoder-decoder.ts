// Encoder-decoder models (model_type t5, docs/t5.md): the prompt is the
// encoder's input and the generation is the decoder's output, so the request
// fields that treat the prompt as the start of the generated text do not
// apply. Scoring a target given an input runs on the engine directly.
import type { EngineInfo, NativeEngine } from '../native';
import { RequestError } from './errors';

export function isEncoderDecoder(info: Pick<EngineInfo, 'modelType'>): boolean {
  return info.modelType === 't5';
}

/** Refuses echo and suffix on an encoder-decoder model, saying why. */
export function refuseEncoderDecoderFields(modelId: string, p: { echo: boolean; suffix: string | null }): void {
  const why = `model ${modelId} is an encoder-decoder model: the prompt is the encoder's input, not the start of the generated text`;
  if (p.echo) throw new RequestError('invalid_parameter', `echo is not supported: ${why}, so it has no log-probs and is not echoed`, 'echo');
  if (p.suffix !== null) throw new RequestError('invalid_parameter', `suffix is not supported: ${why} (put the gap in the prompt as a sentinel such as <extra_id_0>)`, 'suffix');
}

/**
 * log p(target[t] | input, target before t) for every t: the input ends with a
 * sampling step (the encoder runs then; its sample is dropped), the target
 * follows as tokens with log-probs.
 */
export async function scoreTarget(engine: NativeEngine, input: number[], target: number[]): Promise<number[]> {
  if (input.length === 0) throw new RequestError('invalid_parameter', 'the input must not be empty', 'prompt');
  if (target.length === 0) throw new RequestError('invalid_parameter', 'the target must not be empty', 'target');
  const seq = engine.createSequence({ temperature: 0 });
  try {
    await engine.step([{ seq, tokens: input, sample: true }]);
    const [r] = await engine.step([{ seq, tokens: target, sample: false, promptLogprobs: true }]);
    return Array.from(r.promptLogprobs!);
  } finally {
    engine.freeSequence(seq);
  }
}

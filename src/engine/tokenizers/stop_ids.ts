// Every id that ends a generation: the tokenizer's eos plus the lists HF
// checkpoints give (Llama 3: config.json and generation_config.json
// eos_token_id as a list, e.g. <|end_of_text|>, <|eom_id|>, <|eot_id|>).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { FileGuardError, parseJsonFile, readGuardedFileSync } from '../file-guard';
import { TokenizerError } from './types';

/** generation_config.json holds a few sampling defaults; a bigger one is not a generation config. */
const GENERATION_CONFIG_MAX_BYTES = 1 << 20;

function ids(v: unknown, where: string): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new TokenizerError('E_CONFIG', `${where}: eos_token_id must be an integer >= 0 or a list of them (got ${JSON.stringify(v)})`);
    }
  }
  return list as number[];
}

/** eosId (when >= 0), config.json's eos_token_id (number or list), then <dir>/generation_config.json's; no repeats. */
export function stopIdsOf(dir: string, eosId: number, modelConfig: Record<string, unknown>): readonly number[] {
  const all = eosId >= 0 ? [eosId] : [];
  all.push(...ids(modelConfig.eos_token_id, path.join(dir, 'config.json')));
  const file = path.join(dir, 'generation_config.json');
  if (fs.existsSync(file)) {
    let gen: unknown;
    try {
      gen = parseJsonFile(file, readGuardedFileSync(file, GENERATION_CONFIG_MAX_BYTES));
    } catch (e) {
      if (e instanceof FileGuardError) throw new TokenizerError('E_CONFIG', e.message);
      throw e;
    }
    if (!gen || typeof gen !== 'object' || Array.isArray(gen)) throw new TokenizerError('E_CONFIG', `${file}: must hold a JSON object`);
    all.push(...ids((gen as Record<string, unknown>).eos_token_id, file));
  }
  return Object.freeze([...new Set(all)]);
}

// The CLI's flags: commander Options whose values are checked as they are
// parsed, each refusal a UsageError (exit 2) in the words `--flag must be ...
// (got VALUE)`. A flag is one `flag(...)` line in its command's file
// (src/cli/<command>.ts); the description carries its default, which --help lists.
import { Option } from 'commander';

import { MAX_TIMER_MS } from '../engine/scheduler';

/** A mistake in the command line: exit 2, the message on stderr. */
export class UsageError extends Error {}

/** Checks one flag value: `flag` is its long name (`--threads`), `previous` the value so far (repeatable flags). */
export type Parse<T> = (value: string, flag: string, previous: T | undefined) => T;

/**
 * A flag for a command: `flags` as commander writes them (`--threads <n>`),
 * `description` for --help, `parse` to check the value (none: the string as
 * given), `defaultValue` when the command itself applies the default (--help
 * then lists it; a default applied elsewhere, such as by the request
 * validation, is written into the description instead).
 */
export function flag<T>(flags: string, description: string, parse?: Parse<T>, defaultValue?: T, defaultDescription?: string): Option {
  const o = new Option(flags, description);
  if (parse) o.argParser((v: string, previous: T | undefined) => parse(v, o.long!, previous));
  // A string default is listed as written, not JSON-quoted.
  if (defaultValue !== undefined) o.default(defaultValue, defaultDescription ?? (typeof defaultValue === 'string' ? defaultValue : undefined));
  return o;
}

/** `tooLarge` words the message for a value past max when `what` does not say the bound. */
export function integer(min: number, what: string, max = Number.MAX_SAFE_INTEGER, tooLarge = what): Parse<number> {
  return (v, name) => {
    // BigInt keeps the comparison exact past 2^53, where Number would round.
    const isInt = /^[+-]?\d+$/.test(v.trim());
    if (!isInt || BigInt(v.trim()) < BigInt(min)) throw new UsageError(`${name} must be ${what} (got ${v})`);
    if (BigInt(v.trim()) > BigInt(max)) throw new UsageError(`${name} must be ${tooLarge} (got ${v})`);
    return Number(v.trim());
  };
}

export function number(ok: (x: number) => boolean, what: string): Parse<number> {
  return (v, name) => {
    const n = v.trim() === '' ? NaN : Number(v);
    if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`${name} must be ${what} (got ${v})`);
    return n;
  };
}

/** A duration in seconds, as ms that fit a Node timer (a longer one fires at once). */
export function seconds(min: 'zero' | 'positive'): Parse<number> {
  const maxSeconds = MAX_TIMER_MS / 1000;
  const parse = number(
    (x) => (min === 'zero' ? x >= 0 : x > 0) && x <= maxSeconds,
    `a number of seconds ${min === 'zero' ? 'from 0 (none)' : 'above 0 and'} up to ${maxSeconds}`,
  );
  return (v, name) => Math.round(parse(v, name, undefined) * 1000);
}

/** One of a fixed set of words. */
export function oneOf<T extends string>(...choices: T[]): Parse<T> {
  const words = choices.length > 1 ? `${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}` : choices[0];
  return (v, name) => {
    if (!(choices as string[]).includes(v)) throw new UsageError(`${name} must be ${words} (got ${v})`);
    return v as T;
  };
}

/** A string that must not be empty. */
export const nonEmpty: Parse<string> = (v, name) => {
  if (v === '') throw new UsageError(`${name} must not be empty`);
  return v;
};

/** The value of a flag the command cannot run without (checked in the action, so the message is ours). */
export function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new UsageError(`${name} is required`);
  return value;
}

/**
 * How many of a prompt's `left` remaining tokens to feed in a step that has
 * room for `budget`. It never leaves a single token for a later step:
 * perceiver_ar runs a one-token step as its sliding decode, so a prompt's last
 * piece needs at least two tokens to leave the exact prefill state
 * (docs/models.md). The engine splits its own passes by the same rule.
 */
export function prefillTake(left: number, budget: number): number {
  const take = Math.min(left, budget);
  return left - take === 1 && take > 1 ? take - 1 : take;
}

// Stop strings over streamed text. Text that could still turn into a stop
// string is held back, so a client never sees a partial match that is later
// cut: the stream and the final text agree. Before min_tokens (vLLM) matching
// is off: text is still held back while it could start a stop string, and a
// stop string matches later only if it ends in text pushed with matching on.

export interface StopPush {
  /** Text safe to release now. */
  emit: string;
  /** A stop string was found; everything from it on is dropped. */
  stopped: boolean;
}

export class StopMatcher {
  private held = '';
  private done = false;

  /** includeStop: the matched stop string stays at the end of the text (vLLM's include_stop_str_in_output). */
  constructor(
    private readonly stops: readonly string[],
    private readonly includeStop = false,
  ) {}

  /** Appends decoded text; returns what may be released. match: false while min_tokens is not reached. */
  push(text: string, match = true): StopPush {
    if (this.done) return { emit: '', stopped: true };
    if (this.stops.length === 0) return { emit: text, stopped: false };
    const buf = this.held + text;
    // The earliest full match that ends in the new text wins (nothing before
    // `held` can match, it was released; `held` holds no match of its own).
    let cut = -1;
    let end = -1;
    for (const s of match ? this.stops : []) {
      const i = buf.indexOf(s, Math.max(0, this.held.length - s.length + 1));
      if (i >= 0 && (cut < 0 || i < cut)) {
        cut = i;
        end = i + s.length;
      }
    }
    if (cut >= 0) {
      this.done = true;
      this.held = '';
      return { emit: buf.slice(0, this.includeStop ? end : cut), stopped: true };
    }
    const keep = this.partialSuffix(buf);
    this.held = buf.slice(buf.length - keep);
    return { emit: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** At the end of generation (not by a stop string): the held text is real output. */
  flush(): string {
    const out = this.done ? '' : this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest suffix of buf that is a proper prefix of some stop string. */
  private partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let len = Math.min(s.length - 1, buf.length); len > best; len--) {
        if (buf.endsWith(s.slice(0, len))) {
          best = len;
          break;
        }
      }
    }
    return best;
  }
}

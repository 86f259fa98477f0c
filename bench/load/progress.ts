// Progress while a level runs: one line on stderr rewritten in place when
// stderr is a terminal, else a line every few seconds (logs, CI).
export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private readonly tty: boolean;
  private lastLength = 0;

  constructor(
    private readonly enabled = true,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly periodMs = stream.isTTY ? 250 : 10_000,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  start(line: () => string): void {
    this.stop();
    if (!this.enabled) return;
    this.timer = setInterval(() => this.write(line()), this.periodMs);
    this.timer.unref();
  }

  /** Stops updating; the final line stays on the terminal. */
  stop(finalLine?: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!this.enabled) return;
    if (finalLine !== undefined) this.write(finalLine);
    if (this.tty && this.lastLength > 0) this.stream.write('\n');
    this.lastLength = 0;
  }

  /** A message between updates (its own line). */
  log(message: string): void {
    if (!this.enabled) return;
    if (this.tty && this.lastLength > 0) {
      this.stream.write('\r\x1b[K');
      this.lastLength = 0;
    }
    this.stream.write(message + '\n');
  }

  private write(line: string): void {
    if (this.tty) {
      const cols = this.stream.columns || 120;
      const text = line.length >= cols ? line.slice(0, cols - 1) : line;
      this.stream.write('\r\x1b[K' + text);
      this.lastLength = text.length;
    } else {
      this.stream.write(line + '\n');
    }
  }
}

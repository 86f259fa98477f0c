// An incremental server-sent-events reader (https://html.spec.whatwg.org/#event-stream-interpretation,
// the parts OpenAI-compatible servers use): `data:` lines joined by "\n" make
// an event's data; a blank line dispatches it; comment lines (":" first) are
// counted; other fields are ignored. Lines end in \n, \r\n or \r.
export class SseReader {
  private buf = '';
  private data: string[] = [];
  private pendingCR = false;
  comments = 0;

  constructor(private readonly onData: (data: string) => void) {}

  push(chunk: string): void {
    let text = chunk;
    if (this.pendingCR) {
      // "\r" ended the previous chunk: a following "\n" belongs to the same line end.
      if (text.startsWith('\n')) text = text.slice(1);
      this.pendingCR = false;
    }
    if (text.endsWith('\r')) {
      this.pendingCR = true;
    }
    this.buf += text;
    const lines = this.buf.split(/\r\n|\r|\n/);
    this.buf = lines.pop() ?? '';
    // A trailing "\r" already ended its line: the split leaves '' as the partial line, as wanted.
    for (const line of lines) this.line(line);
  }

  /**
   * The stream ended. The spec drops an event that lacks its blank line; a load
   * tool is lenient (a server that ends on `data: [DONE]\n` still finished).
   */
  end(): void {
    if (this.buf !== '') this.line(this.buf);
    this.buf = '';
    this.line('');
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) {
        const d = this.data.join('\n');
        this.data = [];
        this.onData(d);
      }
      return;
    }
    if (line.startsWith(':')) {
      this.comments++;
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
  }
}

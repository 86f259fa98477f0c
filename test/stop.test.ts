// Stop strings: held-back text never leaks a partial match; the stream and the
// final text agree.
import { StopMatcher } from '../src/engine/stop';

function run(stops: string[], pieces: string[]) {
  const m = new StopMatcher(stops);
  const emitted: string[] = [];
  let stopped = false;
  for (const p of pieces) {
    const r = m.push(p);
    emitted.push(r.emit);
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  if (!stopped) emitted.push(m.flush());
  return { emitted, text: emitted.join(''), stopped };
}

describe('StopMatcher', () => {
  test('no stops: text passes through', () => {
    expect(run([], ['a', 'b'])).toEqual({ emitted: ['a', 'b', ''], text: 'ab', stopped: false });
  });

  test('a stop split across pieces never shows its start', () => {
    const r = run(['END'], ['hello E', 'N', 'D more']);
    expect(r.stopped).toBe(true);
    expect(r.text).toBe('hello ');
    expect(r.emitted).toEqual(['hello ', '', '']);
  });

  test('a false start is released once it cannot match', () => {
    const r = run(['END'], ['x E', 'Nx', 'y']);
    expect(r.stopped).toBe(false);
    expect(r.emitted).toEqual(['x ', 'ENx', 'y', '']);
  });

  test('the earliest of several stops wins', () => {
    expect(run(['bc', 'abcd'], ['zab', 'cd']).text).toBe('z');
    expect(run(['cd', 'bcx'], ['zab', 'cd']).text).toBe('zab');
    expect(run(['\n\n', 'User:'], ['Hi\nUs', 'er: x']).text).toBe('Hi\n');
  });

  test('held text is released at the end when no stop came', () => {
    const r = run(['###'], ['abc#', '#']);
    expect(r.emitted).toEqual(['abc', '', '##']);
  });

  test('a stop inside one piece cuts there', () => {
    expect(run(['.'], ['one. two']).text).toBe('one');
  });

  test('includeStop keeps the matched stop string, split or not', () => {
    const m = new StopMatcher(['END', 'x'], true);
    expect(m.push('hello E')).toEqual({ emit: 'hello ', stopped: false });
    expect(m.push('ND more')).toEqual({ emit: 'END', stopped: true });
    expect(new StopMatcher(['bc', 'abcd'], true).push('zabcd')).toEqual({ emit: 'zabcd', stopped: true }); // the earliest match: abcd
  });

  test('with matching off (before min_tokens) nothing stops, and only a stop ending in later text counts', () => {
    const m = new StopMatcher(['END', 'b']);
    // Whole matches pass; a possible start is still held back.
    expect(m.push('aEND b', false)).toEqual({ emit: 'aEND b', stopped: false });
    expect(m.push('xxE', false)).toEqual({ emit: 'xx', stopped: false });
    // A stop that starts before and ends after the switch matches.
    expect(m.push('ND', true)).toEqual({ emit: '', stopped: true });
    // A stop wholly inside text held while matching was off does not.
    const h = new StopMatcher(['abc', 'b']);
    expect(h.push('zab', false)).toEqual({ emit: 'z', stopped: false });
    expect(h.push('x', true)).toEqual({ emit: 'abx', stopped: false });
  });
});

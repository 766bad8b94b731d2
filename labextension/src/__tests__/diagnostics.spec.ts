import { describe, expect, it } from 'vitest';

import { diagnosticsFor, Lines } from '../diagnostics';

/** CodeMirror's Text for `text`, as far as diagnosticsFor reads it. */
function doc(text: string): Lines {
  const starts = [0];
  const rows = text.split('\n');
  rows.forEach((r, i) => starts.push(starts[i] + r.length + 1));
  return {
    lines: rows.length,
    line: n => ({ from: starts[n - 1], to: starts[n - 1] + rows[n - 1].length })
  };
}

describe('diagnosticsFor', () => {
  const text = 'workflow:\n  name: x\n  tasks:\n  - comand: [echo]\n';

  it('underlines from the column to the end of the line', () => {
    const [d] = diagnosticsFor(doc(text), [{ line: 4, column: 5, text: 'unknown field' }]);
    expect(text.slice(d.from, d.to)).toBe('comand: [echo]');
    expect(d).toMatchObject({ severity: 'error', message: 'unknown field', source: 'OSMO' });
  });

  it('marks the whole line when the column is at or past its end, or missing', () => {
    const got = diagnosticsFor(doc(text), [
      { line: 2, column: 99, text: 'a' },
      { line: 3, column: null, text: 'b' }
    ]);
    expect(got.map(d => text.slice(d.from, d.to))).toEqual(['  name: x', '  tasks:']);
  });

  it('leaves out a problem with no line, or past the end of the text', () => {
    const got = diagnosticsFor(doc(text), [
      { line: null, column: null, text: 'the whole spec' },
      { line: 0, column: 1, text: 'before it' },
      { line: 99, column: 1, text: 'after it' }
    ]);
    expect(got).toEqual([]);
  });
});

/**
 * A spec's problems as CodeMirror diagnostics: each one underlined where it is in the YAML
 * editor, from its column to the end of its line, with its message on hover. Pure: yamltools.ts
 * hands the result to the editor.
 */

/** A problem where the server located it (1-based, as it names them; null: nowhere). */
export interface Located {
  line: number | null;
  column: number | null;
  text: string;
}

/** What of CodeMirror's `Text` this needs. */
export interface Lines {
  readonly lines: number;
  line(n: number): { from: number; to: number };
}

export interface SpecDiagnostic {
  from: number;
  to: number;
  severity: 'error';
  message: string;
  source: string;
}

/** The diagnostics of `problems` in `doc`; one without a line, or past the end of the text
 * (the file changed since), has none: the list under the editor still shows it. */
export function diagnosticsFor(doc: Lines, problems: Located[]): SpecDiagnostic[] {
  const out: SpecDiagnostic[] = [];
  for (const p of problems) {
    if (p.line === null || p.line < 1 || p.line > doc.lines) {
      continue;
    }
    const { from, to } = doc.line(p.line);
    const start = Math.min(to, from + Math.max(0, (p.column ?? 1) - 1));
    // an empty range (a problem at the end of a line) is drawn as a point; mark the line
    out.push({
      from: start < to ? start : from,
      to,
      severity: 'error',
      message: p.text,
      source: 'OSMO'
    });
  }
  return out;
}

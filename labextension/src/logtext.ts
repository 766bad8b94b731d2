/** The log viewer's text helpers, free of the DOM (tested under Node). */

/** `text` split around each case-insensitive occurrence of `needle` (lower case): the odd
 * entries are the matches. */
export function splitMatches(text: string, needle: string): string[] {
  if (!needle) {
    return [text];
  }
  const parts: string[] = [];
  const lower = text.toLowerCase();
  let at = 0;
  for (let i = lower.indexOf(needle); i >= 0; i = lower.indexOf(needle, i + needle.length)) {
    parts.push(text.slice(at, i), text.slice(i, i + needle.length));
    at = i + needle.length;
  }
  parts.push(text.slice(at));
  return parts;
}

/** A line's time as the log shows it: `14:02:03.250`. */
export function logTime(ts: number): string {
  const d = new Date(ts * 1000);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

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

/** Every match of `needle` in `texts`, in order: [the text's index, the match's index in it]. */
export function matchesIn(texts: string[], needle: string): [number, number][] {
  const out: [number, number][] = [];
  if (!needle) {
    return out;
  }
  texts.forEach((text, row) => {
    const found = (splitMatches(text, needle).length - 1) / 2;
    for (let occ = 0; occ < found; occ++) {
      out.push([row, occ]);
    }
  });
  return out;
}

/** The `size` rows to draw of `total` so that row `index` is in the middle (as far as the
 * ends allow): [start, end). */
export function windowAround(index: number, total: number, size: number): [number, number] {
  const start = Math.max(0, Math.min(index - Math.floor(size / 2), total - size));
  return [start, Math.min(total, start + size)];
}

/** A line's time as the log shows it: `14:02:03.250`. */
export function logTime(ts: number): string {
  const d = new Date(ts * 1000);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A small element builder: `h('button', {class: 'x', 'aria-label': 'Cancel'}, 'Cancel')`. */
const SVG_NS = 'http://www.w3.org/2000/svg';
const SVG_TAGS = new Set([
  'svg',
  'g',
  'rect',
  'line',
  'path',
  'text',
  'tspan',
  'title',
  'defs',
  'marker'
]);

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs,
  ...children: Child[]
): HTMLElementTagNameMap[K];
export function h(tag: string, attrs?: Attrs, ...children: Child[]): Element;
export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): Element {
  const el = SVG_TAGS.has(tag)
    ? document.createElementNS(SVG_NS, tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === true) {
      el.setAttribute(k, '');
    } else if (v !== false && v !== null && v !== undefined) {
      el.setAttribute(k, String(v));
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined && c !== false) {
      el.append(c);
    }
  }
  return el;
}

/** Enter and Space act like a click on an element that is not a button (ARIA practice). */
export function activateOnKeys(el: Element, fn: () => void): void {
  el.addEventListener('click', fn);
  el.addEventListener('keydown', ev => {
    const key = (ev as KeyboardEvent).key;
    if (key === 'Enter' || key === ' ') {
      ev.preventDefault();
      fn();
    }
  });
}

/** Re-render `parent`'s children, keeping keyboard focus on the element with the same
 * `data-key` (re-rendering on every event must not throw a keyboard user out). */
export function replaceKeepingFocus(parent: Element, ...children: Array<Node | string>): void {
  const active = document.activeElement;
  const key = active && parent.contains(active) ? active.getAttribute('data-key') : null;
  parent.replaceChildren(...children);
  if (key !== null) {
    const again = parent.querySelector(`[data-key="${CSS.escape(key)}"]`);
    (again as HTMLElement | SVGElement | null)?.focus();
  }
}

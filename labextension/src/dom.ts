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

type Handler = (ev: Event) => void;
/** The handlers `on` gave each element, by event type. */
const handlers = new WeakMap<Element, Map<string, Handler[]>>();

/** `el.addEventListener(type, fn)`, through one listener per type that calls the handlers the
 * element holds now: `patchChildren` moves a fresh element's handlers onto the element it
 * keeps, so a kept button acts on what the latest render said (its ids, its selection). */
export function on<K extends keyof HTMLElementEventMap>(
  el: Element,
  type: K,
  fn: (ev: HTMLElementEventMap[K]) => void
): void {
  let byType = handlers.get(el);
  if (!byType) {
    byType = new Map();
    handlers.set(el, byType);
  }
  const list = byType.get(type);
  if (list) {
    list.push(fn as Handler);
    return;
  }
  byType.set(type, [fn as Handler]);
  el.addEventListener(type, ev =>
    handlers
      .get(el)
      ?.get(type)
      ?.forEach(f => f(ev))
  );
}

/** Enter and Space act like a click on an element that is not a button (ARIA practice). */
export function activateOnKeys(el: Element, fn: () => void): void {
  on(el, 'click', fn);
  on(el, 'keydown', ev => {
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
  keepingFocus(parent, () => parent.replaceChildren(...children));
}

/** Run `change` on `parent`'s children; if it took away the focused element, focus the one
 * with the same `data-key`. */
function keepingFocus(parent: Element, change: () => void): void {
  const active = document.activeElement;
  const key = active && parent.contains(active) ? active.getAttribute('data-key') : null;
  change();
  if (key !== null && !parent.contains(document.activeElement)) {
    const again = parent.querySelector(`[data-key="${CSS.escape(key)}"]`);
    (again as HTMLElement | SVGElement | null)?.focus();
  }
}

/**
 * Make `parent`'s children look like `children` while keeping the elements that are already
 * there (same tag, same `data-key` or, without one, the same place among their unkeyed
 * siblings): their attributes, text and `on` handlers are updated in place.
 *
 * Why not `replaceChildren`: a click is a press and a release on one element, and a view that
 * redraws every second while a workflow runs would replace the row under a press about one
 * time in ten, and the browser then drops the click. Kept elements also keep focus and scroll.
 * Only for trees whose handlers all come from `on`: a plain listener on a kept element would
 * stay as the first render left it.
 */
export function patchChildren(parent: Element, ...children: Array<Node | string>): void {
  keepingFocus(parent, () => reconcile(parent, children));
}

function reconcile(parent: Element, children: Array<Node | string>): void {
  const keyed = new Map<string, Element>();
  const unkeyed = new Map<string, { els: Element[]; next: number }>(); // linear for thousands
  for (const old of Array.from(parent.children)) {
    const key = old.getAttribute('data-key');
    const id = `${old.namespaceURI} ${old.tagName}`;
    if (key !== null) {
      keyed.set(`${id} ${key}`, old);
    } else {
      const same = unkeyed.get(id);
      if (same) {
        same.els.push(old);
      } else {
        unkeyed.set(id, { els: [old], next: 0 });
      }
    }
  }
  const wanted = children.map(c => {
    if (typeof c === 'string') {
      return document.createTextNode(c);
    }
    if (!(c instanceof Element) || c.parentNode === parent) {
      return c; // a text node, or a node the caller keeps and put back here
    }
    const key = c.getAttribute('data-key');
    const id = `${c.namespaceURI} ${c.tagName}`;
    const same = key === null ? unkeyed.get(id) : undefined;
    const old = key !== null ? keyed.get(`${id} ${key}`) : same?.els[same.next++];
    if (!old) {
      return c;
    }
    if (key !== null) {
      keyed.delete(`${id} ${key}`);
    }
    morph(old, c);
    return old;
  });
  // What is not kept goes first, so that a row gone from the top (a scroll) moves no other.
  for (const old of keyed.values()) {
    old.remove();
  }
  for (const { els, next } of unkeyed.values()) {
    els.slice(next).forEach(old => old.remove());
  }
  // Put them in order, moving only what is out of place (a moved element is re-inserted,
  // which would drop a click on it just as a replaced one does).
  wanted.forEach((node, i) => {
    const here = parent.childNodes[i];
    if (here !== node) {
      parent.insertBefore(node, here ?? null);
    }
  });
  while (parent.childNodes.length > wanted.length) {
    parent.lastChild?.remove();
  }
}

function morph(old: Element, fresh: Element): void {
  for (const { name } of Array.from(old.attributes)) {
    if (!fresh.hasAttribute(name)) {
      old.removeAttribute(name);
    }
  }
  for (const { name, value } of Array.from(fresh.attributes)) {
    if (old.getAttribute(name) !== value) {
      old.setAttribute(name, value);
    }
  }
  const given = handlers.get(fresh);
  const had = handlers.get(old);
  for (const type of had?.keys() ?? []) {
    had?.set(type, given?.get(type) ?? []);
  }
  for (const [type, fns] of given ?? []) {
    if (!had?.has(type)) {
      fns.forEach(fn => on(old, type as keyof HTMLElementEventMap, fn));
    }
  }
  if (old instanceof HTMLInputElement && fresh instanceof HTMLInputElement) {
    old.checked = fresh.checked;
  }
  reconcile(old, Array.from(fresh.childNodes));
}

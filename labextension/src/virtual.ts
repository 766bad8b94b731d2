/**
 * A virtualised list of fixed-height rows: only the rows in view (and a few around them) are in
 * the DOM, so 2,000 tasks cost what 40 do. Used by the task table and the timeline.
 */
import { h, patchChildren } from './dom';

/** The rows [start, end) to draw for a scroll position; `overscan` rows on either side. */
export function visibleRange(
  scrollTop: number,
  viewHeight: number,
  rowHeight: number,
  count: number,
  overscan = 5
): [number, number] {
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const last = Math.ceil((Math.max(0, scrollTop) + Math.max(0, viewHeight)) / rowHeight);
  return [Math.max(0, first - overscan), Math.min(count, last + overscan)];
}

/** Rows are drawn again each time the list's view changes (every second while a task runs),
 * updating the elements already there: `renderRow`'s handlers must come from `on`. */
export class VirtualRows {
  /** The scrolling box. */
  readonly node: HTMLElement;
  private readonly body = h('div', { class: 'osmo-vrows-body', role: 'rowgroup' });
  private count = 0;
  private pending = false;

  constructor(
    private readonly rowHeight: number,
    private readonly renderRow: (index: number) => HTMLElement,
    label: string
  ) {
    this.node = h('div', { class: 'osmo-vrows', 'aria-label': label, tabindex: 0 }, this.body);
    this.node.addEventListener('scroll', () => this.schedule(), { passive: true });
  }

  /** `count` rows, drawn again (their content may have changed). */
  setCount(count: number): void {
    this.count = count;
    this.body.style.height = `${count * this.rowHeight}px`;
    this.draw();
  }

  /** Draw the rows in view again, once per frame whatever asks. */
  schedule(): void {
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.draw();
      });
    }
  }

  private draw(): void {
    const [start, end] = visibleRange(
      this.node.scrollTop,
      this.node.clientHeight,
      this.rowHeight,
      this.count
    );
    const rows: HTMLElement[] = [];
    for (let i = start; i < end; i++) {
      const row = this.renderRow(i);
      row.style.top = `${i * this.rowHeight}px`;
      row.style.height = `${this.rowHeight}px`;
      row.setAttribute('aria-rowindex', String(i + 2)); // 1 is the header row
      row.dataset.key = String(i); // the row drawn at i stays the same element (dom.ts)
      rows.push(row);
    }
    patchChildren(this.body, ...rows);
  }
}

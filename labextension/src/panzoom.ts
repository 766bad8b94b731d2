/**
 * Pan and zoom of an SVG's content group: drag the background, the wheel (around the pointer),
 * the arrow keys and +/-/0 while the SVG has focus, and fit. One transform attribute moves:
 * no element is made again, so a step costs the browser's repaint of what is in view (one or
 * two frames with ~40 nodes in view), whatever the graph's size.
 */
import type { Point, Rect } from './graphlayout';

const MIN_SCALE = 0.1;
const MAX_SCALE = 3;
/** "Fit" never goes below this: smaller text cannot be read (pan to the rest). */
const MIN_FIT = 0.8;
const PAN_STEP = 60;
export const ZOOM_STEP = 1.25;
const MARGIN = 16;

export class PanZoom {
  /** The size of what is drawn, in its own units (set after each layout). */
  content: { width: number; height: number } = { width: 0, height: 0 };
  private scale = 1;
  private tx = 0;
  private ty = 0;

  constructor(
    private readonly svg: SVGSVGElement,
    private readonly world: SVGGElement,
    private readonly moved: (scale: number) => void
  ) {
    this.listen();
  }

  /** Fit the content in view (not below MIN_FIT, not above 1); false while the view has no
   * size (hidden). */
  fit(): boolean {
    const view = this.svg.getBoundingClientRect();
    const { width, height } = this.content;
    if (!view.width || !view.height || !width || !height) {
      return false;
    }
    this.scale = Math.min(1, Math.max(MIN_FIT, Math.min(view.width / width, view.height / height)));
    this.tx = Math.max(0, (view.width - width * this.scale) / 2);
    this.ty = Math.max(0, (view.height - height * this.scale) / 2);
    this.apply();
    return true;
  }

  /** Zoom by `factor` around a point of the view (its centre by default). */
  zoomBy(factor: number, at?: Point): void {
    const view = this.svg.getBoundingClientRect();
    const c = at ?? { x: view.width / 2, y: view.height / 2 };
    const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.scale * factor));
    this.tx = c.x - ((c.x - this.tx) * scale) / this.scale;
    this.ty = c.y - ((c.y - this.ty) * scale) / this.scale;
    this.scale = scale;
    this.apply();
  }

  panBy(dx: number, dy: number): void {
    this.tx += dx;
    this.ty += dy;
    this.apply();
  }

  /** Pan the least that brings `box` (content units) wholly into view, if it fits. */
  reveal(box: Rect): void {
    const view = this.svg.getBoundingClientRect();
    const shift = (at: number, size: number, room: number) =>
      at < MARGIN ? MARGIN - at : at + size > room - MARGIN ? room - MARGIN - at - size : 0;
    const x = this.tx + box.x * this.scale;
    const y = this.ty + box.y * this.scale;
    const dx = shift(x, box.width * this.scale, view.width);
    const dy = shift(y, box.height * this.scale, view.height);
    if (dx || dy) {
      this.panBy(dx, dy);
    }
  }

  /** Centre `box` (content units) along each axis the content overflows. */
  centreOn(box: Rect): void {
    const view = this.svg.getBoundingClientRect();
    if (this.content.width * this.scale > view.width) {
      this.tx = view.width / 2 - (box.x + box.width / 2) * this.scale;
    }
    if (this.content.height * this.scale > view.height) {
      this.ty = view.height / 2 - (box.y + box.height / 2) * this.scale;
    }
    this.apply();
  }

  private apply(): void {
    this.world.setAttribute(
      'transform',
      `translate(${this.tx.toFixed(1)},${this.ty.toFixed(1)}) scale(${this.scale.toFixed(4)})`
    );
    this.moved(this.scale);
  }

  private listen(): void {
    let drag: { id: number; x: number; y: number } | null = null;
    this.svg.addEventListener('pointerdown', ev => {
      if ((ev.target as Element).closest('[role="button"]')) {
        return; // a node's click, not a pan
      }
      drag = { id: ev.pointerId, x: ev.clientX, y: ev.clientY };
      this.svg.setPointerCapture(ev.pointerId);
      this.svg.classList.add('osmo-panning');
    });
    this.svg.addEventListener('pointermove', ev => {
      if (drag?.id === ev.pointerId) {
        this.panBy(ev.clientX - drag.x, ev.clientY - drag.y);
        drag.x = ev.clientX;
        drag.y = ev.clientY;
      }
    });
    const end = (ev: PointerEvent) => {
      if (drag?.id === ev.pointerId) {
        drag = null;
        this.svg.classList.remove('osmo-panning');
      }
    };
    this.svg.addEventListener('pointerup', end);
    this.svg.addEventListener('pointercancel', end);
    this.svg.addEventListener(
      'wheel',
      ev => {
        ev.preventDefault();
        const view = this.svg.getBoundingClientRect();
        const at = { x: ev.clientX - view.left, y: ev.clientY - view.top };
        this.zoomBy(Math.exp(-ev.deltaY * 0.0015), at);
      },
      { passive: false }
    );
    this.svg.addEventListener('keydown', ev => {
      const moves: Record<string, [number, number]> = {
        ArrowLeft: [PAN_STEP, 0],
        ArrowRight: [-PAN_STEP, 0],
        ArrowUp: [0, PAN_STEP],
        ArrowDown: [0, -PAN_STEP]
      };
      if (ev.target !== this.svg) {
        return; // a node has focus: its keys are its own (Enter, Space)
      }
      if (ev.key in moves) {
        this.panBy(...moves[ev.key]);
      } else if (ev.key === '+' || ev.key === '=') {
        this.zoomBy(ZOOM_STEP);
      } else if (ev.key === '-') {
        this.zoomBy(1 / ZOOM_STEP);
      } else if (ev.key === '0') {
        this.fit();
      } else {
        return;
      }
      ev.preventDefault();
    });
  }
}

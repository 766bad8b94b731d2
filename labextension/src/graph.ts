/**
 * The main-area graph: graphlayout.ts's layout as SVG with pan (drag, arrow keys), zoom (wheel,
 * +/- buttons and keys) and fit; a legend of the status colours; each node's status, duration
 * and exit code. Statuses are updated in place: the layout is redone only when the set of
 * tasks (or of collapsed groups) changes.
 */
import { activateOnKeys, h } from './dom';
import { GraphLayout, GraphNode, graphLayout, Point } from './graphlayout';
import {
  duration,
  formatDuration,
  holdText,
  shownStatus,
  statusKind,
  taskKind,
  WorkflowView
} from './model';

const MIN_SCALE = 0.1;
const MAX_SCALE = 3;
/** "Fit" never goes below this: smaller text cannot be read (pan to the rest). */
const MIN_FIT = 0.8;
const PAN_STEP = 60;
const KEYS = 'Drag or arrow keys to pan, wheel or +/- to zoom, 0 to fit, Escape to unselect.';

export interface GraphHandlers {
  select(task: string): void;
  /** Expand a collapsed group, or collapse an expanded one. */
  toggleGroup(group: string): void;
}

/** The status colours the legend explains, as model.ts `taskKind` names them. */
export const LEGEND: Array<[string, string]> = [
  ['completed', 'completed'],
  ['running', 'running'],
  ['held', 'held for you'],
  ['pending', 'scheduling'],
  ['waiting', 'waiting for upstream'],
  ['failed', 'failed'],
  ['upstream', 'skipped: upstream failed'],
  ['canceled', 'canceled'],
  ['rescheduled', 'rescheduled']
];

/** A node's second line: what it is doing, for how long, and how it ended. */
export function nodeText(view: WorkflowView, node: GraphNode, now: number): string {
  if (node.collapsed) {
    const states = node.members.map(n => view.tasks.get(n)?.status ?? '');
    const count = (kind: string) => states.filter(s => statusKind(s) === kind).length;
    const parts = [`${count('completed')}/${states.length} done`];
    for (const kind of ['running', 'failed', 'upstream']) {
      const n = count(kind);
      if (n) {
        parts.push(`${n} ${kind === 'upstream' ? 'skipped' : kind}`);
      }
    }
    return parts.join(' · ');
  }
  const t = view.tasks.get(node.id);
  if (!t) {
    return 'UNKNOWN';
  }
  if (t.status === 'FAILED_UPSTREAM') {
    return 'skipped: upstream failed';
  }
  const took = formatDuration(duration(t, now));
  const exit = t.exit_code === null || t.exit_code === undefined ? '' : `exit ${t.exit_code}`;
  return [shownStatus(t), took, exit].filter(Boolean).join(' · ');
}

/** A node's colour family: a collapsed group's is its group's status. */
function nodeKind(view: WorkflowView, node: GraphNode): string {
  if (node.collapsed) {
    return statusKind(view.groups.get(node.group ?? '') ?? '');
  }
  const t = view.tasks.get(node.id);
  return t ? taskKind(t) : 'unknown';
}

function pathOf(points: Point[]): string {
  return points.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
}

export class GraphView {
  readonly node = h('div', { class: 'osmo-graph' });
  readonly svg = h('svg', {
    class: 'osmo-graph-svg',
    role: 'group',
    tabindex: 0,
    'aria-label': `Task graph. ${KEYS}`
  }) as SVGSVGElement;
  private readonly world = h('g', { class: 'osmo-graph-world' }) as SVGGElement;
  private plan: GraphLayout | null = null;
  private planKey = '';
  private readonly nodes = new Map<
    string,
    { el: SVGGElement; text: SVGTextElement; shown: string }
  >();
  private scale = 1;
  private tx = 0;
  private ty = 0;
  private fitted = false;
  private selected: string | null = null;

  constructor(private readonly on: GraphHandlers) {
    const button = (label: string, title: string, fn: () => void) => {
      const b = h(
        'button',
        {
          class: 'jp-Button jp-mod-styled osmo-graph-button',
          type: 'button',
          title,
          'aria-label': title
        },
        label
      );
      b.addEventListener('click', fn);
      return b;
    };
    const tools = h(
      'div',
      { class: 'osmo-graph-tools', role: 'toolbar', 'aria-label': 'Zoom' },
      button('−', 'Zoom out', () => this.zoomBy(1 / 1.25)),
      button('+', 'Zoom in', () => this.zoomBy(1.25)),
      button('Fit', 'Fit the graph to the view', () => this.fit())
    );
    const legend = h(
      'ul',
      { class: 'osmo-graph-legend', 'aria-label': 'Legend' },
      ...LEGEND.map(([kind, label]) =>
        h(
          'li',
          { 'data-kind': kind },
          h('span', { class: `osmo-graph-swatch osmo-status-${kind}` }),
          label
        )
      )
    );
    this.svg.append(this.defs(), this.world);
    this.node.append(h('div', { class: 'osmo-graph-bar' }, legend, tools), this.svg);
    this.listen();
  }

  private defs(): SVGElement {
    return h(
      'defs',
      {},
      h(
        'marker',
        {
          id: 'osmo-graph-arrow',
          viewBox: '0 0 10 10',
          refX: 10,
          refY: 5,
          markerWidth: 7,
          markerHeight: 7,
          orient: 'auto-start-reverse'
        },
        h('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'osmo-dag-arrow' })
      )
    ) as SVGElement;
  }

  /** Draw `view`: laid out again only if its tasks or `collapsed` changed, else restyled;
   * `foldable`: its groups may be collapsed (a big workflow). */
  render(
    view: WorkflowView,
    collapsed: ReadonlySet<string>,
    foldable: boolean,
    selected: string | null
  ): void {
    const key = `${view.order.length}\n${[...collapsed].sort().join('\n')}`;
    if (key !== this.planKey) {
      const t0 = performance.now();
      this.plan = graphLayout(view.order, view.spec, collapsed);
      // how long the layout took, for the curious and the tests
      this.node.dataset.layoutMs = (performance.now() - t0).toFixed(1);
      this.planKey = key;
      this.draw(this.plan, view, foldable);
    }
    this.selected = selected;
    this.update(view);
  }

  /** Node statuses, durations and the selection, in place. */
  update(view: WorkflowView): void {
    const now = Date.now() / 1000;
    for (const n of this.plan?.nodes ?? []) {
      const drawn = this.nodes.get(n.id)!;
      const kind = nodeKind(view, n);
      const text = nodeText(view, n, now);
      const t = n.collapsed ? undefined : view.tasks.get(n.id);
      const held = t ? holdText(t) : null;
      const sel = this.selected === n.id;
      const shown = `${kind}|${text}|${held}|${sel}`;
      if (shown === drawn.shown) {
        continue;
      }
      drawn.shown = shown;
      drawn.el.setAttribute(
        'class',
        `osmo-graph-node osmo-status-${kind}${sel ? ' osmo-selected' : ''}${n.collapsed ? ' osmo-collapsed' : ''}`
      );
      drawn.el.setAttribute('data-status', t?.status ?? kind);
      drawn.el.setAttribute('aria-pressed', sel ? 'true' : 'false');
      const what = n.collapsed
        ? `group ${n.group}, ${n.members.length} tasks: ${text}`
        : `task ${n.id}: ${text}${held ? `, ${held}` : ''}`;
      drawn.el.setAttribute('aria-label', what);
      drawn.el.querySelector('title')!.textContent =
        `${what}${t?.message ? ` (${t.message})` : ''}${n.collapsed ? ' (click to expand)' : ''}`;
      drawn.text.textContent = text;
    }
  }

  private draw(plan: GraphLayout, view: WorkflowView, foldable: boolean): void {
    this.nodes.clear();
    const parts: SVGElement[] = [];
    for (const g of plan.groups) {
      const label = h('text', { x: g.x + 8, y: g.y + 14, class: 'osmo-graph-group-name' }, g.name);
      const box = h(
        'g',
        { class: 'osmo-graph-group', 'data-group': g.name },
        h('rect', { x: g.x, y: g.y, width: g.width, height: g.height, rx: 8 }),
        label
      );
      if (foldable) {
        label.setAttribute('role', 'button');
        label.setAttribute('tabindex', '0');
        label.setAttribute('aria-label', `Collapse group ${g.name}`);
        label.append(h('title', {}, `${g.name}: click to collapse it`));
        activateOnKeys(label, () => this.on.toggleGroup(g.name));
      }
      parts.push(box as SVGElement);
    }
    for (const e of plan.edges) {
      parts.push(
        h('path', {
          class: 'osmo-graph-edge',
          d: pathOf(e.points),
          'data-from': e.from,
          'data-to': e.to,
          'marker-end': 'url(#osmo-graph-arrow)'
        }) as SVGElement
      );
    }
    for (const n of plan.nodes) {
      const text = h('text', { x: n.x + 10, y: n.y + n.height - 10, class: 'osmo-graph-status' });
      const name = h(
        'text',
        { x: n.x + 10, y: n.y + 18, class: 'osmo-graph-name' },
        ...n.lines.map((line, i) => h('tspan', { x: n.x + 10, dy: i ? 15 : 0 }, line))
      );
      const el = h(
        'g',
        {
          'data-node': n.id,
          'data-task': n.collapsed ? null : n.id,
          'data-group': n.collapsed ? n.group : null,
          'data-key': `node:${n.id}`,
          tabindex: 0,
          role: 'button'
        },
        h('title', {}),
        h('rect', { x: n.x, y: n.y, width: n.width, height: n.height, rx: 6 }),
        name,
        text
      ) as SVGGElement;
      activateOnKeys(el, () =>
        n.collapsed ? this.on.toggleGroup(n.group ?? '') : this.on.select(n.id)
      );
      this.nodes.set(n.id, { el, text: text as SVGTextElement, shown: '' });
      parts.push(el);
    }
    this.world.replaceChildren(...parts);
    this.svg.setAttribute('aria-label', `Graph of ${view.id}, ${view.order.length} tasks. ${KEYS}`);
    if (!this.fitted) {
      this.fitted = this.fit();
    }
  }

  /** Fit the whole graph in view (not below MIN_FIT); false while the view has no size. */
  fit(): boolean {
    const box = this.svg.getBoundingClientRect();
    if (!this.plan || !box.width || !box.height) {
      return false;
    }
    const { width, height } = this.plan;
    this.scale = Math.min(1, Math.max(MIN_FIT, Math.min(box.width / width, box.height / height)));
    this.tx = Math.max(0, (box.width - width * this.scale) / 2);
    this.ty = Math.max(0, (box.height - height * this.scale) / 2);
    this.apply();
    return true;
  }

  /** The view became visible: fit the graph if it could not be fitted while hidden. */
  shown(): void {
    if (!this.fitted) {
      this.fitted = this.fit();
    }
  }

  /** Zoom by `factor` around a point of the view (its centre by default). */
  zoomBy(factor: number, at?: Point): void {
    const box = this.svg.getBoundingClientRect();
    const c = at ?? { x: box.width / 2, y: box.height / 2 };
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

  /** The current view: scale and translation. */
  get transform(): { scale: number; x: number; y: number } {
    return { scale: this.scale, x: this.tx, y: this.ty };
  }

  private apply(): void {
    this.world.setAttribute(
      'transform',
      `translate(${this.tx.toFixed(1)},${this.ty.toFixed(1)}) scale(${this.scale.toFixed(4)})`
    );
    this.node.dataset.scale = this.scale.toFixed(3);
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
        const box = this.svg.getBoundingClientRect();
        const at = { x: ev.clientX - box.left, y: ev.clientY - box.top };
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
        this.zoomBy(1.25);
      } else if (ev.key === '-') {
        this.zoomBy(1 / 1.25);
      } else if (ev.key === '0') {
        this.fit();
      } else {
        return;
      }
      ev.preventDefault();
    });
  }
}

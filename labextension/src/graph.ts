/**
 * The main-area graph: graphlayout.ts's layout as SVG (a wide fan-out as a framed grid), panned
 * and zoomed by panzoom.ts; a legend of the status colours; each node's status, duration and
 * exit code. Statuses are updated in place: the layout is redone only when the set of tasks
 * (or of collapsed groups) changes.
 */
import { activateOnKeys, h, replaceKeepingFocus } from './dom';
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
import { PanZoom, ZOOM_STEP } from './panzoom';

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
  /** The view's pan and zoom (fitted once the graph is first drawn in a view with a size). */
  readonly view: PanZoom;
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
      button('−', 'Zoom out', () => this.view.zoomBy(1 / ZOOM_STEP)),
      button('+', 'Zoom in', () => this.view.zoomBy(ZOOM_STEP)),
      button('Fit', 'Fit the graph to the view', () => this.view.fit())
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
    this.view = new PanZoom(this.svg, this.world, scale => {
      this.node.dataset.scale = scale.toFixed(3);
    });
    // a node reached by the keyboard is brought into view
    this.svg.addEventListener('focusin', ev => {
      const id = (ev.target as Element).getAttribute('data-node');
      const n = id === null ? undefined : this.plan?.nodes.find(p => p.id === id);
      if (n) {
        this.view.reveal(n);
      }
    });
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
  private update(view: WorkflowView): void {
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
    for (const b of plan.bundles) {
      const what = `${b.members.length} alike: the same upstream and downstream tasks`;
      parts.push(
        h(
          'rect',
          {
            class: 'osmo-graph-bundle',
            'data-bundle': b.id,
            x: b.x,
            y: b.y,
            width: b.width,
            height: b.height,
            rx: 8
          },
          h('title', {}, what)
        ) as SVGElement
      );
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
    replaceKeepingFocus(this.world, ...parts); // a focused task keeps focus when others come
    this.svg.setAttribute('aria-label', `Graph of ${view.id}, ${view.order.length} tasks. ${KEYS}`);
    this.view.content = plan;
    this.shown();
  }

  /** The view became visible: fit the graph if it could not be fitted while hidden. */
  shown(): void {
    if (!this.fitted && this.plan) {
      this.fitted = this.view.fit();
      if (this.fitted && this.plan.nodes.length) {
        this.view.centreOn(this.plan.nodes[0]); // a big graph starts where the workflow does
      }
    }
  }
}

/** A workflow's DAG as SVG: tasks as nodes coloured by status, groups boxed, edges by inputs. */
import { activateOnKeys, h } from './dom';
import {
  heldKind,
  holdText,
  Layout,
  NODE_H,
  NODE_W,
  shownStatus,
  taskKind,
  WorkflowView
} from './model';

export function renderDag(
  view: WorkflowView,
  plan: Layout,
  selected: string | null,
  onSelect: (task: string) => void
): SVGSVGElement {
  const svg = h('svg', {
    class: 'osmo-dag',
    width: plan.width,
    height: plan.height,
    viewBox: `0 0 ${plan.width} ${plan.height}`,
    role: 'group',
    'aria-label': `tasks of ${view.id}`
  }) as SVGSVGElement;
  svg.append(
    h(
      'defs',
      {},
      h(
        'marker',
        {
          id: 'osmo-arrow',
          viewBox: '0 0 10 10',
          refX: 10,
          refY: 5,
          markerWidth: 6,
          markerHeight: 6,
          orient: 'auto-start-reverse'
        },
        h('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'osmo-dag-arrow' })
      )
    )
  );
  for (const g of plan.groups) {
    const status = view.groups.get(g.name) ?? '';
    svg.append(
      h(
        'g',
        { class: 'osmo-dag-group', 'data-group': g.name },
        h('rect', { x: g.x, y: g.y, width: g.width, height: g.height, rx: 8 }),
        h('text', { x: g.x + 8, y: g.y + 14 }, `${g.name}${status ? ` · ${status}` : ''}`)
      )
    );
  }
  const at = Object.fromEntries(plan.nodes.map(n => [n.name, n]));
  for (const e of plan.edges) {
    const a = at[e.from];
    const b = at[e.to];
    svg.append(
      h('line', {
        class: 'osmo-dag-edge',
        x1: a.x + NODE_W,
        y1: a.y + NODE_H / 2,
        x2: b.x,
        y2: b.y + NODE_H / 2,
        'marker-end': 'url(#osmo-arrow)'
      })
    );
  }
  for (const n of plan.nodes) {
    const t = view.tasks.get(n.name);
    const status = t?.status ?? 'UNKNOWN';
    const held = t ? holdText(t) : null;
    const shown = t ? shownStatus(t) : status;
    const node = h(
      'g',
      {
        class: `osmo-dag-node osmo-status-${t ? taskKind(t) : 'unknown'}${
          selected === n.name ? ' osmo-selected' : ''
        }${held ? ' osmo-held' : ''}`,
        'data-task': n.name,
        'data-hold': t ? (heldKind(t) ?? undefined) : undefined,
        'data-key': `task:${n.name}`,
        'data-status': status,
        tabindex: 0,
        role: 'button',
        'aria-pressed': selected === n.name ? 'true' : 'false',
        'aria-label': `task ${n.name}: ${status}${held ? `, ${held}` : ''}`
      },
      h(
        'title',
        {},
        `${n.name}: ${status}${held ? `, ${held}` : ''}${t?.message ? ` (${t.message})` : ''}`
      ),
      h('rect', { x: n.x, y: n.y, width: NODE_W, height: NODE_H, rx: 6 }),
      h('text', { x: n.x + 8, y: n.y + 18, class: 'osmo-dag-name' }, clip(n.name, 19)),
      h('text', { x: n.x + 8, y: n.y + 35, class: 'osmo-dag-status' }, shown)
    );
    activateOnKeys(node, () => onSelect(n.name));
    svg.append(node);
  }
  return svg;
}

function clip(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

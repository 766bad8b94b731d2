/** A workflow's DAG as SVG in the side panel: tasks in a column per level, coloured by status,
 * groups boxed, edges by inputs (`layout`, then `renderDag`). */
import { activateOnKeys, h } from './dom';
import { heldKind, holdText, shownStatus, taskKind, WorkflowView } from './model';
import { levels, SpecInfo } from './specinfo';

export interface NodeBox {
  name: string;
  x: number;
  y: number;
}
export interface GroupBox {
  name: string;
  x: number;
  y: number;
  width: number;
  height: number;
}
export interface Layout {
  nodes: NodeBox[];
  groups: GroupBox[];
  edges: Array<{ from: string; to: string }>;
  width: number;
  height: number;
}

export const NODE_W = 150;
export const NODE_H = 44;
const GAP_X = 48;
const GAP_Y = 18;
const PAD = 10;
const GROUP_PAD = 8;
const GROUP_LABEL = 14;

/** Columns by level; a column's tasks ordered by group, so a group's box holds only its own. */
export function layout(order: string[], spec: SpecInfo): Layout {
  const lv = levels(Object.fromEntries(order.map(n => [n, spec.upstream[n] ?? []])));
  const columns: string[][] = [];
  for (const name of order) {
    (columns[lv[name] ?? 0] ??= []).push(name);
  }
  const groupOf = (n: string) => spec.tasks[n]?.group ?? '';
  const nodes: NodeBox[] = [];
  let height = 0;
  columns.forEach((col, c) => {
    const sorted = [...col].sort(
      (a, b) => groupOf(a).localeCompare(groupOf(b)) || order.indexOf(a) - order.indexOf(b)
    );
    let y = PAD;
    let prev: string | undefined;
    for (const name of sorted) {
      const g = groupOf(name);
      if (g && g !== prev) {
        y += GROUP_LABEL + GROUP_PAD; // room for the group's label above its first task
      } else if (!g && prev) {
        y += GROUP_PAD;
      }
      nodes.push({ name, x: PAD + GROUP_PAD + c * (NODE_W + GAP_X), y });
      y += NODE_H + GAP_Y;
      prev = g || undefined;
      height = Math.max(height, y);
    }
  });
  const byName = Object.fromEntries(nodes.map(n => [n.name, n]));
  const groups: GroupBox[] = [];
  for (const g of [...new Set(order.map(groupOf).filter(Boolean))]) {
    const members = nodes.filter(n => groupOf(n.name) === g);
    const x0 = Math.min(...members.map(n => n.x)) - GROUP_PAD;
    const y0 = Math.min(...members.map(n => n.y)) - GROUP_PAD - GROUP_LABEL;
    const x1 = Math.max(...members.map(n => n.x)) + NODE_W + GROUP_PAD;
    const y1 = Math.max(...members.map(n => n.y)) + NODE_H + GROUP_PAD;
    groups.push({ name: g, x: x0, y: y0, width: x1 - x0, height: y1 - y0 });
  }
  const edges = order.flatMap(to =>
    (spec.upstream[to] ?? []).filter(from => byName[from]).map(from => ({ from, to }))
  );
  return {
    nodes,
    groups,
    edges,
    width: PAD * 2 + GROUP_PAD * 2 + columns.length * (NODE_W + GAP_X) - GAP_X,
    height: height + PAD + GROUP_PAD
  };
}

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

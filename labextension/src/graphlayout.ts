/**
 * The main-area graph's layout: dagre's layered layout (ranks left to right, edges routed
 * through dagre's points, groups as compound nodes, a wide fan-out as a grid). Above
 * COLLAPSE_ABOVE tasks each group is one node until the user expands it: 2,000 tasks laid out
 * one by one take seconds. Pure.
 */
import dagre from '@dagrejs/dagre';

import { levels, SpecInfo } from './specinfo';

export const GRAPH_NODE_W = 200;
export const GRAPH_NODE_H = 64;
/** Above this many tasks, groups start collapsed. */
export const COLLAPSE_ABOVE = 300;
/** Above this many nodes dagre takes seconds (76 s for 2,001 grouped tasks): columns instead. */
export const DAGRE_MAX_NODES = 400;
/** More siblings than this (the same upstream and downstream nodes) are drawn as a grid. */
export const BUNDLE_ABOVE = 12;
const LABEL_CHARS = 26; // what fits GRAPH_NODE_W at 12px
const GROUP_PREFIX = 'group:';
const BUNDLE_PREFIX = 'bundle:';
const BUNDLE_PAD = 10;
const NODE_GAP = 18;
const RANK_GAP = 56;
const MARGIN = 16;

export interface Point {
  x: number;
  y: number;
}

/** A box in the layout's units: its top-left corner and size. */
export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface GraphNode extends Rect {
  /** The task's name, or `group:NAME` for a collapsed group. */
  id: string;
  /** The task names it stands for: itself, or a collapsed group's tasks. */
  members: string[];
  group: string | null;
  collapsed: boolean;
  /** The name in at most two lines; elided lines end with '…' (the full name is a tooltip). */
  lines: string[];
}

export interface GraphEdge {
  from: string;
  to: string;
  points: Point[];
}

/** An expanded group's box, around its tasks. */
export interface GraphGroup extends Rect {
  name: string;
}

/** Siblings drawn as a grid in a frame: one edge from each upstream node to the frame, one from
 * the frame to each downstream node, rather than a column of hundreds with crossing edges. */
export interface GraphBundle extends Rect {
  /** `bundle:FIRST-MEMBER`, the end of its edges. */
  id: string;
  /** Its nodes' ids, row by row. */
  members: string[];
  columns: number;
}

export interface GraphLayout {
  nodes: GraphNode[];
  edges: GraphEdge[];
  groups: GraphGroup[];
  bundles: GraphBundle[];
  width: number;
  height: number;
}

/** The node id of a collapsed group. */
export function groupNodeId(group: string): string {
  return GROUP_PREFIX + group;
}

/** `name` in at most `maxLines` lines of `width` characters, broken after '-', '_', '.', '/'
 * where it can be; what does not fit ends in '…'. */
export function labelLines(name: string, width = LABEL_CHARS, maxLines = 2): string[] {
  const lines: string[] = [];
  let rest = name;
  while (rest && lines.length < maxLines) {
    if (rest.length <= width) {
      lines.push(rest);
      return lines;
    }
    if (lines.length === maxLines - 1) {
      lines.push(`${rest.slice(0, width - 1)}…`);
      return lines;
    }
    const cut = Math.max(...['-', '_', '.', '/'].map(c => rest.lastIndexOf(c, width - 1)));
    const at = cut >= width / 2 ? cut + 1 : width;
    lines.push(rest.slice(0, at));
    rest = rest.slice(at);
  }
  return lines;
}

/** The groups drawn as one node: none for a small workflow; every group of several tasks
 * but the `expanded` ones above COLLAPSE_ABOVE tasks. */
export function collapsedGroups(
  order: string[],
  spec: SpecInfo,
  expanded: ReadonlySet<string>,
  threshold = COLLAPSE_ABOVE
): Set<string> {
  if (order.length <= threshold) {
    return new Set();
  }
  const sizes = new Map<string, number>();
  for (const name of order) {
    const g = spec.tasks[name]?.group;
    if (g) {
      sizes.set(g, (sizes.get(g) ?? 0) + 1);
    }
  }
  return new Set([...sizes].filter(([g, n]) => n > 1 && !expanded.has(g)).map(([g]) => g));
}

/** Lay out `order`'s tasks (and their upstream edges), `collapsed` groups as one node each;
 * more than BUNDLE_ABOVE siblings (the same upstream and downstream nodes, in the same box)
 * as a grid in one bundle. */
export function graphLayout(
  order: string[],
  spec: SpecInfo,
  collapsed: ReadonlySet<string> = new Set()
): GraphLayout {
  const nodeOf = new Map<string, string>(); // task → the node drawn for it
  const nodes = new Map<string, GraphNode>();
  for (const name of order) {
    const group = spec.tasks[name]?.group ?? null;
    const folded = group !== null && collapsed.has(group);
    const id = folded ? groupNodeId(group) : name;
    nodeOf.set(name, id);
    const node = nodes.get(id);
    if (node) {
      node.members.push(name);
      continue;
    }
    nodes.set(id, {
      id,
      x: 0,
      y: 0,
      width: GRAPH_NODE_W,
      height: GRAPH_NODE_H,
      members: [name],
      group,
      collapsed: folded,
      lines: []
    });
  }
  for (const n of nodes.values()) {
    n.lines = n.collapsed
      ? labelLines(`${n.group} (${n.members.length} tasks)`, LABEL_CHARS, 1)
      : labelLines(n.id);
  }
  const links = new Map<string, [string, string]>();
  for (const to of order) {
    for (const from of spec.upstream[to] ?? []) {
      const a = nodeOf.get(from);
      const b = nodeOf.get(to)!;
      if (a && a !== b) {
        links.set(`${a}\n${b}`, [a, b]);
      }
    }
  }
  const list = [...nodes.values()];
  // a group of one task gets no box: it would say nothing, and dagre stretches a compound
  // node along the rank it shares with a wide fan-out
  const sizes = new Map<string, number>();
  for (const n of list) {
    if (n.group !== null && !n.collapsed) {
      sizes.set(n.group, (sizes.get(n.group) ?? 0) + 1);
    }
  }
  const boxOf = (n: GraphNode) =>
    n.group !== null && !n.collapsed && sizes.get(n.group)! > 1 ? n.group : '';
  const bundles = bundled(list, [...links.values()], boxOf);
  // what is laid out: each node not in a bundle, and each bundle as one block
  const itemOf = new Map<string, Item>(); // node → its item
  const items = new Map<string, Item>();
  for (const n of list) {
    const b = bundles.get(n.id);
    const id = b?.id ?? n.id;
    let item = items.get(id);
    if (!item) {
      const [width, height] = b ? [b.width, b.height] : [n.width, n.height];
      item = { id, x: 0, y: 0, width, height, box: boxOf(n) };
      items.set(id, item);
    }
    itemOf.set(n.id, item);
  }
  const itemLinks = new Map<string, [string, string]>();
  for (const [a, b] of links.values()) {
    const [x, y] = [itemOf.get(a)!.id, itemOf.get(b)!.id];
    itemLinks.set(`${x}\n${y}`, [x, y]);
  }
  const placed =
    items.size > DAGRE_MAX_NODES
      ? columns([...items.values()], [...itemLinks.values()])
      : layered([...items.values()], [...itemLinks.values()]);
  for (const n of list) {
    const item = itemOf.get(n.id)!;
    [n.x, n.y] = [item.x, item.y];
  }
  const shown = [...new Set(bundles.values())];
  for (const b of shown) {
    const item = items.get(b.id)!;
    [b.x, b.y] = [item.x, item.y];
    b.members.forEach((m, i) => {
      const n = nodes.get(m)!;
      n.x = b.x + BUNDLE_PAD + (i % b.columns) * (GRAPH_NODE_W + NODE_GAP);
      n.y = b.y + BUNDLE_PAD + Math.floor(i / b.columns) * (GRAPH_NODE_H + NODE_GAP);
    });
  }
  return { nodes: list, bundles: shown, ...placed };
}

/** A node of the layout: a node of the graph, or a bundle's block. */
interface Item extends Rect {
  id: string;
  /** The group whose box it is drawn in, or ''. */
  box: string;
}

type Placed = Omit<GraphLayout, 'nodes' | 'bundles'>;

/** The bundles, by member: runs of more than BUNDLE_ABOVE nodes with the same upstream and
 * downstream nodes in the same box, each as a grid about 1.6 times as wide as it is tall. */
function bundled(
  nodes: GraphNode[],
  links: Array<[string, string]>,
  boxOf: (n: GraphNode) => string
): Map<string, GraphBundle> {
  const ups = new Map<string, string[]>();
  const downs = new Map<string, string[]>();
  const add = (to: Map<string, string[]>, key: string, value: string) =>
    to.get(key)?.push(value) ?? to.set(key, [value]);
  for (const [a, b] of links) {
    add(ups, b, a);
    add(downs, a, b);
  }
  const alike = new Map<string, string[]>();
  for (const n of nodes) {
    const up = (ups.get(n.id) ?? []).sort();
    const down = (downs.get(n.id) ?? []).sort();
    add(alike, [boxOf(n), ...up, '', ...down].join('\n'), n.id);
  }
  const out = new Map<string, GraphBundle>();
  for (const members of alike.values()) {
    if (members.length <= BUNDLE_ABOVE) {
      continue;
    }
    const aspect = (1.6 * (GRAPH_NODE_H + NODE_GAP)) / (GRAPH_NODE_W + NODE_GAP);
    const columns = Math.ceil(Math.sqrt(members.length * aspect));
    const rows = Math.ceil(members.length / columns);
    const bundle: GraphBundle = {
      id: BUNDLE_PREFIX + members[0],
      x: 0,
      y: 0,
      width: columns * (GRAPH_NODE_W + NODE_GAP) - NODE_GAP + 2 * BUNDLE_PAD,
      height: rows * (GRAPH_NODE_H + NODE_GAP) - NODE_GAP + 2 * BUNDLE_PAD,
      members,
      columns
    };
    for (const m of members) {
      out.set(m, bundle);
    }
  }
  return out;
}

/** dagre's layout: ranks left to right, routed edges, boxes as compound nodes. */
function layered(items: Item[], links: Array<[string, string]>): Placed {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  g.setGraph({
    rankdir: 'LR',
    nodesep: NODE_GAP,
    ranksep: RANK_GAP,
    marginx: MARGIN,
    marginy: MARGIN
  });
  g.setDefaultEdgeLabel(() => ({}));
  const boxes = new Set<string>();
  for (const n of items) {
    g.setNode(n.id, { width: n.width, height: n.height });
    if (n.box) {
      boxes.add(n.box);
      g.setNode(groupNodeId(n.box), {}); // dagre sizes it around its children
      g.setParent(n.id, groupNodeId(n.box));
    }
  }
  for (const [a, b] of links) {
    g.setEdge(a, b);
  }
  dagre.layout(g, { constraints: siblingOrder(items, links) });
  for (const n of items) {
    const at = g.node(n.id);
    n.x = at.x - n.width / 2;
    n.y = at.y - n.height / 2;
  }
  const groups = [...boxes].map(name => {
    const at = g.node(groupNodeId(name));
    const [width, height] = [at.width, at.height];
    return { name, x: at.x - width / 2, y: at.y - height / 2, width, height };
  });
  const edges = g.edges().map(e => ({ from: e.v, to: e.w, points: g.edge(e).points ?? [] }));
  const size = g.graph();
  return { edges, groups, width: size.width ?? 0, height: size.height ?? 0 };
}

/** Siblings (the same upstream nodes, in the same box) in spec order: dagre's own order of a
 * fan-out is reversed (shard-39 above shard-00). */
function siblingOrder(
  items: Item[],
  links: Array<[string, string]>
): Array<{ left: string; right: string }> {
  const ups = new Map<string, string[]>();
  for (const [a, b] of links) {
    ups.set(b, [...(ups.get(b) ?? []), a]);
  }
  const last = new Map<string, string>();
  const constraints: Array<{ left: string; right: string }> = [];
  for (const n of items) {
    const key = `${n.box}\n${(ups.get(n.id) ?? []).sort().join('\n')}`;
    const before = last.get(key);
    if (before !== undefined) {
      constraints.push({ left: before, right: n.id });
    }
    last.set(key, n.id);
  }
  return constraints;
}

/** Too many nodes for dagre: a column per level (longest path), straight edges, no boxes. */
function columns(items: Item[], links: Array<[string, string]>): Placed {
  const ups: Record<string, string[]> = Object.fromEntries(items.map(n => [n.id, []]));
  for (const [a, b] of links) {
    ups[b].push(a);
  }
  const level = levels(ups);
  const widths: number[] = [];
  const heights: number[] = [];
  for (const n of items) {
    const c = level[n.id] ?? 0;
    n.y = MARGIN + (heights[c] ?? 0);
    heights[c] = (heights[c] ?? 0) + n.height + NODE_GAP;
    widths[c] = Math.max(widths[c] ?? 0, n.width);
  }
  const lefts = widths.map((_, c) => widths.slice(0, c).reduce((x, w) => x + w + RANK_GAP, MARGIN));
  for (const n of items) {
    n.x = lefts[level[n.id] ?? 0];
  }
  const at = new Map(items.map(n => [n.id, n]));
  const edges = links.map(([from, to]) => {
    const a = at.get(from)!;
    const b = at.get(to)!;
    const points = [
      { x: a.x + a.width, y: a.y + a.height / 2 },
      { x: b.x, y: b.y + b.height / 2 }
    ];
    return { from, to, points };
  });
  return {
    edges,
    groups: [],
    width: widths.reduce((x, w) => x + w + RANK_GAP, 2 * MARGIN) - RANK_GAP,
    height: 2 * MARGIN + Math.max(0, ...heights) - NODE_GAP
  };
}

/**
 * The main-area graph's layout: dagre's layered layout (ranks left to right, edges routed
 * through dagre's points, groups as compound nodes). Above COLLAPSE_ABOVE tasks each group is
 * one node until the user expands it: 2,000 tasks laid out one by one take seconds. Pure.
 */
import dagre from '@dagrejs/dagre';

import { levels, SpecInfo } from './specinfo';

export const GRAPH_NODE_W = 200;
export const GRAPH_NODE_H = 64;
/** Above this many tasks, groups start collapsed. */
export const COLLAPSE_ABOVE = 300;
/** Above this many nodes dagre takes seconds (76 s for 2,001 grouped tasks): columns instead. */
export const DAGRE_MAX_NODES = 400;
const LABEL_CHARS = 26; // what fits GRAPH_NODE_W at 12px
const GROUP_PREFIX = 'group:';
const NODE_GAP = 18;
const RANK_GAP = 56;
const MARGIN = 16;

export interface Point {
  x: number;
  y: number;
}

export interface GraphNode {
  /** The task's name, or `group:NAME` for a collapsed group. */
  id: string;
  /** Top-left corner. */
  x: number;
  y: number;
  width: number;
  height: number;
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
export interface GraphGroup {
  name: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface GraphLayout {
  nodes: GraphNode[];
  edges: GraphEdge[];
  groups: GraphGroup[];
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

/** Lay out `order`'s tasks (and their upstream edges), `collapsed` groups as one node each. */
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
  return list.length > DAGRE_MAX_NODES
    ? columns(list, [...links.values()])
    : layered(list, [...links.values()]);
}

/** dagre's layout: ranks left to right, routed edges, expanded groups as compound nodes. */
function layered(nodes: GraphNode[], links: Array<[string, string]>): GraphLayout {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  g.setGraph({
    rankdir: 'LR',
    nodesep: NODE_GAP,
    ranksep: RANK_GAP,
    marginx: MARGIN,
    marginy: MARGIN
  });
  g.setDefaultEdgeLabel(() => ({}));
  // a group of one task gets no box: it would say nothing, and dagre stretches a compound
  // node along the rank it shares with a wide fan-out
  const sizes = new Map<string, number>();
  for (const n of nodes) {
    if (n.group !== null && !n.collapsed) {
      sizes.set(n.group, (sizes.get(n.group) ?? 0) + 1);
    }
  }
  const boxes = new Set<string>();
  for (const n of nodes) {
    g.setNode(n.id, { width: n.width, height: n.height });
    if (n.group !== null && !n.collapsed && sizes.get(n.group)! > 1) {
      boxes.add(n.group);
      g.setNode(groupNodeId(n.group), {}); // dagre sizes it around its children
      g.setParent(n.id, groupNodeId(n.group));
    }
  }
  for (const [a, b] of links) {
    g.setEdge(a, b);
  }
  dagre.layout(g, { constraints: siblingOrder(nodes, links, boxes) });
  for (const n of nodes) {
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
  return { nodes, edges, groups, width: size.width ?? 0, height: size.height ?? 0 };
}

/** Siblings (the same upstream nodes, in the same box) in spec order: dagre's own order of a
 * fan-out is reversed (shard-39 above shard-00). */
function siblingOrder(
  nodes: GraphNode[],
  links: Array<[string, string]>,
  boxes: ReadonlySet<string>
): Array<{ left: string; right: string }> {
  const ups = new Map<string, string[]>();
  for (const [a, b] of links) {
    ups.set(b, [...(ups.get(b) ?? []), a]);
  }
  const last = new Map<string, string>();
  const constraints: Array<{ left: string; right: string }> = [];
  for (const n of nodes) {
    const box = n.group !== null && !n.collapsed && boxes.has(n.group) ? n.group : '';
    const key = `${box}\n${(ups.get(n.id) ?? []).sort().join('\n')}`;
    const before = last.get(key);
    if (before !== undefined) {
      constraints.push({ left: before, right: n.id });
    }
    last.set(key, n.id);
  }
  return constraints;
}

/** Too many nodes for dagre: a column per level (longest path), straight edges, no boxes. */
function columns(nodes: GraphNode[], links: Array<[string, string]>): GraphLayout {
  const ups: Record<string, string[]> = Object.fromEntries(nodes.map(n => [n.id, []]));
  for (const [a, b] of links) {
    ups[b].push(a);
  }
  const level = levels(ups);
  const filled: number[] = [];
  for (const n of nodes) {
    const c = level[n.id] ?? 0;
    const row = filled[c] ?? 0;
    filled[c] = row + 1;
    n.x = MARGIN + c * (GRAPH_NODE_W + RANK_GAP);
    n.y = MARGIN + row * (GRAPH_NODE_H + NODE_GAP);
  }
  const at = new Map(nodes.map(n => [n.id, n]));
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
    nodes,
    edges,
    groups: [],
    width: 2 * MARGIN + filled.length * (GRAPH_NODE_W + RANK_GAP) - RANK_GAP,
    height: 2 * MARGIN + Math.max(0, ...filled) * (GRAPH_NODE_H + NODE_GAP) - NODE_GAP
  };
}

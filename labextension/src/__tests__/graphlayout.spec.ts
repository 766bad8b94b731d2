import { describe, expect, it } from 'vitest';

import {
  BUNDLE_ABOVE,
  collapsedGroups,
  COLLAPSE_ABOVE,
  DAGRE_MAX_NODES,
  GRAPH_NODE_H,
  GRAPH_NODE_W,
  graphLayout,
  groupNodeId,
  labelLines,
  Rect
} from '../graphlayout';
import { parseSpec } from '../specinfo';

/** A root task, then `groups` groups of `per` tasks that each read the root. */
function wide(groups: number, per: number) {
  const spec = {
    tasks: null,
    groups: [
      { name: 'start', tasks: [{ name: 'root', inputs: [] }] },
      ...Array.from({ length: groups }, (_, g) => ({
        name: `shard-${g}`,
        tasks: Array.from({ length: per }, (_, t) => ({
          name: `shard-${g}-task-${t}`,
          inputs: [{ task: 'root' }]
        }))
      }))
    ]
  };
  const info = parseSpec(JSON.stringify(spec));
  return { info, order: Object.keys(info.tasks) };
}

const inside = (
  p: { x: number; y: number },
  box: { x: number; y: number; width: number; height: number }
) => p.x >= box.x && p.y >= box.y && p.x <= box.x + box.width && p.y <= box.y + box.height;

const grown = (b: { x: number; y: number; width: number; height: number }, by: number) => ({
  x: b.x - by,
  y: b.y - by,
  width: b.width + 2 * by,
  height: b.height + 2 * by
});
const onBorder = (
  p: { x: number; y: number },
  box: { x: number; y: number; width: number; height: number }
) => inside(p, grown(box, 1)) && !inside(p, grown(box, -1));

describe('labelLines', () => {
  it('keeps a short name whole', () => {
    expect(labelLines('train')).toEqual(['train']);
  });

  it('breaks a long name after a dash and elides only what does not fit', () => {
    expect(labelLines('train-shard-0-with-a-long-name', 14)).toEqual([
      'train-shard-0-',
      'with-a-long-n…'
    ]);
    const lines = labelLines('x'.repeat(60), 20);
    expect(lines).toEqual(['x'.repeat(20), `${'x'.repeat(19)}…`]);
    expect(labelLines('a-b', 20, 1)).toEqual(['a-b']);
  });
});

describe('graphLayout', () => {
  it('ranks tasks left to right, routes edges between them and boxes groups', () => {
    const { info, order } = wide(2, 3);
    const plan = graphLayout(order, info);
    const at = Object.fromEntries(plan.nodes.map(n => [n.id, n]));
    expect(plan.nodes).toHaveLength(7);
    expect(at['shard-0-task-0'].x).toBeGreaterThan(at.root.x + at.root.width);
    expect(plan.edges).toHaveLength(6);
    for (const e of plan.edges) {
      expect(e.points.length).toBeGreaterThanOrEqual(2);
      // the route starts on its upstream task's border and ends on its task's, left to right
      expect(onBorder(e.points[0], at[e.from])).toBe(true);
      expect(onBorder(e.points[e.points.length - 1], at[e.to])).toBe(true);
      expect(e.points[e.points.length - 1].x).toBeGreaterThan(e.points[0].x);
    }
    const box = plan.groups.find(g => g.name === 'shard-1')!;
    for (const n of plan.nodes) {
      const corner = { x: n.x + n.width / 2, y: n.y + n.height / 2 };
      expect(inside(corner, box)).toBe(n.group === 'shard-1');
      expect(n.x + n.width).toBeLessThanOrEqual(plan.width);
      expect(n.y + n.height).toBeLessThanOrEqual(plan.height);
    }
  });

  it('draws a collapsed group as one node with one edge per neighbour', () => {
    const { info, order } = wide(3, 4);
    const plan = graphLayout(order, info, new Set(['shard-0', 'shard-2']));
    const ids = plan.nodes.map(n => n.id).sort();
    expect(ids).toContain(groupNodeId('shard-0'));
    expect(ids).toContain('shard-1-task-3');
    expect(ids).not.toContain('shard-0-task-0');
    const group = plan.nodes.find(n => n.id === groupNodeId('shard-0'))!;
    expect(group).toMatchObject({
      collapsed: true,
      group: 'shard-0',
      lines: ['shard-0 (4 tasks)']
    });
    expect(group.members).toHaveLength(4);
    expect(plan.edges.filter(e => e.to === groupNodeId('shard-0'))).toHaveLength(1);
    expect(plan.groups.map(g => g.name)).toEqual(['shard-1']); // 'start' has one task
  });

  it('keeps siblings in spec order, in a fan-out and inside a box', () => {
    const { info, order } = wide(12, 4);
    const plan = graphLayout(order, info, new Set(['shard-0', 'shard-1', 'shard-3']));
    const y = (id: string) => plan.nodes.find(n => n.id === id)!.y;
    const folded = ['shard-0', 'shard-1', 'shard-3'].map(groupNodeId);
    expect(folded.map(y)).toEqual([...folded.map(y)].sort((a, b) => a - b));
    const inBox = Array.from({ length: 4 }, (_, t) => `shard-2-task-${t}`);
    expect(inBox.map(y)).toEqual([...inBox.map(y)].sort((a, b) => a - b));
    expect(new Set(inBox.map(y)).size).toBe(4);
  });

  it('collapses groups only above the threshold, and not the ones expanded', () => {
    const small = wide(2, 3);
    expect(collapsedGroups(small.order, small.info, new Set())).toEqual(new Set());
    const big = wide(40, 50);
    expect(big.order.length).toBeGreaterThan(COLLAPSE_ABOVE);
    const collapsed = collapsedGroups(big.order, big.info, new Set(['shard-7']));
    expect(collapsed.size).toBe(39); // 'start' has one task: nothing to collapse
    expect(collapsed.has('shard-7')).toBe(false);
  });

  it('lays out 2,001 tasks in 40 collapsed groups fast, one expanded', () => {
    const { info, order } = wide(40, 50);
    const t0 = performance.now();
    const plan = graphLayout(order, info, collapsedGroups(order, info, new Set(['shard-3'])));
    const ms = performance.now() - t0;
    console.log(
      `graphLayout: 2,001 tasks, 39 groups collapsed, one of 50 open: ${ms.toFixed(0)} ms`
    );
    expect(plan.nodes).toHaveLength(1 + 39 + 50);
    expect(ms).toBeLessThan(1000);
  });
});

describe('graphLayout without groups to collapse', () => {
  it('puts more than DAGRE_MAX_NODES nodes in columns by level, edges left to right', () => {
    // pairs: no two tasks have the same neighbours, so nothing is bundled
    const tasks = Array.from({ length: DAGRE_MAX_NODES }, (_, i) => [
      { name: `src-${i}`, inputs: [] },
      { name: `leaf-${i}`, inputs: [{ task: `src-${i}` }] }
    ]).flat();
    const info = parseSpec(JSON.stringify({ tasks, groups: null }));
    const t0 = performance.now();
    const plan = graphLayout(Object.keys(info.tasks), info);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(plan.bundles).toEqual([]);
    const at = Object.fromEntries(plan.nodes.map(n => [n.id, n]));
    expect(new Set(plan.nodes.filter(n => n.id.startsWith('leaf-')).map(n => n.x)).size).toBe(1);
    expect(at['leaf-0'].x).toBeGreaterThan(at['src-0'].x + at['src-0'].width);
    expect(plan.edges).toHaveLength(DAGRE_MAX_NODES);
    expect(at[`leaf-${DAGRE_MAX_NODES - 1}`].y + GRAPH_NODE_H).toBeLessThanOrEqual(plan.height);
  });
});

/** `root` → `n` tasks (`leaf-i`) → `sink`; without `root` and `sink`, `n` independent tasks. */
function fan(n: number, ends = true) {
  const leaves = Array.from({ length: n }, (_, i) => ({
    name: `leaf-${i}`,
    inputs: ends ? [{ task: 'root' }] : []
  }));
  const tasks = ends
    ? [
        { name: 'root', inputs: [] },
        ...leaves,
        { name: 'sink', inputs: leaves.map(l => ({ task: l.name })) }
      ]
    : leaves;
  const info = parseSpec(JSON.stringify({ tasks, groups: null }));
  return graphLayout(Object.keys(info.tasks), info);
}

const overlaps = (a: Rect, b: Rect) =>
  a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

describe('a wide fan-out', () => {
  it(`stays a column up to ${BUNDLE_ABOVE} siblings`, () => {
    const plan = fan(BUNDLE_ABOVE);
    expect(plan.bundles).toEqual([]);
    const leaves = plan.nodes.filter(n => n.id.startsWith('leaf-'));
    expect(new Set(leaves.map(n => n.x)).size).toBe(1);
    expect(plan.edges).toHaveLength(2 * BUNDLE_ABOVE);
  });

  it('is a grid in one frame, with one edge in and one edge out', () => {
    const plan = fan(200);
    expect(plan.bundles).toHaveLength(1);
    const [bundle] = plan.bundles;
    expect(bundle.members).toEqual(Array.from({ length: 200 }, (_, i) => `leaf-${i}`));
    const at = Object.fromEntries(plan.nodes.map(n => [n.id, n]));
    const leaves = bundle.members.map(m => at[m]);
    // wider than tall, in spec order row by row, every task inside the frame
    const columns = new Set(leaves.map(n => n.x)).size;
    const rows = new Set(leaves.map(n => n.y)).size;
    expect(columns).toBe(bundle.columns);
    expect(columns * GRAPH_NODE_W).toBeGreaterThan(rows * GRAPH_NODE_H);
    expect(leaves[1].x).toBeGreaterThan(leaves[0].x);
    expect(leaves[1].y).toBe(leaves[0].y);
    expect(leaves[bundle.columns].y).toBeGreaterThan(leaves[0].y);
    for (const n of leaves) {
      expect(inside({ x: n.x, y: n.y }, bundle)).toBe(true);
      expect(inside({ x: n.x + n.width, y: n.y + n.height }, bundle)).toBe(true);
    }
    for (let i = 0; i < plan.nodes.length; i++) {
      for (let j = i + 1; j < plan.nodes.length; j++) {
        expect(overlaps(plan.nodes[i], plan.nodes[j])).toBe(false);
      }
    }
    // the root, the frame and the sink left to right; the edges end on the frame's border
    expect(bundle.x).toBeGreaterThan(at.root.x + at.root.width);
    expect(at.sink.x).toBeGreaterThan(bundle.x + bundle.width);
    expect(plan.edges.map(e => [e.from, e.to])).toEqual([
      ['root', bundle.id],
      [bundle.id, 'sink']
    ]);
    const [into, out] = plan.edges;
    expect(onBorder(into.points[into.points.length - 1], bundle)).toBe(true);
    expect(onBorder(out.points[0], bundle)).toBe(true);
    expect(plan.height).toBeLessThan(bundle.height + 100);
    expect(plan.width).toBeGreaterThanOrEqual(bundle.x + bundle.width);
  });

  it('of 2,000 independent tasks is laid out at once, about as wide as tall', () => {
    const t0 = performance.now();
    const plan = fan(2000, false);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(plan.bundles).toHaveLength(1);
    expect(plan.nodes).toHaveLength(2000);
    expect(plan.edges).toEqual([]);
    expect(plan.width / plan.height).toBeGreaterThan(1);
    expect(plan.width / plan.height).toBeLessThan(3);
  });

  it('is one block in the column layout too, its column as wide as the grid', () => {
    const pairs = Array.from({ length: DAGRE_MAX_NODES }, (_, i) => [
      { name: `src-${i}`, inputs: [] },
      { name: `dst-${i}`, inputs: [{ task: `src-${i}` }] }
    ]).flat();
    const fanned = Array.from({ length: 40 }, (_, i) => ({
      name: `leaf-${i}`,
      inputs: [{ task: 'src-0' }]
    }));
    const info = parseSpec(JSON.stringify({ tasks: [...pairs, ...fanned], groups: null }));
    const plan = graphLayout(Object.keys(info.tasks), info);
    const [bundle] = plan.bundles;
    expect(bundle.members).toHaveLength(41); // dst-0 reads src-0 alone too
    // the columns' layout: the other dst-* in one column with the block
    const dst = plan.nodes.filter(n => n.id.startsWith('dst-') && n.id !== 'dst-0');
    expect(new Set([...dst.map(n => n.x), bundle.x])).toEqual(new Set([bundle.x]));
    expect(plan.width).toBeGreaterThanOrEqual(bundle.x + bundle.width);
    expect(plan.height).toBeGreaterThanOrEqual(bundle.y + bundle.height);
    const inBundle = new Set(bundle.members);
    for (const n of plan.nodes) {
      expect(overlaps(n, bundle)).toBe(inBundle.has(n.id));
    }
  });

  it("inside a group's box, the frame is in the box", () => {
    const { info, order } = wide(2, 30);
    const plan = graphLayout(order, info);
    expect(plan.bundles).toHaveLength(2);
    for (const b of plan.bundles) {
      const group = info.tasks[b.members[0]].group!;
      const box = plan.groups.find(g => g.name === group)!;
      expect(b.members.every(m => info.tasks[m].group === group)).toBe(true);
      expect(inside({ x: b.x, y: b.y }, box)).toBe(true);
      expect(inside({ x: b.x + b.width, y: b.y + b.height }, box)).toBe(true);
    }
  });
});

import { describe, expect, it } from 'vitest';

import {
  collapsedGroups,
  COLLAPSE_ABOVE,
  DAGRE_MAX_NODES,
  GRAPH_NODE_H,
  graphLayout,
  groupNodeId,
  labelLines
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
  it('puts more than DAGRE_MAX_NODES tasks in columns by level, edges left to right', () => {
    const tasks = [
      { name: 'root', inputs: [] },
      ...Array.from({ length: DAGRE_MAX_NODES }, (_, i) => ({
        name: `leaf-${i}`,
        inputs: [{ task: 'root' }]
      }))
    ];
    const info = parseSpec(JSON.stringify({ tasks, groups: null }));
    const t0 = performance.now();
    const plan = graphLayout(Object.keys(info.tasks), info);
    expect(performance.now() - t0).toBeLessThan(500);
    const at = Object.fromEntries(plan.nodes.map(n => [n.id, n]));
    expect(new Set(plan.nodes.filter(n => n.id !== 'root').map(n => n.x)).size).toBe(1);
    expect(at['leaf-0'].x).toBeGreaterThan(at.root.x + at.root.width);
    expect(plan.edges).toHaveLength(DAGRE_MAX_NODES);
    expect(at[`leaf-${DAGRE_MAX_NODES - 1}`].y + GRAPH_NODE_H).toBeLessThanOrEqual(plan.height);
  });
});

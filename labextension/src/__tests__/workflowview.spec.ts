import { describe, expect, it } from 'vitest';

import type { TaskAttempt, WorkflowDetail } from '../api';
import { nodeText } from '../graph';
import { groupNodeId, graphLayout } from '../graphlayout';
import { WorkflowView } from '../model';
import { parseSpec } from '../specinfo';
import { tableRows, TableQuery } from '../tasktable';
import { timelineBars, timeSpan, timeTicks } from '../timeline';
import { visibleRange } from '../virtual';

const SPEC = JSON.stringify({
  tasks: null,
  resources: { default: { cpu: 2, gpu: 1, memory: 2 ** 30 } },
  groups: [
    { name: 'prep', tasks: [{ name: 'fetch', inputs: [], resource: 'default' }] },
    {
      name: 'shards',
      tasks: [
        { name: 'train-2', inputs: [{ task: 'fetch' }] },
        { name: 'train-10', inputs: [{ task: 'fetch' }] }
      ]
    },
    { name: 'end', tasks: [{ name: 'report', inputs: [{ task: 'train-2' }] }] }
  ]
});

function attempt(name: string, retry: number, extra: Partial<TaskAttempt>): TaskAttempt {
  return {
    workflow_id: 'wf-1',
    name,
    retry_id: retry,
    group_name: '',
    status: 'WAITING',
    exit_code: null,
    backend: 'local',
    node: null,
    alloc: null,
    workdir: null,
    output_path: null,
    log_path: null,
    cancel_reason: null,
    hold: null,
    hold_until: null,
    reused_from: null,
    cache_key: null,
    waiting_for_user: false,
    held_for_debugging: false,
    create_time: 100,
    start_time: null,
    end_time: null,
    message: null,
    pending_reason: null,
    ...extra
  };
}

/** fetch done; train-2 preempted once, then failed (exit 3); train-10 runs; report skipped. */
function view(): WorkflowView {
  const detail: WorkflowDetail = {
    id: 'wf-1',
    last_event_id: 0,
    name: 'wf',
    seq: 1,
    user: 'me',
    pool: 'local',
    status: 'RUNNING',
    priority: 'NORMAL',
    labels: {},
    file: null,
    set_values: {},
    submit_time: 100,
    start_time: 101,
    end_time: null,
    message: null,
    parent_workflow_id: null,
    groups: [{ workflow_id: 'wf-1', name: 'shards', status: 'RUNNING' } as never],
    tasks: [
      attempt('fetch', 0, {
        group_name: 'prep',
        status: 'COMPLETED',
        exit_code: 0,
        start_time: 101,
        end_time: 111,
        node: 'h1',
        alloc: { cpu: 2, memory: 2 ** 30, gpus: [3] }
      }),
      attempt('train-2', 0, {
        group_name: 'shards',
        status: 'FAILED_PREEMPTED',
        create_time: 111,
        start_time: 112,
        end_time: 120
      }),
      attempt('train-2', 1, {
        group_name: 'shards',
        status: 'FAILED',
        exit_code: 3,
        create_time: 120,
        start_time: 125,
        end_time: 130,
        node: 'h2'
      }),
      attempt('train-10', 0, { group_name: 'shards', status: 'RUNNING', start_time: 112 }),
      attempt('report', 0, { group_name: 'end', status: 'FAILED_UPSTREAM', end_time: 130 })
    ]
  };
  return new WorkflowView(detail, parseSpec(SPEC));
}

const query = (q: Partial<TableQuery> = {}): TableQuery => ({
  sort: 'name',
  descending: false,
  text: '',
  kind: '',
  ...q
});

describe('visibleRange', () => {
  it('draws the rows in view and a few around them, never past the ends', () => {
    expect(visibleRange(0, 260, 26, 2000, 5)).toEqual([0, 15]);
    expect(visibleRange(26 * 1000, 260, 26, 2000, 5)).toEqual([995, 1015]);
    expect(visibleRange(26 * 1995, 260, 26, 2000, 5)).toEqual([1990, 2000]);
    expect(visibleRange(0, 0, 26, 0)).toEqual([0, 0]);
  });
});

describe('tableRows', () => {
  it('has a row per task, from its latest attempt', () => {
    const rows = tableRows(view(), query(), 140);
    expect(rows.map(r => r.name)).toEqual(['fetch', 'report', 'train-2', 'train-10']);
    expect(rows[2]).toMatchObject({
      group: 'shards',
      status: 'FAILED',
      kind: 'failed',
      attempts: 2,
      exit: 3,
      start: 125,
      duration: 5,
      node: 'h2'
    });
    expect(rows[3].duration).toBe(28); // running: until now
    expect(rows[1].kind).toBe('upstream');
  });

  it('says what each task asks for and was given, and where', () => {
    const [fetch, report] = tableRows(view(), query(), 140);
    expect(fetch).toMatchObject({
      cpu: 2,
      gpu: 1,
      memory: 2 ** 30,
      allocated: 'cpu 2, memory 1.0Gi, gpus 3',
      node: 'h1',
      pool: 'local'
    });
    expect(report).toMatchObject({ cpu: null, gpu: null, memory: null, allocated: '' });
  });

  it('sorts by a column either way, empty values last', () => {
    const names = (q: Partial<TableQuery>) => tableRows(view(), query(q), 140).map(r => r.name);
    expect(names({ sort: 'name', descending: true })).toEqual([
      'train-10',
      'train-2',
      'report',
      'fetch'
    ]);
    expect(names({ sort: 'duration', descending: true })).toEqual([
      'train-10',
      'fetch',
      'train-2',
      'report'
    ]);
    // ties (no node, no exit code) keep spec order
    expect(names({ sort: 'node' })).toEqual(['fetch', 'train-2', 'train-10', 'report']);
    expect(names({ sort: 'exit' })).toEqual(['fetch', 'train-2', 'train-10', 'report']);
  });

  it('filters by words (any case) and by status', () => {
    const names = (q: Partial<TableQuery>) => tableRows(view(), query(q), 140).map(r => r.name);
    expect(names({ text: 'TRAIN' })).toEqual(['train-2', 'train-10']);
    expect(names({ text: 'shards h2' })).toEqual(['train-2']);
    expect(names({ kind: 'upstream' })).toEqual(['report']);
    expect(names({ kind: 'running', text: 'fetch' })).toEqual([]);
  });
});

describe('timeline', () => {
  it('has a bar per attempt, retries apart, in spec order', () => {
    const bars = timelineBars(view());
    expect(bars.map(b => `${b.task}#${b.retry}:${b.status}`)).toEqual([
      'fetch#0:COMPLETED',
      'train-2#0:FAILED_PREEMPTED',
      'train-2#1:FAILED',
      'train-10#0:RUNNING',
      'report#0:FAILED_UPSTREAM'
    ]);
    expect(bars[3]).toMatchObject({ start: 112, end: null }); // it grows until it ends
    expect(bars[4]).toMatchObject({ start: null, end: null }); // never ran
    expect(timeSpan(bars, 150)).toEqual([100, 150]);
    expect(timeSpan([], 150)).toEqual([149, 150]);
  });

  it('puts round ticks across the span', () => {
    expect(timeTicks(100, 150)).toEqual([100, 110, 120, 130, 140, 150]);
    expect(timeTicks(0, 3600, 6)).toEqual([0, 600, 1200, 1800, 2400, 3000, 3600]);
    const many = timeTicks(0, 10 * 86400, 8);
    expect(many.length).toBeLessThanOrEqual(9);
    expect(many[1] - many[0]).toBe(2 * 86400);
  });
});

describe('graph nodes', () => {
  it('say status, duration and exit code; a skipped task says why', () => {
    const v = view();
    const plan = graphLayout(v.order, v.spec);
    const at = Object.fromEntries(plan.nodes.map(n => [n.id, n]));
    expect(nodeText(v, at.fetch, 140)).toBe('COMPLETED · 10.0s · exit 0');
    expect(nodeText(v, at['train-2'], 140)).toBe('FAILED · 5.0s · exit 3');
    expect(nodeText(v, at['train-10'], 140)).toBe('RUNNING · 28.0s');
    expect(nodeText(v, at.report, 140)).toBe('skipped: upstream failed');
  });

  it('count a collapsed group by status', () => {
    const v = view();
    const plan = graphLayout(v.order, v.spec, new Set(['shards']));
    const group = plan.nodes.find(n => n.id === groupNodeId('shards'))!;
    expect(nodeText(v, group, 140)).toBe('0/2 done · 1 running · 1 failed');
  });
});

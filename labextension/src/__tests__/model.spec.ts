import { describe, expect, it } from 'vitest';

import type { OsmoEvent, WorkflowDetail, WorkflowRow } from '../api';
import {
  attemptKey,
  Filter,
  formatDuration,
  heldTasks,
  holdText,
  shownStatus,
  statusKind,
  taskKind,
  WorkflowList,
  WorkflowView
} from '../model';
import { layout } from '../dag';
import { levels, parseSpec } from '../specinfo';

let nextId = 1;
function ev(partial: Partial<OsmoEvent>): OsmoEvent {
  return {
    id: nextId++,
    ts: 100,
    type: 'task.status',
    version: 1,
    workflow_id: 'serial-1',
    group_name: null,
    task: null,
    retry_id: null,
    status: null,
    payload: {},
    ...partial
  };
}

const row = (id: string, extra: Partial<WorkflowRow> = {}): WorkflowRow => ({
  id,
  name: id.split('-')[0],
  seq: Number(id.split('-')[1]),
  user: 'me',
  pool: 'local',
  status: 'RUNNING',
  priority: 'NORMAL',
  file: null,
  set_values: {},
  labels: {},
  submit_time: 1,
  start_time: 2,
  end_time: null,
  message: null,
  parent_workflow_id: null,
  ...extra
});

describe('statuses', () => {
  it('maps every status to a colour family', () => {
    expect(statusKind('COMPLETED')).toBe('completed');
    expect(statusKind('INITIALIZING')).toBe('running');
    expect(statusKind('SCHEDULING')).toBe('pending');
    expect(statusKind('FAILED_CANCELED')).toBe('canceled');
    expect(statusKind('FAILED_EXEC_TIMEOUT')).toBe('failed');
    expect(statusKind('FAILED_UPSTREAM')).toBe('upstream');
    expect(statusKind('SOMETHING_NEW')).toBe('unknown');
  });

  it('formats durations', () => {
    expect(formatDuration(null)).toBe('');
    expect(formatDuration(2.345)).toBe('2.3s');
    expect(formatDuration(125)).toBe('2m05s');
    expect(formatDuration(3 * 3600 + 7 * 60)).toBe('3h7m');
  });
});

describe('WorkflowList', () => {
  it('adds a submitted workflow and follows its status, progress and duration from events', () => {
    const list = new WorkflowList();
    let changes = 0;
    list.onChange(() => changes++);
    list.apply(
      ev({
        type: 'workflow.submitted',
        status: 'PENDING',
        ts: 10,
        payload: { name: 'serial', pool: 'local', user: 'me', tasks: 3 }
      })
    );
    expect(list.progress('serial-1')).toEqual({ done: 0, total: 3 });
    list.apply(ev({ type: 'workflow.status', status: 'RUNNING', ts: 11 }));
    list.apply(ev({ task: 'task1', retry_id: 0, status: 'RUNNING' }));
    list.apply(ev({ task: 'task1', retry_id: 0, status: 'COMPLETED' }));
    list.apply(ev({ task: 'task2', retry_id: 1, status: 'COMPLETED' }));
    expect(list.apply(ev({ task: 'task2', retry_id: 0, status: 'FAILED' }))).toBe(false); // stale
    list.apply(ev({ type: 'workflow.status', status: 'COMPLETED', ts: 15 }));
    const r = list.rows.get('serial-1')!;
    expect(r).toMatchObject({ name: 'serial', status: 'COMPLETED', start_time: 11, end_time: 15 });
    expect(list.progress('serial-1')).toEqual({ done: 2, total: 3 });
    expect(changes).toBe(6);
  });

  it('counts held tasks from task.hold events until their task moves on', () => {
    const list = new WorkflowList();
    list.load([row('serial-1'), row('other-2')]);
    const hold = (task: string, kind: string, retry = 0) =>
      list.apply(
        ev({ type: 'task.hold', task, retry_id: retry, status: 'RUNNING', payload: { hold: kind } })
      );
    list.apply(ev({ task: 'a', retry_id: 0, status: 'RUNNING' }));
    list.apply(ev({ task: 'b', retry_id: 0, status: 'RUNNING' }));
    expect(list.held('serial-1')).toBe(0);
    hold('a', 'debug');
    hold('b', 'interactive');
    expect(list.held('serial-1')).toBe(2);
    const filter = { status: 'held', pool: '', search: '' };
    expect(list.filtered(filter).map(r => r.id)).toEqual(['serial-1']);
    hold('b', 'done'); // Done was pressed: no longer waiting
    expect(list.held('serial-1')).toBe(1);
    expect(hold('a', 'debug', -1)).toBe(false); // an older attempt's news
    list.apply(ev({ task: 'a', retry_id: 1, status: 'SCHEDULING' })); // Retry: a new attempt
    expect(list.held('serial-1')).toBe(0);
    hold('a', 'debug', 1);
    list.apply(ev({ task: 'a', retry_id: 1, status: 'FAILED_CANCELED' }));
    expect(list.held('serial-1')).toBe(0);
    expect(list.filtered(filter)).toEqual([]);
  });

  it('knows whether it was loaded (an empty list before that is not "no workflows")', () => {
    const list = new WorkflowList();
    expect(list.loaded).toBe(false);
    list.load([]);
    expect(list.loaded).toBe(true);
  });

  it('ignores events of workflows it has not loaded, except their submission', () => {
    const list = new WorkflowList();
    expect(
      list.apply(ev({ workflow_id: 'other-1', type: 'workflow.status', status: 'RUNNING' }))
    ).toBe(false);
    expect(list.rows.size).toBe(0);
  });

  it('keeps task counts across a REST reload', () => {
    const list = new WorkflowList();
    list.apply(ev({ type: 'workflow.submitted', payload: { name: 'serial', tasks: 3 } }));
    list.load([row('serial-1', { status: 'COMPLETED' })]);
    expect(list.rows.get('serial-1')!.status).toBe('COMPLETED');
    expect(list.progress('serial-1').total).toBe(3);
  });

  it('filters by status (exact or family), pool and search, newest first', () => {
    const list = new WorkflowList();
    list.load([
      row('train-1', { submit_time: 1, status: 'FAILED_EXEC_TIMEOUT', pool: 'gpu' }),
      row('train-2', { submit_time: 3, status: 'RUNNING', pool: 'gpu' }),
      row('eval-1', { submit_time: 2, status: 'COMPLETED' })
    ]);
    const ids = (f: Partial<{ status: string; pool: string; search: string }>) =>
      list.filtered({ status: '', pool: '', search: '', ...f }).map(r => r.id);
    expect(ids({})).toEqual(['train-2', 'eval-1', 'train-1']);
    expect(ids({ status: 'failed' })).toEqual(['train-1']);
    expect(ids({ status: 'COMPLETED' })).toEqual(['eval-1']);
    expect(ids({ pool: 'gpu' })).toEqual(['train-2', 'train-1']);
    expect(ids({ search: ' TRAIN ' })).toEqual(['train-2', 'train-1']);
    expect(list.pools()).toEqual(['gpu', 'local']);
  });

  it('filters by user and label, and sorts by name, status, age or duration', () => {
    const list = new WorkflowList();
    list.load([
      row('train-10', { submit_time: 1, user: 'ana', labels: { team: 'vision' }, end_time: 9 }),
      row('train-9', { submit_time: 3, user: 'bo', status: 'COMPLETED', end_time: 3 }),
      row('eval-1', { submit_time: 2, user: 'ana', labels: { team: 'speech' }, start_time: null })
    ]);
    const ids = (f: Partial<Filter>) =>
      list.filtered({ status: '', pool: '', search: '', ...f }, 100).map(r => r.id);
    expect(list.users()).toEqual(['ana', 'bo']);
    expect(ids({ user: 'ana' })).toEqual(['eval-1', 'train-10']);
    expect(ids({ search: 'team=vision' })).toEqual(['train-10']);
    expect(ids({ search: 'speech ana' })).toEqual(['eval-1']); // every word
    expect(ids({ search: 'bo' })).toEqual(['train-9']); // the user
    expect(ids({ sort: 'oldest' })).toEqual(['train-10', 'eval-1', 'train-9']);
    expect(ids({ sort: 'name' })).toEqual(['eval-1', 'train-9', 'train-10']); // numeric
    expect(ids({ sort: 'status' })).toEqual(['train-9', 'eval-1', 'train-10']);
    expect(ids({ sort: 'duration' })).toEqual(['train-10', 'train-9', 'eval-1']);
  });
});

const SERIAL = JSON.stringify({
  resources: { default: { cpu: 1, memory: 268435456 } },
  tasks: [
    { name: 'task1', inputs: [], outputs: [], resource: 'default' },
    {
      name: 'task2',
      inputs: [{ task: 'task1' }, { url: 's3://b/x' }],
      outputs: [],
      resource: 'default'
    },
    {
      name: 'task3',
      inputs: [{ task: 'task2' }, { task: 'task1' }],
      outputs: [{ url: 's3://b/y' }]
    }
  ],
  groups: null
});

const GROUPS = JSON.stringify({
  tasks: null,
  groups: [
    {
      name: 'pair',
      tasks: [
        { name: 'server', inputs: [] },
        { name: 'client', inputs: [] }
      ]
    },
    { name: 'after', tasks: [{ name: 'report', inputs: [{ task: 'server' }] }] }
  ]
});

describe('spec and layout', () => {
  it('reads upstream tasks from inputs and levels them by the longest path', () => {
    const spec = parseSpec(SERIAL);
    expect(spec.upstream).toEqual({ task1: [], task2: ['task1'], task3: ['task2', 'task1'] });
    expect(levels(spec.upstream)).toEqual({ task1: 0, task2: 1, task3: 2 });
    expect(spec.tasks.task3.outputs).toEqual([{ url: 's3://b/y' }]);
  });

  it('places a column per level and boxes each group around its own tasks only', () => {
    const spec = parseSpec(GROUPS);
    expect(spec.tasks.client.group).toBe('pair');
    const plan = layout(['server', 'client', 'report'], spec);
    const at = Object.fromEntries(plan.nodes.map(n => [n.name, n]));
    expect(at.server.x).toBe(at.client.x);
    expect(at.report.x).toBeGreaterThan(at.server.x);
    expect(plan.edges).toEqual([{ from: 'server', to: 'report' }]);
    const pair = plan.groups.find(g => g.name === 'pair')!;
    const inside = (n: { x: number; y: number }) =>
      n.x >= pair.x && n.y >= pair.y && n.x < pair.x + pair.width && n.y < pair.y + pair.height;
    expect(inside(at.server) && inside(at.client)).toBe(true);
    expect(inside(at.report)).toBe(false);
    for (const n of plan.nodes) {
      expect(n.x + 150).toBeLessThanOrEqual(plan.width);
      expect(n.y + 44).toBeLessThanOrEqual(plan.height);
    }
  });
});

describe('WorkflowView', () => {
  const detail = (): WorkflowDetail => ({
    ...row('serial-1'),
    last_event_id: 0,
    groups: [],
    tasks: ['task1', 'task2', 'task3'].map((name, i) => ({
      workflow_id: 'serial-1',
      name,
      retry_id: 0,
      group_name: name,
      status: i === 0 ? 'RUNNING' : 'WAITING',
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
      create_time: 1,
      start_time: i === 0 ? 5 : null,
      end_time: null,
      message: null
    }))
  });

  it('moves tasks by their events, starts a fresh attempt on a retry and keeps a log tail', () => {
    const view = new WorkflowView(detail(), parseSpec(SERIAL), 2);
    expect(view.order).toEqual(['task1', 'task2', 'task3']);
    view.apply(
      ev({ task: 'task1', retry_id: 0, status: 'FAILED', ts: 9, payload: { exit_code: 3 } })
    );
    expect(view.tasks.get('task1')).toMatchObject({ status: 'FAILED', exit_code: 3, end_time: 9 });
    view.apply(ev({ task: 'task1', retry_id: 1, status: 'RUNNING', ts: 10 }));
    expect(view.tasks.get('task1')).toMatchObject({
      retry_id: 1,
      status: 'RUNNING',
      exit_code: null,
      start_time: 10,
      end_time: null
    });
    expect(view.apply(ev({ task: 'task1', retry_id: 0, status: 'FAILED' }))).toBe(false);
    // every attempt is kept apart, the failed one as it ended
    expect(view.attempts.get(attemptKey({ name: 'task1', retry_id: 0 }))).toMatchObject({
      status: 'FAILED',
      exit_code: 3
    });
    expect(view.attempts.get('task1#1')).toBe(view.tasks.get('task1'));
    expect(view.attempts.size).toBe(4);
    for (const text of ['a', 'b', 'c']) {
      view.apply(
        ev({ id: null, type: 'task.log', task: 'task1', retry_id: 1, payload: { n: 1, text } })
      );
    }
    expect(view.tail.get('task1')).toEqual(['b', 'c']);
    expect(
      view.apply(ev({ workflow_id: 'other-1', type: 'workflow.status', status: 'COMPLETED' }))
    ).toBe(false);
    view.apply(
      ev({
        type: 'workflow.status',
        status: 'FAILED_CANCELED',
        payload: { message: 'canceled by me' }
      })
    );
    expect(view.status).toBe('FAILED_CANCELED');
    expect(view.message).toBe('canceled by me');
  });

  it('keeps the last usage sample of a running task and drops it when the task ends', () => {
    const view = new WorkflowView(detail(), parseSpec(SERIAL));
    const usage = { cpu: 0.9, cpu_seconds: 4, memory: 2 ** 27, memory_peak: 2 ** 28, procs: 2 };
    const sample = (retry: number) =>
      ev({ id: null, type: 'task.usage', task: 'task1', retry_id: retry, ts: 7, payload: usage });
    view.apply(ev({ task: 'task1', retry_id: 0, status: 'SCHEDULING', ts: 4 }));
    expect(view.apply(sample(0))).toBe(false); // not running yet
    view.apply(ev({ task: 'task1', retry_id: 0, status: 'RUNNING', ts: 5 }));
    expect(view.apply(sample(1))).toBe(false); // another attempt's
    expect(view.apply(sample(0))).toBe(true);
    expect(view.usage.get('task1')).toEqual({ ...usage, ts: 7 });
    view.apply(ev({ task: 'task1', retry_id: 0, status: 'COMPLETED', ts: 9 }));
    expect(view.usage.has('task1')).toBe(false);
  });

  it('keeps why a waiting task waits from task.pending events, until it is placed', () => {
    const view = new WorkflowView(detail(), parseSpec(SERIAL));
    view.apply(ev({ task: 'task1', retry_id: 0, status: 'SCHEDULING', ts: 3 }));
    const pending = (reason: string, retry_id = 0) =>
      ev({ type: 'task.pending', task: 'task1', retry_id, payload: { reason } });
    expect(view.apply(pending('user limit: 4 running tasks', 1))).toBe(false); // not this attempt
    expect(view.apply(pending('pool gpu at its GPU quota (8/8 used by NORMAL/HIGH)'))).toBe(true);
    expect(view.tasks.get('task1')!.pending_reason).toBe(
      'pool gpu at its GPU quota (8/8 used by NORMAL/HIGH)'
    );
    view.apply(ev({ task: 'task1', retry_id: 0, status: 'INITIALIZING', ts: 4 }));
    expect(view.tasks.get('task1')!.pending_reason).toBeNull();
  });

  it('shows a hold from task.hold events and clears it when the task moves on', () => {
    const view = new WorkflowView(detail(), parseSpec(SERIAL));
    const at = (s: number) => `t${s}`;
    expect(holdText(view.tasks.get('task1')!, at)).toBeNull();
    // another attempt's hold is not this one's
    expect(
      view.apply(ev({ type: 'task.hold', task: 'task1', retry_id: 1, payload: { hold: 'debug' } }))
    ).toBe(false);
    view.apply(
      ev({
        type: 'task.hold',
        task: 'task1',
        retry_id: 0,
        status: 'RUNNING',
        payload: { hold: 'interactive', until: 500, message: 'waiting for the user' }
      })
    );
    const t = view.tasks.get('task1')!;
    expect(t).toMatchObject({ hold: 'interactive', hold_until: 500, waiting_for_user: true });
    expect(holdText(t, at)).toBe('waiting for you until t500');
    expect([shownStatus(t), taskKind(t)]).toEqual(['WAITING FOR YOU', 'held']);
    expect(heldTasks(view).map(h => h.name)).toEqual(['task1']);
    view.apply(ev({ type: 'task.hold', task: 'task1', retry_id: 0, payload: { hold: 'done' } }));
    expect(holdText(view.tasks.get('task1')!, at)).toBeNull();
    view.apply(
      ev({
        type: 'task.hold',
        task: 'task1',
        retry_id: 0,
        payload: { hold: 'debug', exit_code: 2, until: null }
      })
    );
    expect(view.tasks.get('task1')).toMatchObject({ exit_code: 2, held_for_debugging: true });
    expect(holdText(view.tasks.get('task1')!, at)).toBe('held for debugging until t500');
    expect(shownStatus(view.tasks.get('task1')!)).toBe('HELD (DEBUG)');
    view.apply(ev({ task: 'task1', retry_id: 0, status: 'FAILED', payload: { exit_code: 2 } }));
    expect(view.tasks.get('task1')).toMatchObject({ held_for_debugging: false });
    expect(holdText(view.tasks.get('task1')!, at)).toBeNull();
    expect([shownStatus(view.tasks.get('task1')!), taskKind(view.tasks.get('task1')!)]).toEqual([
      'FAILED',
      'failed'
    ]);
    expect(heldTasks(view)).toEqual([]);
  });

  it('reads the ports a task declares', () => {
    const spec = parseSpec(
      JSON.stringify({ tasks: [{ name: 'web', inputs: [], outputs: [], ports: [8888, 'x'] }] })
    );
    expect(spec.tasks.web.ports).toEqual([8888]);
  });
});

import { describe, expect, it } from 'vitest';

import { interactiveActions, proxyUrl, TaskActions, TaskContext } from '../actions';
import type { TaskView } from '../model';
import { parseSpec } from '../specinfo';

const attempt = (extra: Partial<TaskView> = {}): TaskView => ({
  workflow_id: 'web-1',
  name: 'srv',
  retry_id: 0,
  group_name: 'srv',
  status: 'RUNNING',
  exit_code: null,
  node: null,
  alloc: null,
  create_time: 1,
  start_time: 2,
  end_time: null,
  message: null,
  hold: null,
  hold_until: null,
  waiting_for_user: false,
  held_for_debugging: false,
  ...extra
});

const spec = parseSpec(
  JSON.stringify({ tasks: [{ name: 'srv', inputs: [], outputs: [], ports: [8000, 9000] }] })
).tasks.srv;

function setup() {
  const calls: string[] = [];
  const actions = new TaskActions();
  for (const a of interactiveActions({
    apiUrl: 'http://h/base/osmo/api/v1/',
    openTerminal: async (wf, t) => void calls.push(`terminal ${wf}/${t}`),
    openNotebook: async (wf, t) => void calls.push(`notebook ${wf}/${t}`),
    openUrl: url => void calls.push(`open ${url}`),
    done: async (wf, t) => calls.push(`done ${wf}/${t}`),
    retry: async (wf, t) => calls.push(`retry ${wf}/${t}`)
  })) {
    actions.add(a);
  }
  return { actions, calls };
}

const ids = (actions: TaskActions, ctx: TaskContext) => actions.for(ctx).map(a => a.id);

describe('interactive task actions', () => {
  it('offers terminal, notebook and one button per port only while the task runs', async () => {
    const { actions, calls } = setup();
    const ctx = { workflowId: 'web-1', task: attempt(), spec };
    const shown = actions.for(ctx);
    expect(shown.map(a => a.label)).toEqual([
      'Open terminal',
      'New notebook',
      'Open port 8000',
      'Open port 9000'
    ]);
    for (const a of shown) {
      await a.execute(ctx);
    }
    expect(calls).toEqual([
      'terminal web-1/srv',
      'notebook web-1/srv',
      'open http://h/base/osmo/api/v1/workflows/web-1/tasks/srv/proxy/8000/',
      'open http://h/base/osmo/api/v1/workflows/web-1/tasks/srv/proxy/9000/'
    ]);
    expect(ids(actions, { workflowId: 'web-1', task: attempt() })).toEqual([
      'terminal',
      'notebook'
    ]);
    for (const status of ['WAITING', 'COMPLETED', 'FAILED']) {
      expect(ids(actions, { workflowId: 'web-1', task: attempt({ status }), spec })).toEqual([]);
    }
  });

  it('offers Done to a task waiting for its user and Retry to one held for debugging', async () => {
    const { actions, calls } = setup();
    const waiting = { workflowId: 'w-1', task: attempt({ waiting_for_user: true }) };
    const debug = { workflowId: 'w-1', task: attempt({ held_for_debugging: true, exit_code: 1 }) };
    expect(ids(actions, waiting)).toEqual(['terminal', 'notebook', 'done']);
    expect(ids(actions, debug)).toEqual(['terminal', 'notebook', 'retry']);
    await actions.for(waiting)[2].execute(waiting);
    await actions.for(debug)[2].execute(debug);
    expect(calls).toEqual(['done w-1/srv', 'retry w-1/srv']);
  });

  it('encodes ids in proxy URLs', () => {
    expect(proxyUrl('/osmo/api/v1/', 'a b', 't/1', 80)).toBe(
      '/osmo/api/v1/workflows/a%20b/tasks/t%2F1/proxy/80/'
    );
  });
});

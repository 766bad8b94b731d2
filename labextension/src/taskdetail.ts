/**
 * The selected task's details: status, hold, why it waits, attempts, exit code, node, usage while it runs,
 * timings, resources (requested and allocated), inputs, outputs, the last log lines, and its
 * buttons (Open logs, and the task actions of actions.ts).
 */
import { TaskAction, TaskActions, TaskContext } from './actions';
import { TaskInfo } from './api';
import { h, on } from './dom';
import {
  duration,
  formatDuration,
  holdText,
  shownStatus,
  statusKind,
  taskKind,
  WorkflowView
} from './model';
import { askedResource } from './specinfo';

export interface TaskDetailEnv {
  actions: TaskActions;
  openLogs(workflowId: string, task: string): void;
  notifyError(title: string, error: unknown): void;
}

/** Task `name` of `view`; `info`: what was read of it over REST (its attempts), if it is that task. */
export function renderTask(
  view: WorkflowView,
  name: string,
  info: TaskInfo | null,
  env: TaskDetailEnv
): HTMLElement {
  const t = view.tasks.get(name);
  const spec = view.spec.tasks[name];
  const now = Date.now() / 1000;
  const box = h('div', { class: 'osmo-task', 'data-task-details': name });
  if (!t) {
    return box;
  }
  const read = info?.name === name ? info : null;
  const attempts = read ? read.attempts : [t];
  const dl = h('dl', { class: 'osmo-task-fields' });
  const field = (k: string, v: string | Node) => dl.append(h('dt', {}, k), h('dd', {}, v));
  field('status', h('span', { class: `osmo-badge osmo-status-${taskKind(t)}` }, shownStatus(t)));
  const held = holdText(t);
  if (held) {
    field('held', h('span', { class: 'osmo-hold' }, held));
  }
  if (t.status === 'SCHEDULING' && t.pending_reason) {
    field('waiting', h('span', { class: 'osmo-pending-reason' }, t.pending_reason));
  }
  field('attempt', `${t.retry_id + 1} of ${attempts.length}`);
  field('exit code', t.exit_code === null || t.exit_code === undefined ? '—' : String(t.exit_code));
  field('node', t.node ?? '—');
  const usage = view.usage.get(name) ?? read?.usage;
  if (usage && t.status === 'RUNNING' && !held) {
    field(
      'using',
      h(
        'span',
        { class: 'osmo-usage', 'data-cpu': usage.cpu, 'data-memory': usage.memory },
        `CPU ${usage.cpu.toFixed(2)} · memory ${bytes(usage.memory)} ` +
          `(peak ${bytes(usage.memory_peak)}) · ${usage.procs} process${usage.procs === 1 ? '' : 'es'}`
      )
    );
  }
  field('started', t.start_time ? new Date(t.start_time * 1000).toLocaleTimeString() : '—');
  field('duration', formatDuration(duration(t, now)) || '—');
  if (t.message) {
    field('message', t.message);
  }
  field('resources', describe(askedResource(view.spec, name)) || '—');
  if (t.alloc) {
    field('allocated', describe(t.alloc));
  }
  field('inputs', spec?.inputs.length ? spec.inputs.map(describe).join('; ') : '—');
  field('outputs', spec?.outputs.length ? spec.outputs.map(describe).join('; ') : '—');
  const table = h(
    'table',
    { class: 'osmo-attempts', 'aria-label': `attempts of ${name}` },
    h(
      'tr',
      {},
      ...['#', 'status', 'exit', 'node', 'duration'].map(c => h('th', { scope: 'col' }, c))
    )
  );
  for (const a of attempts) {
    table.append(
      h(
        'tr',
        {},
        h('td', {}, String(a.retry_id + 1)),
        h('td', { class: `osmo-status-text-${statusKind(a.status)}` }, a.status),
        h('td', {}, a.exit_code === null || a.exit_code === undefined ? '' : String(a.exit_code)),
        h('td', {}, a.node ?? ''),
        h('td', {}, formatDuration(duration(a, now)))
      )
    );
  }
  const logs = h(
    'button',
    { class: 'jp-Button jp-mod-styled osmo-open-logs', type: 'button', 'data-key': 'logs' },
    'Open logs'
  );
  on(logs, 'click', () => env.openLogs(view.id, name));
  const buttons = h('div', { class: 'osmo-task-actions' }, logs);
  const ctx = { workflowId: view.id, task: t, spec };
  buttons.append(...env.actions.for(ctx).map(action => actionButton(action, ctx, env)));
  box.append(
    h('h4', {}, `Task ${name}`),
    buttons,
    dl,
    table,
    h('div', { class: 'osmo-tail-head' }, 'Last log lines'),
    h(
      'pre',
      { class: 'osmo-tail', 'aria-label': `last log lines of ${name}` },
      (view.tail.get(name) ?? []).join('\n')
    )
  );
  return box;
}

/** A task action's button; `data-server`: it needs the server (disabled while it is away). */
export function actionButton(
  action: TaskAction,
  ctx: TaskContext,
  env: Pick<TaskDetailEnv, 'notifyError'>,
  key = `action:${action.id}`
): HTMLButtonElement {
  const b = h(
    'button',
    {
      class: 'jp-Button jp-mod-styled',
      type: 'button',
      'data-action': action.id,
      'data-key': key,
      'data-server': true
    },
    action.label
  );
  on(b, 'click', async () => {
    try {
      await action.execute(ctx);
    } catch (e) {
      env.notifyError(`${action.label} failed`, e);
    }
  });
  return b;
}

/** A spec or API object as one readable line: `cpu 1, memory 256Mi`. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value !== 'object') {
    return String(value);
  }
  return Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && !v.length))
    .filter(
      ([, v]) => !(typeof v === 'object' && !Array.isArray(v) && !Object.keys(v as object).length)
    )
    .map(
      ([k, v]) =>
        `${k} ${k === 'memory' && typeof v === 'number' ? bytes(v) : Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v)}`
    )
    .join(', ');
}

export function bytes(n: number): string {
  const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)}${units[i]}`;
}

/**
 * The OSMO side panel: the user's workflows (live), one workflow's DAG and task details, and
 * the pools with their capacity. State lives in model.ts; this module only draws it and turns
 * clicks and keys into API calls.
 */
import { Widget } from '@lumino/widgets';

import { TaskActions } from './actions';
import { ApiError, EventStream, OsmoClient, OsmoEvent, TaskInfo } from './api';
import { renderDag } from './dag';
import { activateOnKeys, h, replaceKeepingFocus } from './dom';
import {
  holdText,
  Filter,
  duration,
  formatDuration,
  isTerminal,
  layout,
  parseSpec,
  statusKind,
  WorkflowList,
  WorkflowView
} from './model';
import { renderPools } from './pools';

export interface PanelEnv {
  client: OsmoClient;
  actions: TaskActions;
  openLogs(workflowId: string, task: string): void;
  /** Ask for a YAML file and submit it; resolves to the new workflow id (null if cancelled). */
  submitFile(): Promise<string | null>;
  notifyError(title: string, error: unknown): void;
}

const LIST_LIMIT = 200;
const TAIL_LINES = 10;
const STATUS_FILTERS = ['', 'running', 'pending', 'waiting', 'completed', 'failed', 'canceled'];

export class OsmoPanel extends Widget {
  readonly list = new WorkflowList();
  private stream: EventStream | null = null;
  private detailStream: EventStream | null = null;
  private view: WorkflowView | null = null;
  private selectedTask: string | null = null;
  private taskInfo: TaskInfo | null = null;
  private filter: Filter = { status: '', pool: '', search: '' };
  private pending = false;
  private dagFit = true;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private poolsTimer: ReturnType<typeof setTimeout> | null = null;

  private readonly listEl = h('ul', {
    class: 'osmo-workflows',
    role: 'listbox',
    'aria-label': 'Workflows'
  });
  private readonly countEl = h('span', { class: 'osmo-count', 'aria-live': 'polite' });
  private readonly connEl = h('span', { class: 'osmo-conn', 'aria-live': 'polite' }, 'connecting');
  private readonly poolSelect = h('select', {
    class: 'osmo-filter-pool jp-mod-styled',
    'aria-label': 'Filter by pool'
  });
  private readonly detailEl = h('section', {
    class: 'osmo-detail',
    'aria-label': 'Workflow details',
    hidden: true
  });
  private readonly poolsEl = h('div', { class: 'osmo-pools-body' });
  private readonly poolsBox = h(
    'details',
    { class: 'osmo-pools' },
    h('summary', {}, 'Pools and resources'),
    this.poolsEl
  );

  constructor(private env: PanelEnv) {
    super();
    this.addClass('osmo-panel');
    this.id = 'osmo-panel';
    this.title.caption = 'OSMO workflows';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'OSMO workflows');
    this.list.onChange(() => this.schedule());
    this.buildStatic();
  }

  private buildStatic(): void {
    const submit = h(
      'button',
      { class: 'jp-Button jp-mod-styled jp-mod-accept osmo-submit', type: 'button' },
      'Submit YAML…'
    );
    submit.addEventListener('click', () => void this.submit());
    const refresh = h(
      'button',
      { class: 'jp-Button jp-mod-styled osmo-refresh', type: 'button', title: 'Reload the list' },
      'Refresh'
    );
    refresh.addEventListener('click', () => void this.reload());
    const search = h('input', {
      type: 'search',
      class: 'osmo-search jp-mod-styled',
      placeholder: 'Search by name or id',
      'aria-label': 'Search workflows'
    });
    search.addEventListener('input', () => {
      this.filter.search = search.value;
      this.schedule();
    });
    const status = h('select', {
      class: 'osmo-filter-status jp-mod-styled',
      'aria-label': 'Filter by status'
    });
    for (const s of STATUS_FILTERS) {
      status.append(h('option', { value: s }, s || 'any status'));
    }
    status.addEventListener('change', () => {
      this.filter.status = status.value;
      this.schedule();
    });
    this.poolSelect.addEventListener('change', () => {
      this.filter.pool = this.poolSelect.value;
      this.schedule();
    });
    this.listEl.addEventListener('keydown', ev => this.listKeys(ev));
    this.poolsBox.addEventListener('toggle', () => {
      if (this.poolsBox.open) {
        void this.refreshPools();
      }
    });
    this.node.append(
      h('div', { class: 'osmo-toolbar' }, submit, refresh, this.connEl),
      h(
        'section',
        { class: 'osmo-list', 'aria-label': 'Workflow list' },
        h('div', { class: 'osmo-filters' }, search, status, this.poolSelect),
        this.countEl,
        this.listEl
      ),
      this.detailEl,
      this.poolsBox
    );
  }

  protected onAfterAttach(): void {
    if (!this.stream) {
      this.start();
    }
    this.ticker ??= setInterval(() => this.tick(), 1000);
  }

  protected onBeforeDetach(): void {
    if (this.ticker) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  dispose(): void {
    this.stream?.close();
    this.detailStream?.close();
    if (this.ticker) {
      clearInterval(this.ticker);
    }
    super.dispose();
  }

  /** The list over REST, then the events stream (stored events replay, then live ones). */
  private start(): void {
    void this.reload();
    this.stream = this.env.client.events(
      {
        onEvent: ev => this.onEvent(ev),
        onResync: () => void this.reload(),
        onConnection: up => {
          this.connEl.textContent = up ? 'live' : 'reconnecting…';
          this.connEl.dataset.state = up ? 'live' : 'down';
        }
      },
      { logs: false }
    );
  }

  async reload(): Promise<void> {
    try {
      this.list.load(await this.env.client.listWorkflows({ limit: LIST_LIMIT }));
    } catch (e) {
      const missing = e instanceof ApiError && e.status === 404;
      this.env.notifyError(
        'Could not list workflows',
        missing ? new Error('this Jupyter server has no osmo_jupyter server extension enabled') : e
      );
    }
  }

  private onEvent(ev: OsmoEvent): void {
    this.list.apply(ev);
    if (ev.type === 'task.status' && this.poolsBox.open) {
      this.schedulePools(); // a task starting or ending moves the capacity in use
    }
  }

  private onDetailEvent(ev: OsmoEvent): void {
    const view = this.view;
    if (!view || ev.workflow_id !== view.id || !view.apply(ev)) {
      return;
    }
    const task = ev.task;
    const known = this.taskInfo?.name === task ? this.taskInfo.retry_id : -1;
    if (
      task &&
      task === this.selectedTask &&
      (ev.type === 'task.hold' ||
        (ev.type === 'task.status' && (isTerminal(ev.status ?? '') || (ev.retry_id ?? 0) > known)))
    ) {
      // attempts, exit code, timings and holds as stored; a new attempt adds a row
      void this.loadTask(view.id, task);
    }
    this.schedule();
  }

  /** Re-render once per frame however many events came in. */
  private schedule(): void {
    if (this.pending) {
      return;
    }
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  private tick(): void {
    const running = (s: string) => !isTerminal(s) && s !== 'PENDING' && s !== 'WAITING';
    if ([...this.list.rows.values()].some(r => r.start_time && running(r.status))) {
      this.schedule(); // running durations move
    }
  }

  private render(): void {
    this.renderPoolFilter();
    this.renderList();
    this.renderDetail();
  }

  private renderPoolFilter(): void {
    const pools = ['', ...this.list.pools()];
    const current = [...this.poolSelect.options].map(o => o.value);
    if (pools.join('\n') === current.join('\n')) {
      return;
    }
    this.poolSelect.replaceChildren(
      ...pools.map(p =>
        h('option', { value: p, selected: p === this.filter.pool }, p || 'any pool')
      )
    );
  }

  private renderList(): void {
    const now = Date.now() / 1000;
    const rows = this.list.filtered(this.filter);
    this.countEl.textContent = `${rows.length} of ${this.list.rows.size} workflows`;
    // One tab stop for the list (the selected row, else the first); arrows move within it.
    const tabStop = rows.some(r => r.id === this.view?.id) ? this.view?.id : rows[0]?.id;
    const items = rows.map(r => {
      const { done, total } = this.list.progress(r.id);
      const selected = this.view?.id === r.id;
      const li = h(
        'li',
        {
          class: `osmo-wf${selected ? ' jp-mod-selected' : ''}`,
          role: 'option',
          tabindex: r.id === tabStop ? 0 : -1,
          'aria-selected': selected ? 'true' : 'false',
          'data-id': r.id,
          'data-key': `wf:${r.id}`,
          'data-status': r.status,
          title: r.message ?? ''
        },
        h('span', { class: 'osmo-wf-id' }, r.id),
        h('span', { class: `osmo-badge osmo-status-${statusKind(r.status)}` }, r.status),
        h(
          'span',
          { class: 'osmo-wf-progress', title: 'tasks completed / tasks' },
          `${done}/${total ?? '?'}`
        ),
        h('span', { class: 'osmo-wf-duration' }, formatDuration(duration(r, now))),
        h('span', { class: 'osmo-wf-meta' }, `${r.pool}${r.user ? ` · ${r.user}` : ''}`)
      );
      activateOnKeys(li, () => void this.select(r.id));
      return li;
    });
    if (!items.length) {
      items.push(h('li', { class: 'osmo-empty' }, 'No workflows'));
    }
    replaceKeepingFocus(this.listEl, ...items);
  }

  /** Arrow keys move between workflows (the list is one tab stop's worth of options). */
  private listKeys(ev: KeyboardEvent): void {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') {
      return;
    }
    const items = [...this.listEl.querySelectorAll<HTMLElement>('li[data-id]')];
    const at = items.indexOf(document.activeElement as HTMLElement);
    const next =
      items[Math.max(0, Math.min(items.length - 1, at + (ev.key === 'ArrowDown' ? 1 : -1)))];
    next?.focus();
    ev.preventDefault();
  }

  /** Show workflow `id`: its detail and spec over REST, then its events (live log lines too). */
  async select(id: string): Promise<void> {
    const after = this.stream?.lastId ?? 0;
    try {
      const [detail, spec] = await Promise.all([
        this.env.client.workflow(id),
        this.env.client.spec(id)
      ]);
      this.detailStream?.close();
      this.view = new WorkflowView(detail, parseSpec(spec.spec), TAIL_LINES);
      this.selectedTask = null;
      this.taskInfo = null;
      this.detailStream = this.env.client.events(
        { onEvent: ev => this.onDetailEvent(ev), onResync: () => void this.select(id) },
        { workflowId: id, logs: true, after }
      );
      this.schedule();
    } catch (e) {
      this.env.notifyError(`Could not open ${id}`, e);
    }
  }

  private async selectTask(task: string): Promise<void> {
    if (!this.view) {
      return;
    }
    this.selectedTask = task;
    this.taskInfo = null;
    this.schedule();
    await this.loadTask(this.view.id, task);
    try {
      // the server answers a page, never a whole log: ask for the tail itself
      const lines = await this.env.client.logs(this.view.id, task, { tail: TAIL_LINES });
      this.view.tail.set(
        task,
        lines.slice(-TAIL_LINES).map(l => l.text)
      );
      this.schedule();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        this.env.notifyError(`Could not read the log of ${task}`, e);
      }
    }
  }

  private async loadTask(id: string, task: string): Promise<void> {
    try {
      const info = await this.env.client.task(id, task);
      if (this.view?.id === id && this.selectedTask === task) {
        this.taskInfo = info;
        this.schedule();
      }
    } catch (e) {
      this.env.notifyError(`Could not read task ${task}`, e);
    }
  }

  private async submit(): Promise<void> {
    const id = await this.env.submitFile();
    if (id) {
      await this.select(id);
    }
  }

  private async act(what: 'cancel' | 'restart', id: string): Promise<void> {
    try {
      if (what === 'cancel') {
        await this.env.client.cancel(id);
      } else {
        const { id: fresh } = await this.env.client.restart(id);
        await this.select(fresh);
      }
    } catch (e) {
      this.env.notifyError(`Could not ${what} ${id}`, e);
    }
  }

  private renderDetail(): void {
    const view = this.view;
    this.detailEl.hidden = !view;
    if (!view) {
      return;
    }
    const ended = isTerminal(view.status);
    const cancel = h(
      'button',
      {
        class: 'jp-Button jp-mod-styled osmo-cancel',
        'data-key': 'cancel',
        type: 'button',
        disabled: ended,
        'aria-label': `Cancel ${view.id}`
      },
      'Cancel'
    );
    cancel.addEventListener('click', () => void this.act('cancel', view.id));
    const restart = h(
      'button',
      {
        class: 'jp-Button jp-mod-styled osmo-restart',
        'data-key': 'restart',
        type: 'button',
        disabled: !ended,
        'aria-label': `Restart ${view.id}`
      },
      'Restart'
    );
    restart.addEventListener('click', () => void this.act('restart', view.id));
    const close = h(
      'button',
      {
        class: 'jp-Button jp-mod-styled osmo-close',
        type: 'button',
        'data-key': 'close',
        'aria-label': 'Close details'
      },
      '×'
    );
    close.addEventListener('click', () => {
      this.detailStream?.close();
      this.detailStream = null;
      this.view = null;
      this.schedule();
    });
    const plan = layout(view.order, view.spec);
    const zoom = h(
      'button',
      {
        class: 'jp-Button jp-mod-styled osmo-zoom',
        type: 'button',
        'data-key': 'zoom',
        'aria-pressed': this.dagFit ? 'true' : 'false',
        title: 'Fit the graph to the panel, or show it at full size with scrolling'
      },
      this.dagFit ? 'Full size' : 'Fit'
    );
    zoom.addEventListener('click', () => {
      this.dagFit = !this.dagFit;
      this.schedule();
    });
    const dag = h(
      'div',
      { class: `osmo-dag-box${this.dagFit ? ' osmo-fit' : ''}` },
      renderDag(view, plan, this.selectedTask, t => void this.selectTask(t))
    );
    replaceKeepingFocus(
      this.detailEl,
      h(
        'header',
        { class: 'osmo-detail-head' },
        h('h3', { class: 'osmo-detail-id' }, view.id),
        h(
          'span',
          { class: `osmo-badge osmo-status-${statusKind(view.status)} osmo-detail-status` },
          view.status
        ),
        h('span', { class: 'osmo-spacer' }),
        zoom,
        cancel,
        restart,
        close
      ),
      view.message ? h('div', { class: 'osmo-message' }, view.message) : '',
      dag,
      this.selectedTask
        ? this.renderTask(view, this.selectedTask)
        : h('p', { class: 'osmo-hint' }, 'Select a task for its details.')
    );
  }

  private renderTask(view: WorkflowView, name: string): HTMLElement {
    const t = view.tasks.get(name);
    const spec = view.spec.tasks[name];
    const now = Date.now() / 1000;
    const box = h('div', { class: 'osmo-task', 'data-task-details': name });
    if (!t) {
      return box;
    }
    const attempts = this.taskInfo?.name === name ? this.taskInfo.attempts : [t];
    const res = spec?.resource;
    const resource =
      typeof res === 'string' ? { name: res, ...(view.spec.resources[res] as object) } : res;
    const dl = h('dl', { class: 'osmo-task-fields' });
    const field = (k: string, v: string | Node) => dl.append(h('dt', {}, k), h('dd', {}, v));
    field(
      'status',
      h('span', { class: `osmo-badge osmo-status-${statusKind(t.status)}` }, t.status)
    );
    const held = holdText(t);
    if (held) {
      field('held', h('span', { class: 'osmo-hold' }, held));
    }
    field('attempt', `${t.retry_id + 1} of ${attempts.length}`);
    field(
      'exit code',
      t.exit_code === null || t.exit_code === undefined ? '—' : String(t.exit_code)
    );
    field('node', t.node ?? '—');
    const usage =
      view.usage.get(name) ?? (this.taskInfo?.name === name ? this.taskInfo.usage : null);
    if (usage && t.status === 'RUNNING' && !holdText(t)) {
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
    field('resources', describe(resource) || '—');
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
    logs.addEventListener('click', () => this.env.openLogs(view.id, name));
    const buttons = h('div', { class: 'osmo-task-actions' }, logs);
    const ctx = { workflowId: view.id, task: t, spec };
    for (const action of this.env.actions.for(ctx)) {
      const b = h(
        'button',
        {
          class: 'jp-Button jp-mod-styled',
          type: 'button',
          'data-action': action.id,
          'data-key': `action:${action.id}`
        },
        action.label
      );
      b.addEventListener('click', async () => {
        try {
          await action.execute(ctx);
        } catch (e) {
          this.env.notifyError(`${action.label} failed`, e);
        }
      });
      buttons.append(b);
    }
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

  private schedulePools(): void {
    if (this.poolsTimer) {
      return;
    }
    this.poolsTimer = setTimeout(() => {
      this.poolsTimer = null;
      void this.refreshPools();
    }, 1000);
  }

  async refreshPools(): Promise<void> {
    try {
      const [pools, nodes] = await Promise.all([
        this.env.client.pools(),
        this.env.client.resources()
      ]);
      this.poolsEl.replaceChildren(renderPools(pools, nodes));
    } catch (e) {
      this.env.notifyError('Could not read pools', e);
    }
  }
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

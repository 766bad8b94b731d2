/**
 * The OSMO side panel: the toolbar (toolbar.ts), the user's workflows, live (workflows.ts), one
 * workflow's DAG and task details (detail.ts, taskdetail.ts), and the pools with their capacity
 * (pools.ts). State lives in model.ts; this module holds what is selected, reads it over REST,
 * keeps the events streams, and draws the parts once per frame.
 */
import { Widget } from '@lumino/widgets';

import { ApiError, EventStream, OsmoClient, OsmoEvent, TaskInfo } from './api';
import { WorkflowDetailView } from './detail';
import { heldNews, Opened, renderHeldBanner } from './held';
import { isTerminal, WorkflowList, WorkflowView } from './model';
import { parseSpec } from './specinfo';
import { PoolsView } from './pools';
import { renderTask, TaskDetailEnv } from './taskdetail';
import { DEFAULT_SETTINGS, PanelSettings } from './settings';
import { Toolbar } from './toolbar';
import { WorkflowListView } from './workflows';

export interface PanelEnv extends TaskDetailEnv {
  client: OsmoClient;
  /** Ask for a YAML file and submit it; resolves to the new workflow id (null if cancelled). */
  submitFile(): Promise<string | null>;
  /** A task started or stopped running: its kernel spec came or went (kernels.py). */
  tasksMoved(): void;
  /** Tell the user a task became held; `show` opens it in the panel. */
  notifyHeld(message: string, show: () => void): void;
  /** Ask before doing something that cannot be undone; true to go on. */
  confirm(title: string, body: string, action: string): Promise<boolean>;
  /** A short-lived success message. */
  notify(message: string): void;
  /** Open workflow `id` in a main-area tab (workflowview.ts). */
  openWorkflowView(id: string): void;
}

const LIST_LIMIT = 200;
const TAIL_LINES = 10;

export class OsmoPanel extends Widget {
  readonly list = new WorkflowList();
  private stream: EventStream | null = null;
  private started = false;
  private detailStream: EventStream | null = null;
  private view: WorkflowView | null = null;
  private selectedTask: string | null = null;
  private selecting = 0; // select() calls so far: an older one's answer is dropped
  private taskInfo: TaskInfo | null = null;
  private pending = false;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private poller: ReturnType<typeof setInterval> | null = null;
  private settings: PanelSettings = DEFAULT_SETTINGS;
  /** The events stream's state: null until it first connects, then up (true) or away. */
  private connected: boolean | null = null;
  /** Held-task events older than this (seconds) are replays, not news. */
  private opened: Opened = { lastEventId: 0, at: Date.now() / 1000 };

  private readonly toolbar = new Toolbar({
    submit: () => void this.submit(),
    refresh: () => void this.reload()
  });
  readonly listView = new WorkflowListView(this.list, {
    changed: () => this.schedule(),
    select: id => void this.select(id),
    submit: () => void this.submit(),
    cancel: ids => void this.cancel(ids)
  });
  private readonly detailView = new WorkflowDetailView({
    act: (what, id) => void this.act(what, id),
    openTab: id => this.env.openWorkflowView(id),
    close: () => {
      this.selecting++; // a select still reading must not open it again
      this.detailStream?.close();
      this.detailStream = null;
      this.view = null;
      this.schedule();
    },
    selectTask: task => void this.selectTask(task),
    renderTask: (view, task) => renderTask(view, task, this.taskInfo, this.env),
    renderHeld: view => renderHeldBanner(view, this.env, task => void this.selectTask(task)),
    changed: () => this.schedule()
  });
  private readonly pools: PoolsView;

  constructor(private env: PanelEnv) {
    super();
    this.addClass('osmo-panel');
    this.id = 'osmo-panel';
    this.title.caption = 'OSMO workflows';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'OSMO workflows');
    this.pools = new PoolsView(env.client, (title, e) => env.notifyError(title, e));
    this.list.onChange(() => this.schedule());
    this.node.append(this.toolbar.node, this.listView.node, this.detailView.node, this.pools.node);
  }

  protected onAfterAttach(): void {
    if (!this.started) {
      this.started = true;
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
    if (this.poller) {
      clearInterval(this.poller);
    }
    super.dispose();
  }

  /** New user settings (settings.ts): the list's refresh and held-task notifications. */
  configure(settings: PanelSettings): void {
    this.settings = settings;
    if (this.poller) {
      clearInterval(this.poller);
      this.poller = null;
    }
    if (settings.refreshSeconds > 0) {
      this.poller = setInterval(() => {
        if (this.connected !== false) {
          void this.reload();
        }
      }, settings.refreshSeconds * 1000);
    }
  }

  /** The list over REST, then the events stream after the last event before the list was
   * read: what the list holds is not replayed (with no id, all of the user's events are). */
  private start(): void {
    void (async () => {
      const after = await this.env.client.lastEventId().catch(() => 0);
      this.opened = { lastEventId: after, at: Date.now() / 1000 };
      await this.reload();
      if (this.isDisposed) {
        return;
      }
      this.stream = this.env.client.events(
        {
          onEvent: ev => this.onEvent(ev),
          onResync: () => void this.reload(),
          onConnection: up => this.setConnected(up)
        },
        { logs: false, after }
      );
    })();
  }

  async reload(): Promise<void> {
    if (this.connected === false) {
      return; // the list is read again when the server is back
    }
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

  /** The server came back (reload what was missed) or went away (actions wait for it). */
  private setConnected(up: boolean): void {
    const back = up && this.connected === false;
    this.connected = up;
    this.toolbar.setConnected(up);
    this.node.dataset.connection = up ? 'live' : 'down';
    if (back) {
      void this.reload();
    }
    this.schedule();
  }

  private onEvent(ev: OsmoEvent): void {
    this.list.apply(ev);
    const news = this.settings.notifyHeld ? heldNews(ev, this.opened) : null;
    if (news && ev.task) {
      const { workflow_id: id, task } = ev;
      this.env.notifyHeld(news, () => void this.showTask(id, task));
    }
    if (ev.type === 'task.status') {
      this.pools.taskMoved();
      this.env.tasksMoved();
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
    this.listView.render(this.view?.id ?? null);
    this.detailView.render(this.view, this.selectedTask);
    if (this.connected === false) {
      // what needs the server waits for it (the toolbar's buttons follow setConnected)
      for (const b of this.node.querySelectorAll<HTMLButtonElement>('button[data-server]')) {
        b.disabled = true;
      }
    }
  }

  /**
   * Show workflow `id`: its detail and spec over REST, then its events (live log lines too).
   * The latest call wins; reading the shown workflow again (a resync) keeps its selected task.
   */
  async select(id: string): Promise<void> {
    const turn = ++this.selecting;
    try {
      const [detail, spec] = await Promise.all([
        this.env.client.workflow(id),
        this.env.client.spec(id)
      ]);
      if (turn !== this.selecting) {
        return; // another workflow was asked for meanwhile
      }
      const kept = this.view?.id === id ? this.selectedTask : null;
      this.detailStream?.close();
      this.view = new WorkflowView(detail, parseSpec(spec.spec), TAIL_LINES);
      this.selectedTask = null;
      this.taskInfo = null;
      this.detailStream = this.env.client.events(
        { onEvent: ev => this.onDetailEvent(ev), onResync: () => void this.select(id) },
        { workflowId: id, logs: true, after: detail.last_event_id } // nothing replayed twice
      );
      this.schedule();
      if (kept) {
        await this.selectTask(kept); // its details and tail, read again
      }
    } catch (e) {
      this.env.notifyError(`Could not open ${id}`, e);
    }
  }

  /** Show `task` of workflow `id` (the workflow is opened first unless it is shown). */
  async showTask(id: string, task: string): Promise<void> {
    if (this.view?.id !== id) {
      await this.select(id);
    }
    if (this.view?.id === id) {
      await this.selectTask(task); // not if the workflow could not be read (already told)
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
    await (what === 'cancel' ? this.cancel([id]) : this.restart(id));
  }

  /** Cancel `ids` once the user confirms; one toast for what was canceled. */
  async cancel(ids: string[]): Promise<void> {
    const live = ids.filter(id => !isTerminal(this.list.rows.get(id)?.status ?? ''));
    if (!live.length) {
      return;
    }
    const what = live.length === 1 ? live[0] : `${live.length} workflows`;
    const ok = await this.env.confirm(
      `Cancel ${what}?`,
      `Their running tasks are stopped and their waiting tasks never start: ${live.join(', ')}.`,
      'Cancel workflows'
    );
    if (!ok) {
      return;
    }
    const done: string[] = [];
    for (const id of live) {
      try {
        await this.env.client.cancel(id);
        done.push(id);
        this.listView.checked.delete(id);
      } catch (e) {
        this.env.notifyError(`Could not cancel ${id}`, e);
      }
    }
    if (done.length) {
      this.env.notify(`Canceled ${done.join(', ')}`);
    }
    this.schedule();
  }

  /** Run workflow `id` again as a new one (from `fromTask` on, if given), and show it. */
  async restart(id: string, fromTask?: string): Promise<void> {
    try {
      const { id: fresh } = await this.env.client.restart(id, fromTask);
      this.env.notify(`Restarted ${id}${fromTask ? ` from ${fromTask}` : ''} as ${fresh}`);
      await this.select(fresh);
    } catch (e) {
      this.env.notifyError(`Could not restart ${id}`, e);
    }
  }
}

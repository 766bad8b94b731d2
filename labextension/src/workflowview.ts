/**
 * One workflow in a main-area tab: its graph (graph.ts), its attempts on a timeline
 * (timeline.ts), and its tasks and their resources as tables (tasktable.ts). Read over REST once, then moved by the
 * workflow's events, as the side panel's detail is; selecting a task selects it in the panel, and
 * the L key opens the selected task's log.
 */
import { Widget } from '@lumino/widgets';

import type { EventStream, OsmoClient, OsmoEvent } from './api';
import { h } from './dom';
import { GraphView } from './graph';
import { collapsedGroups, COLLAPSE_ABOVE } from './graphlayout';
import { isTerminal, statusKind, WorkflowView } from './model';
import { parseSpec } from './specinfo';
import { RESOURCE_COLUMNS, TaskTable } from './tasktable';
import { Timeline } from './timeline';

export interface WorkflowTabEnv {
  client: OsmoClient;
  notifyError(title: string, error: unknown): void;
  /** Show `task` of `workflowId` in the side panel (its details and log tail). */
  showTask(workflowId: string, task: string): void;
  openLogs(workflowId: string, task: string): void;
}

export const VIEWS = {
  graph: 'Graph',
  timeline: 'Timeline',
  table: 'Tasks',
  resources: 'Resources'
} as const;
export type ViewName = keyof typeof VIEWS;

export class WorkflowTab extends Widget {
  private view: WorkflowView | null = null;
  private stream: EventStream | null = null;
  private selected: string | null = null;
  /** Groups the user opened (of a workflow big enough to start with them collapsed). */
  private readonly expanded = new Set<string>();
  private shownView: ViewName = 'graph';
  private pending = false;
  private ticker: ReturnType<typeof setInterval> | null = null;

  readonly graph = new GraphView({
    select: task => this.select(task),
    toggleGroup: group => {
      if (!this.expanded.delete(group)) {
        this.expanded.add(group);
      }
      this.schedule();
    }
  });
  private readonly timeline = new Timeline(task => this.select(task));
  private readonly table = new TaskTable(task => this.select(task));
  private readonly resources = new TaskTable(
    task => this.select(task),
    RESOURCE_COLUMNS,
    'Resources of the tasks'
  );
  private readonly status = h('span', { class: 'osmo-badge osmo-wv-status' });
  private readonly tabs = h('div', { class: 'osmo-wv-tabs', role: 'tablist' });
  /** Each view in a tab panel of its own (the views keep their own roles: table, …). */
  private readonly panes: Record<ViewName, HTMLElement> = {
    graph: h('div', {}, this.graph.node),
    timeline: h('div', {}, this.timeline.node),
    table: h('div', {}, this.table.node),
    resources: h('div', {}, this.resources.node)
  };

  constructor(
    private readonly env: WorkflowTabEnv,
    readonly workflowId: string
  ) {
    super();
    this.id = `osmo-workflow-${workflowId}`.replace(/[^\w-]/g, '_');
    this.addClass('osmo-workflow-view');
    this.title.label = workflowId;
    this.title.caption = `OSMO workflow ${workflowId}: graph, timeline, tasks, resources`;
    this.node.dataset.workflow = workflowId;
    this.node.tabIndex = -1;
    for (const [name, label] of Object.entries(VIEWS) as Array<[ViewName, string]>) {
      const tab = h(
        'button',
        {
          class: 'osmo-wv-tab',
          type: 'button',
          role: 'tab',
          id: `${this.id}-tab-${name}`,
          'data-view': name,
          'aria-controls': `${this.id}-${name}`
        },
        label
      );
      tab.addEventListener('click', () => this.showView(name));
      this.tabs.append(tab);
      this.panes[name].id = `${this.id}-${name}`;
      this.panes[name].setAttribute('role', 'tabpanel');
      this.panes[name].setAttribute('aria-labelledby', tab.id);
      this.panes[name].classList.add('osmo-wv-pane');
    }
    this.tabs.addEventListener('keydown', ev => this.tabKeys(ev));
    this.node.append(
      h(
        'header',
        { class: 'osmo-wv-head' },
        h('h2', { class: 'osmo-wv-id' }, workflowId),
        this.status,
        h('span', { class: 'osmo-spacer' }),
        this.tabs
      ),
      ...Object.values(this.panes)
    );
    this.node.addEventListener('keydown', ev => {
      if (ev.key === 'Escape' && this.selected) {
        this.select(null);
      } else if (ev.key === 'l' && this.selected && !(ev.target instanceof HTMLInputElement)) {
        this.env.openLogs(this.workflowId, this.selected); // the selected task's log
      }
    });
    this.showView('graph');
    void this.load();
  }

  protected onAfterShow(): void {
    this.graph.shown();
    this.schedule();
  }

  protected onAfterAttach(): void {
    // running durations and bars move
    this.ticker ??= setInterval(() => this.tick(), 1000);
    this.schedule();
  }

  protected onBeforeDetach(): void {
    if (this.ticker) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  protected onResize(): void {
    this.graph.shown();
    this.schedule();
  }

  dispose(): void {
    this.stream?.close();
    if (this.ticker) {
      clearInterval(this.ticker);
    }
    super.dispose();
  }

  /** Show one of the views: the graph, the timeline, the tasks or their resources. */
  showView(name: ViewName): void {
    this.shownView = name;
    for (const tab of this.tabs.querySelectorAll<HTMLButtonElement>('[role="tab"]')) {
      const on = tab.dataset.view === name;
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
    }
    for (const [key, pane] of Object.entries(this.panes)) {
      pane.hidden = key !== name;
    }
    this.render();
    if (name === 'graph') {
      this.graph.shown();
    }
  }

  /** Left/right arrows move between the tabs (ARIA's tabs pattern). */
  private tabKeys(ev: KeyboardEvent): void {
    const names = Object.keys(VIEWS) as ViewName[];
    const step = ev.key === 'ArrowRight' ? 1 : ev.key === 'ArrowLeft' ? -1 : 0;
    if (!step) {
      return;
    }
    const next = names[(names.indexOf(this.shownView) + step + names.length) % names.length];
    this.showView(next);
    this.tabs.querySelector<HTMLElement>(`[data-view="${next}"]`)?.focus();
    ev.preventDefault();
  }

  /** The workflow and its spec over REST, then its events after those the answer holds. */
  private async load(): Promise<void> {
    let after: number;
    try {
      const [detail, spec] = await Promise.all([
        this.env.client.workflow(this.workflowId),
        this.env.client.spec(this.workflowId)
      ]);
      this.view = new WorkflowView(detail, parseSpec(spec.spec), 0);
      after = detail.last_event_id;
    } catch (e) {
      this.env.notifyError(`Could not open ${this.workflowId}`, e);
      this.node.append(h('p', { class: 'osmo-error' }, `Could not open ${this.workflowId}: ${e}`));
      return;
    }
    this.stream?.close();
    this.stream = this.env.client.events(
      { onEvent: ev => this.onEvent(ev), onResync: () => void this.load() },
      { workflowId: this.workflowId, logs: false, after }
    );
    this.render();
  }

  private onEvent(ev: OsmoEvent): void {
    if (this.view?.apply(ev)) {
      this.schedule();
    }
  }

  /** Whether the workflow has ended (false before it is read). */
  get ended(): boolean {
    return this.view !== null && isTerminal(this.view.status);
  }

  /** The latest attempt's status of `task` ('' before the workflow is read). */
  taskStatus(task: string): string {
    return this.view?.tasks.get(task)?.status ?? '';
  }

  /** Select `task` as shown elsewhere (the panel is told already). */
  highlight(task: string): void {
    this.selected = task;
    this.schedule();
  }

  private select(task: string | null): void {
    this.selected = task;
    this.schedule();
    if (task) {
      this.env.showTask(this.workflowId, task);
    }
  }

  private tick(): void {
    if (this.view && !isTerminal(this.view.status)) {
      this.schedule();
    }
  }

  /** Render once per frame however many events came in. */
  private schedule(): void {
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    }
  }

  private render(): void {
    const view = this.view;
    if (!view || !this.isVisible) {
      return;
    }
    this.status.textContent = view.status;
    this.status.className = `osmo-badge osmo-wv-status osmo-status-${statusKind(view.status)}`;
    if (this.shownView === 'graph') {
      const foldable = view.order.length > COLLAPSE_ABOVE;
      const collapsed = collapsedGroups(view.order, view.spec, this.expanded);
      this.graph.render(view, collapsed, foldable, this.selected);
    } else if (this.shownView === 'timeline') {
      this.timeline.render(view, this.selected);
    } else {
      this[this.shownView].render(view, this.selected);
    }
  }
}

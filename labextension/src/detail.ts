/**
 * One workflow's details: its header (status, zoom, Cancel, Restart, close), its DAG, and the
 * selected task's details (drawn by the caller, which holds what it read of the task).
 */
import { renderDag } from './dag';
import { h, on, patchChildren } from './dom';
import { layout } from './dag';
import { isTerminal, statusKind, WorkflowView } from './model';

export interface DetailHandlers {
  act(what: 'cancel' | 'restart', id: string): void;
  /** Open the workflow in a main-area tab. */
  openTab(id: string): void;
  close(): void;
  selectTask(task: string): void;
  renderTask(view: WorkflowView, task: string): HTMLElement;
  /** The banner of the workflow's held tasks, or null. */
  renderHeld(view: WorkflowView): HTMLElement | null;
  /** The graph was zoomed: draw again. */
  changed(): void;
}

export class WorkflowDetailView {
  readonly node = h('section', {
    class: 'osmo-detail',
    'aria-label': 'Workflow details',
    hidden: true
  });
  /** The DAG fits the panel (else full size, scrolling). */
  private fit = true;

  constructor(private readonly on: DetailHandlers) {}

  /** Draw `view` (hidden when null) with `selectedTask`'s details. */
  render(view: WorkflowView | null, selectedTask: string | null): void {
    this.node.hidden = !view;
    if (!view) {
      return;
    }
    const ended = isTerminal(view.status);
    const button = (key: string, label: string, attrs: Record<string, string | boolean>) =>
      h(
        'button',
        { class: `jp-Button jp-mod-styled osmo-${key}`, type: 'button', 'data-key': key, ...attrs },
        label
      );
    const cancel = button('cancel', 'Cancel', {
      disabled: ended,
      'data-server': true,
      'aria-label': `Cancel ${view.id}`
    });
    on(cancel, 'click', () => this.on.act('cancel', view.id));
    const restart = button('restart', 'Restart', {
      disabled: !ended,
      'data-server': true,
      'aria-label': `Restart ${view.id}`
    });
    on(restart, 'click', () => this.on.act('restart', view.id));
    const tab = button('tab', 'Open in Tab', {
      title: 'The graph, a timeline, the tasks and their resources in a main-area tab'
    });
    on(tab, 'click', () => this.on.openTab(view.id));
    const close = button('close', '×', { 'aria-label': 'Close details' });
    on(close, 'click', () => this.on.close());
    const zoom = button('zoom', this.fit ? 'Full size' : 'Fit', {
      'aria-pressed': this.fit ? 'true' : 'false',
      title: 'Fit the graph to the panel, or show it at full size with scrolling'
    });
    on(zoom, 'click', () => {
      this.fit = !this.fit;
      this.on.changed();
    });
    const dag = h(
      'div',
      { class: `osmo-dag-box${this.fit ? ' osmo-fit' : ''}` },
      renderDag(view, layout(view.order, view.spec), selectedTask, t => this.on.selectTask(t))
    );
    patchChildren(
      this.node,
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
        tab,
        zoom,
        cancel,
        restart,
        close
      ),
      this.on.renderHeld(view) ?? '',
      view.message ? h('div', { class: 'osmo-message' }, view.message) : '',
      dag,
      selectedTask
        ? this.on.renderTask(view, selectedTask)
        : h('p', { class: 'osmo-hint' }, 'Select a task for its details.')
    );
  }
}

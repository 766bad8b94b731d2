/** The workflow list: search and filters, the count, and one row per workflow (live). */
import { activateOnKeys, h, replaceKeepingFocus } from './dom';
import { duration, Filter, formatDuration, statusKind, WorkflowList } from './model';

const STATUS_FILTERS = [
  '',
  'held',
  'running',
  'pending',
  'waiting',
  'completed',
  'failed',
  'canceled'
];

export interface ListHandlers {
  /** The filter changed: draw again. */
  changed(): void;
  select(id: string): void;
  /** Ask for a YAML file and submit it (the empty list's hint offers it). */
  submit(): void;
}

export class WorkflowListView {
  readonly node: HTMLElement;
  private readonly filter: Filter = { status: '', pool: '', search: '' };
  private readonly listEl = h('ul', {
    class: 'osmo-workflows',
    role: 'listbox',
    'aria-label': 'Workflows'
  });
  private readonly countEl = h('span', { class: 'osmo-count', 'aria-live': 'polite' });
  private readonly poolSelect = h('select', {
    class: 'osmo-filter-pool jp-mod-styled',
    'aria-label': 'Filter by pool'
  });
  private readonly search = h('input', {
    type: 'search',
    class: 'osmo-search jp-mod-styled',
    placeholder: 'Search by name or id',
    'aria-label': 'Search workflows'
  });
  private readonly status = h('select', {
    class: 'osmo-filter-status jp-mod-styled',
    'aria-label': 'Filter by status'
  });

  constructor(
    private readonly list: WorkflowList,
    private readonly on: ListHandlers
  ) {
    const search = this.search;
    search.addEventListener('input', () => {
      this.filter.search = search.value;
      on.changed();
    });
    const status = this.status;
    for (const s of STATUS_FILTERS) {
      status.append(h('option', { value: s }, s || 'any status'));
    }
    status.addEventListener('change', () => {
      this.filter.status = status.value;
      on.changed();
    });
    this.poolSelect.addEventListener('change', () => {
      this.filter.pool = this.poolSelect.value;
      on.changed();
    });
    this.listEl.addEventListener('keydown', ev => this.listKeys(ev));
    this.node = h(
      'section',
      { class: 'osmo-list', 'aria-label': 'Workflow list' },
      h('div', { class: 'osmo-filters' }, search, status, this.poolSelect),
      this.countEl,
      this.listEl
    );
  }

  /** Draw the list; `selected`: the workflow whose details are open. */
  render(selected: string | null): void {
    this.renderPoolFilter();
    this.renderList(selected);
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

  private renderList(selectedId: string | null): void {
    const now = Date.now() / 1000;
    const rows = this.list.filtered(this.filter);
    this.countEl.textContent = `${rows.length} of ${this.list.rows.size} workflows`;
    // One tab stop for the list (the selected row, else the first); arrows move within it.
    const tabStop = rows.some(r => r.id === selectedId) ? selectedId : rows[0]?.id;
    const items = rows.map(r => {
      const { done, total } = this.list.progress(r.id);
      const selected = selectedId === r.id;
      const held = this.list.held(r.id);
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
        held
          ? h(
              'span',
              { class: 'osmo-wf-held', title: 'tasks waiting for their user' },
              `${held} held`
            )
          : '',
        h('span', { class: 'osmo-wf-meta' }, `${r.pool}${r.user ? ` · ${r.user}` : ''}`)
      );
      activateOnKeys(li, () => this.on.select(r.id));
      return li;
    });
    if (!items.length) {
      items.push(this.empty());
    }
    replaceKeepingFocus(this.listEl, ...items);
  }

  /** What an empty list says: loading, nothing yet (and how to start), or nothing matches. */
  private empty(): HTMLLIElement {
    if (!this.list.loaded) {
      return h('li', { class: 'osmo-empty' }, 'Loading workflows…');
    }
    if (this.list.rows.size) {
      const clear = h(
        'button',
        { class: 'jp-Button jp-mod-styled osmo-clear-filter', type: 'button', 'data-key': 'clear' },
        'Clear filter'
      );
      clear.addEventListener('click', () => this.clearFilter());
      return h('li', { class: 'osmo-empty' }, 'No workflow matches the filter. ', clear);
    }
    const submit = h(
      'button',
      { class: 'osmo-link', type: 'button', 'data-key': 'empty-submit', 'data-server': true },
      'submit a workflow YAML'
    );
    submit.addEventListener('click', () => this.on.submit());
    return h(
      'li',
      { class: 'osmo-empty osmo-empty-hint' },
      'No workflows yet: ',
      submit,
      ', right-click a .yaml file and choose Submit to OSMO, or run one from a notebook ',
      h('code', {}, '%%osmo'),
      '.'
    );
  }

  private clearFilter(): void {
    Object.assign(this.filter, { status: '', pool: '', search: '' });
    this.search.value = '';
    this.status.value = '';
    this.poolSelect.value = '';
    this.on.changed();
    this.search.focus();
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
}

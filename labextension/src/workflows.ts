/** The workflow list: search, filters and sort, the count, a selection for bulk cancel, and
 * one row per workflow (live; its context menu is index.ts's). */
import { h, on, patchChildren } from './dom';
import {
  duration,
  Filter,
  formatDuration,
  SortKey,
  SORTS,
  statusKind,
  WorkflowList
} from './model';

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

/** A start time: the time of day if today, else the date and time. */
function when(seconds: number, now: number): string {
  const at = new Date(seconds * 1000);
  return at.toDateString() === new Date(now * 1000).toDateString()
    ? at.toLocaleTimeString()
    : at.toLocaleString();
}

export interface ListHandlers {
  /** The filter changed: draw again. */
  changed(): void;
  select(id: string): void;
  /** Ask for a YAML file and submit it (the empty list's hint offers it). */
  submit(): void;
  /** Cancel these workflows (after asking). */
  cancel(ids: string[]): void;
}

export class WorkflowListView {
  readonly node: HTMLElement;
  private readonly filter: Required<Filter> = {
    status: '',
    pool: '',
    search: '',
    user: '',
    sort: 'newest'
  };
  /** Workflows picked for a bulk action (Ctrl/Cmd-click, Shift-click for a range). */
  readonly checked = new Set<string>();
  private lastClicked: string | null = null;
  private shown: string[] = [];
  private readonly bulk = h('div', { class: 'osmo-bulk', hidden: true });
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
  private readonly userSelect = h('select', {
    class: 'osmo-filter-user jp-mod-styled',
    'aria-label': 'Filter by user'
  });
  private readonly sortSelect = h('select', {
    class: 'osmo-sort jp-mod-styled',
    'aria-label': 'Sort workflows'
  });
  private readonly search = h('input', {
    type: 'search',
    class: 'osmo-search jp-mod-styled',
    placeholder: 'Search: name, id, user, label (key=value)',
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
    this.userSelect.addEventListener('change', () => {
      this.filter.user = this.userSelect.value;
      on.changed();
    });
    this.sortSelect.append(
      ...Object.entries(SORTS).map(([k, label]) => h('option', { value: k }, `sort: ${label}`))
    );
    this.sortSelect.addEventListener('change', () => {
      this.filter.sort = this.sortSelect.value as SortKey;
      on.changed();
    });
    this.listEl.addEventListener('keydown', ev => this.listKeys(ev));
    this.node = h(
      'section',
      { class: 'osmo-list', 'aria-label': 'Workflow list' },
      h(
        'div',
        { class: 'osmo-filters' },
        search,
        status,
        this.poolSelect,
        this.userSelect,
        this.sortSelect
      ),
      h('div', { class: 'osmo-list-bar' }, this.countEl, this.bulk),
      this.listEl
    );
  }

  /** Draw the list; `selected`: the workflow whose details are open. */
  render(selected: string | null): void {
    this.renderChoices(this.poolSelect, this.list.pools(), this.filter.pool, 'any pool');
    this.renderChoices(this.userSelect, this.list.users(), this.filter.user, 'anyone');
    this.renderList(selected);
    this.renderBulk();
  }

  private renderChoices(select: HTMLSelectElement, values: string[], now: string, any: string) {
    const all = ['', ...values];
    const current = [...select.options].map(o => o.value);
    if (all.join('\n') === current.join('\n')) {
      return;
    }
    select.replaceChildren(
      ...all.map(v => h('option', { value: v, selected: v === now }, v || any))
    );
  }

  /** "N selected", with Cancel for them and a way to drop the selection. */
  private renderBulk(): void {
    for (const id of this.checked) {
      if (!this.list.rows.has(id)) {
        this.checked.delete(id);
      }
    }
    this.bulk.hidden = !this.checked.size;
    if (!this.checked.size) {
      this.bulk.replaceChildren();
      return;
    }
    const ids = [...this.checked];
    const cancel = h(
      'button',
      {
        class: 'jp-Button jp-mod-styled osmo-bulk-cancel',
        type: 'button',
        'data-key': 'bulk-cancel',
        'data-server': true
      },
      'Cancel selected'
    );
    on(cancel, 'click', () => this.on.cancel(ids));
    const clear = h(
      'button',
      { class: 'osmo-link', type: 'button', 'data-key': 'bulk-clear' },
      'clear selection'
    );
    on(clear, 'click', () => {
      this.checked.clear();
      this.on.changed();
    });
    patchChildren(this.bulk, `${ids.length} selected `, cancel, ' ', clear);
  }

  /** Ctrl/Cmd-click adds or drops a workflow from the selection, Shift-click a range;
   * true if the click was that (not an open). */
  private pick(ev: MouseEvent, id: string): boolean {
    if (ev.shiftKey && this.lastClicked && this.shown.includes(this.lastClicked)) {
      const [a, b] = [this.shown.indexOf(this.lastClicked), this.shown.indexOf(id)].sort(
        (x, y) => x - y
      );
      this.shown.slice(a, b + 1).forEach(i => this.checked.add(i));
    } else if (ev.ctrlKey || ev.metaKey) {
      if (!this.checked.delete(id)) {
        this.checked.add(id);
      }
    } else {
      this.lastClicked = id;
      return false;
    }
    this.lastClicked = id;
    this.on.changed();
    return true;
  }

  private renderList(selectedId: string | null): void {
    const now = Date.now() / 1000;
    const rows = this.list.filtered(this.filter, now);
    this.shown = rows.map(r => r.id);
    this.countEl.textContent = `${rows.length} of ${this.list.rows.size} workflows`;
    // One tab stop for the list (the selected row, else the first); arrows move within it.
    const tabStop = rows.some(r => r.id === selectedId) ? selectedId : rows[0]?.id;
    const items = rows.map(r => {
      const { done, total } = this.list.progress(r.id);
      const selected = selectedId === r.id;
      const held = this.list.held(r.id);
      const checked = this.checked.has(r.id);
      const started = r.start_time ? when(r.start_time, now) : null;
      const li = h(
        'li',
        {
          class: `osmo-wf${selected ? ' jp-mod-selected' : ''}${checked ? ' osmo-checked' : ''}`,
          'data-checked': checked ? 'true' : undefined,
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
        h(
          'span',
          { class: 'osmo-wf-meta' },
          [r.pool, r.user, started ? `started ${started}` : 'not started yet']
            .filter(Boolean)
            .join(' · ')
        )
      );
      on(li, 'click', ev => {
        if (!this.pick(ev, r.id)) {
          this.on.select(r.id);
        }
      });
      on(li, 'keydown', ev => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          this.on.select(r.id);
        }
      });
      return li;
    });
    if (!items.length) {
      items.push(this.empty());
    }
    patchChildren(this.listEl, ...items);
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
      on(clear, 'click', () => this.clearFilter());
      return h('li', { class: 'osmo-empty' }, 'No workflow matches the filter. ', clear);
    }
    const submit = h(
      'button',
      { class: 'osmo-link', type: 'button', 'data-key': 'empty-submit', 'data-server': true },
      'submit a workflow YAML'
    );
    on(submit, 'click', () => this.on.submit());
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
    Object.assign(this.filter, { status: '', pool: '', search: '', user: '' });
    for (const input of [this.search, this.status, this.poolSelect, this.userSelect]) {
      input.value = '';
    }
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

/**
 * A workflow's tasks as a table, sorted by a column, filtered by text and status, virtualised
 * (virtual.ts). Two sets of columns: the tasks (name, group, status, attempts, exit code, start,
 * duration, node) and their resources (CPU, GPU and memory asked, what was allocated, node,
 * pool).
 */
import { activateOnKeys, h, patchChildren } from './dom';
import { duration, formatDuration, shownStatus, taskKind, WorkflowView } from './model';
import { askedResource } from './specinfo';
import { bytes, describe } from './taskdetail';
import { VirtualRows } from './virtual';

export const COLUMNS = {
  name: 'Task',
  group: 'Group',
  status: 'Status',
  attempts: 'Attempts',
  exit: 'Exit',
  start: 'Start',
  duration: 'Duration',
  node: 'Node',
  pool: 'Pool',
  cpu: 'CPU',
  gpu: 'GPU',
  memory: 'Memory',
  allocated: 'Allocated'
} as const;
export type Column = keyof typeof COLUMNS;
export const TASK_COLUMNS: Column[] = [
  'name',
  'group',
  'status',
  'attempts',
  'exit',
  'start',
  'duration',
  'node'
];
export const RESOURCE_COLUMNS: Column[] = [
  'name',
  'status',
  'cpu',
  'gpu',
  'memory',
  'allocated',
  'node',
  'pool'
];

export interface TableQuery {
  sort: Column;
  descending: boolean;
  /** Words that must all be in the task's name, group, status or node (any case). */
  text: string;
  /** '' for any, else a colour family of model.ts `taskKind` ('failed', 'held', …). */
  kind: string;
}

export interface TableRow {
  name: string;
  group: string;
  status: string;
  kind: string;
  attempts: number;
  exit: number | null;
  start: number | null;
  duration: number | null;
  node: string;
  pool: string;
  /** What the task asks for (its spec's resource). */
  cpu: number | null;
  gpu: number | null;
  memory: number | null;
  /** What its attempt was given, in words. */
  allocated: string;
}

const num = (v: unknown): number | null => (typeof v === 'number' ? v : null);

/** The rows `query` asks for, from the latest attempt of each task (ties in spec order). */
export function tableRows(view: WorkflowView, query: TableQuery, now: number): TableRow[] {
  const words = query.text.toLowerCase().split(/\s+/).filter(Boolean);
  const rows: TableRow[] = [];
  for (const name of view.order) {
    const t = view.tasks.get(name);
    if (!t) {
      continue;
    }
    const asked = askedResource(view.spec, name);
    const row: TableRow = {
      name,
      group: t.group_name || (view.spec.tasks[name]?.group ?? ''),
      status: shownStatus(t),
      kind: taskKind(t),
      attempts: t.retry_id + 1,
      exit: t.exit_code,
      start: t.start_time,
      duration: duration(t, now),
      node: t.node ?? '',
      pool: view.detail.pool,
      cpu: num(asked?.cpu),
      gpu: num(asked?.gpu),
      memory: num(asked?.memory),
      allocated: describe(t.alloc)
    };
    const text = `${row.name}\n${row.group}\n${row.status}\n${row.node}`.toLowerCase();
    if ((!query.kind || row.kind === query.kind) && words.every(w => text.includes(w))) {
      rows.push(row);
    }
  }
  const key = query.sort;
  const sign = query.descending ? -1 : 1;
  // Array.sort is stable: equal keys keep spec order; empty values go last either way
  return rows.sort((a, b) => {
    const [x, y] = [a[key], b[key]];
    if (x === y) {
      return 0;
    }
    if (x === null || x === '') {
      return 1;
    }
    if (y === null || y === '') {
      return -1;
    }
    const order =
      typeof x === 'number' && typeof y === 'number'
        ? x - y
        : String(x).localeCompare(String(y), undefined, { numeric: true });
    return sign * order;
  });
}

const ROW_H = 26;
const KINDS = ['completed', 'running', 'held', 'pending', 'waiting', 'failed', 'upstream'];

export class TaskTable {
  readonly node: HTMLElement;
  private query: TableQuery = { sort: 'name', descending: false, text: '', kind: '' };
  private rows: TableRow[] = [];
  private view: WorkflowView | null = null;
  private selected: string | null = null;
  private readonly head = h('div', { class: 'osmo-table-row osmo-table-head', role: 'row' });
  private readonly count = h('span', { class: 'osmo-table-count', 'aria-live': 'polite' });
  private readonly list = new VirtualRows(ROW_H, i => this.renderRow(i), 'Task rows');

  constructor(
    private readonly onSelect: (task: string) => void,
    private readonly columns: Column[] = TASK_COLUMNS,
    label = 'Tasks'
  ) {
    this.node = h('div', { class: 'osmo-table', role: 'table', 'aria-label': label });
    // the name is wide, the status fits its badge, the rest share what is left
    const widths = columns.map(c =>
      c === 'name' ? 'minmax(200px, 3fr)' : c === 'status' ? '150px' : 'minmax(60px, 1fr)'
    );
    this.node.style.setProperty('--osmo-columns', widths.join(' '));
    const search = h('input', {
      type: 'search',
      class: 'jp-mod-styled osmo-table-search',
      placeholder: 'Filter tasks',
      'aria-label': 'Filter tasks'
    });
    search.addEventListener('input', () => this.set({ text: search.value }));
    const kind = h(
      'select',
      { class: 'jp-mod-styled osmo-table-kind', 'aria-label': 'Filter by status' },
      h('option', { value: '' }, 'any status'),
      ...KINDS.map(k => h('option', { value: k }, k === 'upstream' ? 'skipped (upstream)' : k))
    );
    kind.addEventListener('change', () => this.set({ kind: kind.value }));
    this.node.append(
      h('div', { class: 'osmo-table-tools' }, search, kind, this.count),
      this.head,
      this.list.node
    );
  }

  private set(change: Partial<TableQuery>): void {
    this.query = { ...this.query, ...change };
    this.render(this.view, this.selected);
  }

  /** Sort by `column`; the same column again turns the order round. */
  sortBy(column: Column): void {
    const again = this.query.sort === column;
    this.set({ sort: column, descending: again ? !this.query.descending : false });
  }

  render(view: WorkflowView | null, selected: string | null): void {
    this.view = view;
    this.selected = selected;
    if (!view) {
      return;
    }
    this.rows = tableRows(view, this.query, Date.now() / 1000);
    this.count.textContent = `${this.rows.length} of ${view.order.length} tasks`;
    patchChildren(
      this.head,
      ...this.columns.map(key => {
        const label = COLUMNS[key];
        const sorted = this.query.sort === key;
        const cell = h(
          'div',
          {
            class: `osmo-table-cell osmo-col-${key}`,
            role: 'columnheader',
            tabindex: 0,
            'data-column': key,
            'data-key': key,
            'aria-sort': sorted ? (this.query.descending ? 'descending' : 'ascending') : 'none'
          },
          `${label}${sorted ? (this.query.descending ? ' ▾' : ' ▴') : ''}`
        );
        activateOnKeys(cell, () => this.sortBy(key));
        return cell;
      })
    );
    this.node.setAttribute('aria-rowcount', String(this.rows.length + 1));
    this.list.setCount(this.rows.length);
  }

  private renderRow(i: number): HTMLElement {
    const r = this.rows[i];
    const time = (s: number | null) => (s ? new Date(s * 1000).toLocaleTimeString() : '');
    const text = (v: number | null) => (v === null ? '' : String(v));
    const cells: Record<Column, string | HTMLElement> = {
      name: r.name,
      group: r.group,
      status: h('span', { class: `osmo-badge osmo-status-${r.kind}` }, r.status),
      attempts: String(r.attempts),
      exit: text(r.exit),
      start: time(r.start),
      duration: formatDuration(r.duration),
      node: r.node,
      pool: r.pool,
      cpu: text(r.cpu),
      gpu: text(r.gpu),
      memory: r.memory === null ? '' : bytes(r.memory),
      allocated: r.allocated
    };
    const row = h(
      'div',
      {
        class: `osmo-table-row${r.name === this.selected ? ' osmo-selected' : ''}`,
        role: 'row',
        tabindex: -1,
        'data-task': r.name,
        'aria-selected': r.name === this.selected ? 'true' : 'false'
      },
      ...this.columns.map(key =>
        h(
          'div',
          {
            class: `osmo-table-cell osmo-col-${key}`,
            role: 'cell',
            title: key === 'name' ? r.name : null
          },
          cells[key]
        )
      )
    );
    activateOnKeys(row, () => this.onSelect(r.name));
    return row;
  }
}

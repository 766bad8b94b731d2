/**
 * The panel's state, kept apart from the DOM: the workflow list and one workflow's DAG, each
 * loaded once over REST and then moved only by events (never by polling). Pure, unit-tested.
 */
import type { OsmoEvent, TaskAttempt, Usage, WorkflowDetail, WorkflowRow } from './api';
import type { SpecInfo } from './specinfo';

/** A task attempt as the panel knows it: read over REST, then moved by events (as WorkflowState). */
export interface TaskView extends Pick<
  TaskAttempt,
  | 'workflow_id'
  | 'name'
  | 'retry_id'
  | 'group_name'
  | 'exit_code'
  | 'node'
  | 'alloc'
  | 'create_time'
  | 'start_time'
  | 'end_time'
  | 'message'
  | 'hold'
  | 'hold_until'
  | 'waiting_for_user'
  | 'held_for_debugging'
  | 'pending_reason'
> {
  status: string;
}

/** The CSS class family of a status (colours come from JupyterLab's theme variables). */
export function statusKind(status: string): string {
  switch (status) {
    case 'COMPLETED':
      return 'completed';
    case 'RUNNING':
    case 'INITIALIZING':
      return 'running';
    case 'WAITING':
    case 'SUBMITTING':
      return 'waiting';
    case 'PENDING':
    case 'PROCESSING':
    case 'SCHEDULING':
      return 'pending';
    case 'RESCHEDULED':
      return 'rescheduled';
    case 'FAILED_CANCELED':
      return 'canceled';
    case 'FAILED_UPSTREAM':
      return 'upstream'; // skipped: it never ran, which is not its own failure
    default:
      return status.startsWith('FAILED') ? 'failed' : 'unknown';
  }
}

export function isTerminal(status: string): boolean {
  return status === 'COMPLETED' || status.startsWith('FAILED');
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)}s`;
  }
  const m = Math.floor(seconds / 60);
  const s = Math.floor(seconds % 60);
  return m < 60 ? `${m}m${String(s).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}

export function duration(
  row: { start_time: number | null; end_time: number | null },
  now: number
): number | null {
  if (!row.start_time) {
    return null;
  }
  return (row.end_time ?? now) - row.start_time;
}

export interface TaskState {
  status: string;
  retry_id: number;
  /** What a running attempt is held for ('interactive', 'debug'), from `task.hold` events. */
  hold: string | null;
}

/** How a task waits for its user, or null: a held task needs someone, unlike a running one. */
export function heldKind(t: {
  status: string;
  waiting_for_user?: boolean;
  held_for_debugging?: boolean;
}): 'waiting' | 'debug' | null {
  if (t.status !== 'RUNNING') {
    return null;
  }
  return t.waiting_for_user ? 'waiting' : t.held_for_debugging ? 'debug' : null;
}

/**
 * A workflow as the list knows it: a REST row's fields, or what its events said (whose status
 * is text). Picked from the server's type, so a field renamed there is a build error here.
 */
export interface WorkflowState extends Pick<
  WorkflowRow,
  'id' | 'name' | 'user' | 'pool' | 'labels' | 'submit_time' | 'start_time' | 'end_time' | 'message'
> {
  status: string;
  /** Number of tasks, from `workflow.submitted` (null until known). */
  total: number | null;
  tasks: Record<string, TaskState>;
}

export interface Filter {
  status: string; // '' = any; a status, a kind ('failed') or 'held'
  pool: string; // '' = any
  /** Words that must all match the id, name, user or a label (`key=value` or its value),
   * case-insensitive. */
  search: string;
  user?: string; // '' = anyone
  sort?: SortKey;
}

/** The list's orders; 'newest' (by submit time) by default. */
export const SORTS = {
  newest: 'newest first',
  oldest: 'oldest first',
  name: 'name',
  status: 'status',
  duration: 'longest first'
} as const;
export type SortKey = keyof typeof SORTS;

/** What a workflow's search words are matched against. */
function searchable(r: WorkflowState): string {
  const labels = Object.entries(r.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  return [r.id, r.name, r.user, ...labels].join('\n').toLowerCase();
}

type Listener = () => void;

/** Every workflow the user may see, by id. */
export class WorkflowList {
  readonly rows = new Map<string, WorkflowState>();
  /** Read over REST at least once (before that, an empty list means "not known yet"). */
  loaded = false;
  private listeners: Listener[] = [];

  onChange(fn: Listener): void {
    this.listeners.push(fn);
  }

  private changed(): void {
    for (const fn of this.listeners) {
      fn();
    }
  }

  /** Rows read over REST (a snapshot: their status wins over what came before). */
  load(rows: WorkflowRow[]): void {
    for (const r of rows) {
      const old = this.rows.get(r.id);
      this.rows.set(r.id, { ...r, total: old?.total ?? null, tasks: old?.tasks ?? {} });
    }
    this.loaded = true;
    this.changed();
  }

  /** Apply one event; true if it changed a row. Events arrive in id order. */
  apply(ev: OsmoEvent, notify = true): boolean {
    let row = this.rows.get(ev.workflow_id);
    const p = ev.payload ?? {};
    if (ev.type === 'workflow.submitted') {
      row = {
        id: ev.workflow_id,
        name: String(p.name ?? ev.workflow_id),
        user: String(p.user ?? ''),
        pool: String(p.pool ?? ''),
        status: ev.status ?? 'PENDING',
        submit_time: ev.ts,
        start_time: null,
        end_time: null,
        message: null,
        labels: {},
        ...row,
        total: typeof p.tasks === 'number' ? p.tasks : (row?.total ?? null),
        tasks: row?.tasks ?? {}
      };
      this.rows.set(ev.workflow_id, row);
    } else if (!row) {
      return false; // a workflow this list has not heard of (its submit is older than the load)
    } else if (ev.type === 'workflow.status' && ev.status) {
      row.status = ev.status;
      row.message = (p.message as string | undefined) ?? row.message;
      if (ev.status === 'RUNNING' && !row.start_time) {
        row.start_time = ev.ts;
      }
      if (isTerminal(ev.status)) {
        row.end_time = ev.ts;
      }
    } else if (ev.type === 'task.status' && ev.task && ev.status) {
      const old = row.tasks[ev.task];
      const retry = ev.retry_id ?? 0;
      if (old && old.retry_id > retry) {
        return false; // an older attempt's late news
      }
      // a new status ends a hold (done, retry, timeout, cancel) unless it is the hold's own
      const hold = old && old.retry_id === retry && ev.status === 'RUNNING' ? old.hold : null;
      row.tasks[ev.task] = { status: ev.status, retry_id: retry, hold };
    } else if (ev.type === 'task.hold' && ev.task) {
      const old = row.tasks[ev.task];
      const retry = ev.retry_id ?? 0;
      if (old && old.retry_id > retry) {
        return false;
      }
      const kind = ev.payload?.hold;
      // 'done' (and any later word) ends the wait
      const hold = kind === 'interactive' || kind === 'debug' ? kind : null;
      row.tasks[ev.task] = { status: ev.status ?? old?.status ?? 'RUNNING', retry_id: retry, hold };
    } else {
      return false;
    }
    if (notify) {
      this.changed();
    }
    return true;
  }

  progress(id: string): { done: number; total: number | null } {
    const row = this.rows.get(id);
    if (!row) {
      return { done: 0, total: null };
    }
    const states = Object.values(row.tasks);
    const done = states.filter(t => t.status === 'COMPLETED').length;
    return { done, total: row.total ?? (states.length || null) };
  }

  /** How many of the workflow's tasks are held, waiting for their user. */
  held(id: string): number {
    const row = this.rows.get(id);
    return row
      ? Object.values(row.tasks).filter(t => t.status === 'RUNNING' && t.hold !== null).length
      : 0;
  }

  filtered(filter: Filter, now = Date.now() / 1000): WorkflowState[] {
    const words = filter.search.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const newest = (a: WorkflowState, b: WorkflowState) =>
      (b.submit_time ?? 0) - (a.submit_time ?? 0) || b.id.localeCompare(a.id);
    const orders: Record<SortKey, (a: WorkflowState, b: WorkflowState) => number> = {
      newest,
      oldest: (a, b) => -newest(a, b),
      name: (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }),
      status: (a, b) => a.status.localeCompare(b.status) || newest(a, b),
      duration: (a, b) => (duration(b, now) ?? -1) - (duration(a, now) ?? -1) || newest(a, b)
    };
    return [...this.rows.values()]
      .filter(r => !filter.pool || r.pool === filter.pool)
      .filter(r => !filter.user || r.user === filter.user)
      .filter(
        r =>
          !filter.status ||
          r.status === filter.status ||
          statusKind(r.status) === filter.status ||
          (filter.status === 'held' && this.held(r.id) > 0)
      )
      .filter(r => words.every(w => searchable(r).includes(w)))
      .sort(orders[filter.sort ?? 'newest']);
  }

  users(): string[] {
    return [...new Set([...this.rows.values()].map(r => r.user).filter(Boolean))].sort();
  }

  pools(): string[] {
    return [...new Set([...this.rows.values()].map(r => r.pool).filter(Boolean))].sort();
  }
}

/** One workflow: its latest attempt per task, moved by that workflow's events. */
export class WorkflowView {
  status: string;
  message: string | null;
  /** Task names in spec order. */
  readonly order: string[];
  readonly tasks = new Map<string, TaskView>();
  /** Every attempt, keyed by attemptKey (a timeline draws retries and preemptions apart). */
  readonly attempts = new Map<string, TaskView>();
  readonly groups = new Map<string, string>();
  /** The last log lines seen per task (live ones come with `task.log` events). */
  readonly tail = new Map<string, string[]>();
  /** What each running task uses (`task.usage` events); gone when the task moves on. */
  readonly usage = new Map<string, Usage>();

  constructor(
    readonly detail: WorkflowDetail,
    readonly spec: SpecInfo,
    readonly tailSize = 5
  ) {
    this.status = detail.status;
    this.message = detail.message;
    for (const t of detail.tasks) {
      this.attempts.set(attemptKey(t), t);
      const old = this.tasks.get(t.name);
      if (!old || old.retry_id <= t.retry_id) {
        this.tasks.set(t.name, t);
      }
    }
    for (const g of detail.groups) {
      this.groups.set(g.name, g.status);
    }
    const specOrder = Object.keys(spec.tasks);
    this.order = [
      ...specOrder.filter(n => this.tasks.has(n)),
      ...[...this.tasks.keys()].filter(n => !specOrder.includes(n))
    ];
  }

  get id(): string {
    return this.detail.id;
  }

  /** Apply one event of this workflow; true if anything shown changed. */
  apply(ev: OsmoEvent): boolean {
    if (ev.workflow_id !== this.id) {
      return false;
    }
    const p = ev.payload ?? {};
    if (ev.type === 'workflow.status' && ev.status) {
      this.status = ev.status;
      this.message = (p.message as string | undefined) ?? this.message;
      return true;
    }
    if (ev.type === 'group.status' && ev.group_name && ev.status) {
      this.groups.set(ev.group_name, ev.status);
      return true;
    }
    if (ev.type === 'task.log' && ev.task) {
      const lines = this.tail.get(ev.task) ?? [];
      lines.push(String(p.text ?? ''));
      this.tail.set(ev.task, lines.slice(-this.tailSize));
      return true;
    }
    if (ev.type === 'task.usage' && ev.task) {
      const t = this.tasks.get(ev.task);
      if (!t || t.retry_id !== (ev.retry_id ?? 0) || t.status !== 'RUNNING') {
        return false;
      }
      this.usage.set(ev.task, { ...(p as unknown as Usage), ts: ev.ts });
      return true;
    }
    if (ev.type === 'task.hold' && ev.task) {
      const held = this.tasks.get(ev.task);
      if (!held || held.retry_id !== (ev.retry_id ?? 0)) {
        return false;
      }
      const hold = (p.hold as TaskAttempt['hold']) ?? null;
      this.put({
        ...held,
        hold,
        hold_until: typeof p.until === 'number' ? p.until : (held.hold_until ?? null),
        waiting_for_user: hold === 'interactive',
        held_for_debugging: hold === 'debug',
        exit_code: typeof p.exit_code === 'number' ? p.exit_code : held.exit_code,
        message: typeof p.message === 'string' ? p.message : held.message
      });
      return true;
    }
    if (ev.type === 'task.pending' && ev.task) {
      const waiting = this.tasks.get(ev.task);
      if (!waiting || waiting.retry_id !== (ev.retry_id ?? 0)) {
        return false;
      }
      const reason = typeof p.reason === 'string' ? p.reason : null;
      this.put({ ...waiting, pending_reason: reason });
      return true;
    }
    if (ev.type !== 'task.status' || !ev.task || !ev.status) {
      return false;
    }
    const retry = ev.retry_id ?? 0;
    const old = this.tasks.get(ev.task);
    if (old && old.retry_id > retry) {
      return false;
    }
    const fresh = !old || old.retry_id < retry;
    const t: TaskView = fresh
      ? {
          workflow_id: this.id,
          name: ev.task,
          retry_id: retry,
          group_name: ev.group_name ?? '',
          status: ev.status,
          exit_code: null,
          node: null,
          alloc: null,
          create_time: ev.ts,
          start_time: null,
          end_time: null,
          message: null,
          hold: null,
          hold_until: null,
          waiting_for_user: false,
          held_for_debugging: false,
          pending_reason: null
        }
      : { ...old };
    t.status = ev.status;
    if (typeof p.exit_code === 'number') {
      t.exit_code = p.exit_code;
    }
    if (typeof p.node === 'string') {
      t.node = p.node;
    }
    if (typeof p.message === 'string') {
      t.message = p.message;
    }
    if (ev.status === 'RUNNING' && !t.start_time) {
      t.start_time = ev.ts;
    }
    if (isTerminal(ev.status)) {
      t.end_time = ev.ts;
    }
    if (ev.status !== 'RUNNING' || fresh) {
      this.usage.delete(ev.task); // only a running command has a usage
    }
    if (ev.status !== 'RUNNING') {
      t.waiting_for_user = false;
      t.held_for_debugging = false;
    }
    if (ev.status !== 'SCHEDULING') {
      t.pending_reason = null; // only a waiting task has a reason to wait
    }
    if (!this.order.includes(ev.task)) {
      this.order.push(ev.task);
    }
    this.put(t);
    return true;
  }

  /** `t` is its task's latest attempt. */
  private put(t: TaskView): void {
    this.tasks.set(t.name, t);
    this.attempts.set(attemptKey(t), t);
  }
}

/** One attempt's key in `WorkflowView.attempts`. */
export function attemptKey(t: { name: string; retry_id: number }): string {
  return `${t.name}#${t.retry_id}`;
}

/** A held task in words ("waiting for you" / "held for debugging until 10:42:07"), or null. */
export function holdText(
  t: TaskView,
  time = (s: number) => new Date(s * 1000).toLocaleTimeString()
): string | null {
  const kind = heldKind(t);
  if (!kind) {
    return null;
  }
  const until = t.hold_until ? ` until ${time(t.hold_until)}` : '';
  return `${kind === 'waiting' ? 'waiting for you' : 'held for debugging'}${until}`;
}

/** A status as shown: a held task's badge says it needs its user, not RUNNING. */
export function shownStatus(t: TaskView): string {
  const kind = heldKind(t);
  return kind === 'waiting' ? 'WAITING FOR YOU' : kind === 'debug' ? 'HELD (DEBUG)' : t.status;
}

/** The colour family of a task: held tasks have their own. */
export function taskKind(t: TaskView): string {
  return heldKind(t) ? 'held' : statusKind(t.status);
}

/** The held tasks of a workflow, in spec order. */
export function heldTasks(view: WorkflowView): TaskView[] {
  return view.order
    .map(n => view.tasks.get(n))
    .filter((t): t is TaskView => !!t && heldKind(t) !== null);
}

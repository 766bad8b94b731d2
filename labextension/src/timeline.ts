/**
 * A workflow's attempts on a time axis (a Gantt chart): one row per attempt, so retries and
 * preemptions are bars of their own; the wait before a start is drawn faint, the run in its
 * status's colour, and a running bar grows until it ends. Virtualised (virtual.ts).
 */
import { activateOnKeys, h } from './dom';
import { formatDuration, shownStatus, taskKind, TaskView, WorkflowView } from './model';
import { VirtualRows } from './virtual';

export interface Bar {
  task: string;
  retry: number;
  status: string;
  kind: string;
  /** When the attempt was created (it waited from then until `start`). */
  queued: number;
  start: number | null;
  /** null while it runs (it ends "now"). */
  end: number | null;
}

/** Every attempt, tasks in spec order and each task's attempts in order. */
export function timelineBars(view: WorkflowView): Bar[] {
  const rank = new Map(view.order.map((n, i) => [n, i]));
  const at = (t: TaskView) => rank.get(t.name) ?? rank.size;
  return [...view.attempts.values()]
    .sort((a, b) => at(a) - at(b) || a.retry_id - b.retry_id)
    .map(t => ({
      task: t.name,
      retry: t.retry_id,
      status: shownStatus(t),
      kind: taskKind(t),
      queued: t.create_time,
      start: t.start_time,
      end: t.start_time ? t.end_time : null
    }));
}

/** The span the axis covers: the first creation to the last end (or now, if one runs). */
export function timeSpan(bars: Bar[], now: number): [number, number] {
  if (!bars.length) {
    return [now - 1, now];
  }
  const t0 = Math.min(...bars.map(b => b.queued));
  const t1 = Math.max(...bars.map(b => (b.start !== null ? (b.end ?? now) : b.queued)));
  return [t0, Math.max(t1, t0 + 1)];
}

const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];

/** Round times (seconds) for at most `max` ticks across [t0, t1]. */
export function timeTicks(t0: number, t1: number, max = 8): number[] {
  const step = STEPS.find(s => (t1 - t0) / s <= max) ?? Math.ceil((t1 - t0) / max / 86400) * 86400;
  const ticks: number[] = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1 && ticks.length <= max; t += step) {
    ticks.push(t);
  }
  return ticks;
}

const ROW_H = 22;

export class Timeline {
  readonly node = h('div', { class: 'osmo-timeline', role: 'table', 'aria-label': 'Timeline' });
  private readonly axis = h('div', { class: 'osmo-timeline-axis', role: 'row' });
  private readonly list = new VirtualRows(ROW_H, i => this.renderRow(i), 'Attempts');
  private bars: Bar[] = [];
  private span: [number, number] = [0, 1];
  private now = 0;
  private selected: string | null = null;

  constructor(private readonly onSelect: (task: string) => void) {
    this.node.append(this.axis, this.list.node);
  }

  render(view: WorkflowView | null, selected: string | null): void {
    if (!view) {
      return;
    }
    this.selected = selected;
    this.now = Date.now() / 1000;
    this.bars = timelineBars(view);
    this.span = timeSpan(this.bars, this.now);
    const [t0, t1] = this.span;
    this.axis.replaceChildren(
      h('div', { class: 'osmo-timeline-label', role: 'columnheader' }, 'Attempt'),
      h(
        'div',
        { class: 'osmo-timeline-track', role: 'columnheader', 'aria-label': 'Time' },
        ...timeTicks(t0, t1).map(t =>
          h(
            'span',
            { class: 'osmo-timeline-tick', style: `left: ${this.pct(t)}%` },
            new Date(t * 1000).toLocaleTimeString()
          )
        )
      )
    );
    this.list.setCount(this.bars.length);
  }

  /** Where time `t` falls across the track, in percent. */
  private pct(t: number): number {
    const [t0, t1] = this.span;
    return ((t - t0) / (t1 - t0)) * 100;
  }

  private renderRow(i: number): HTMLElement {
    const b = this.bars[i];
    const end = b.end ?? this.now;
    const track = h('div', { class: 'osmo-timeline-track' });
    const waitEnd = b.start ?? (b.kind === 'pending' || b.kind === 'waiting' ? this.now : b.queued);
    if (waitEnd > b.queued) {
      track.append(
        h('span', {
          class: 'osmo-timeline-wait',
          style: `left: ${this.pct(b.queued)}%; width: ${this.pct(waitEnd) - this.pct(b.queued)}%`
        })
      );
    }
    const ran = b.start !== null ? end - b.start : null;
    if (b.start !== null) {
      track.append(
        h('span', {
          class: `osmo-timeline-bar osmo-status-${b.kind}`,
          style: `left: ${this.pct(b.start)}%; width: max(2px, ${this.pct(end) - this.pct(b.start)}%)`
        })
      );
    }
    const what = `${b.task} attempt ${b.retry + 1}: ${b.status}${ran !== null ? `, ${formatDuration(ran)}` : ''}`;
    const row = h(
      'div',
      {
        class: `osmo-timeline-row${b.task === this.selected ? ' osmo-selected' : ''}`,
        role: 'row',
        title: what,
        'aria-label': what,
        'data-task': b.task,
        'data-retry': b.retry,
        'data-status': b.status
      },
      h(
        'div',
        { class: 'osmo-timeline-label', role: 'cell' },
        b.retry ? `${b.task} #${b.retry + 1}` : b.task
      ),
      track
    );
    activateOnKeys(row, () => this.onSelect(b.task));
    return row;
  }
}

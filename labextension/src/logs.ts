/**
 * A task's log in a main-area tab: the stored lines, then live ones as the task writes them,
 * across its attempts, until it ends (a finished task's log is shown whole). Lines carry their
 * number in a gutter (CSS, so a copied selection leaves it out); stderr lines are marked. Search
 * highlights every match and steps between them (Enter / Shift+Enter); the attempt picker shows
 * one attempt's lines; times and wrapping can be turned on and off; Copy and Download take what
 * is shown; auto-scroll keeps the newest in view until the user scrolls up. Show task selects the
 * task in the panel. At most MAX_ROWS lines are in the DOM (the newest), so a 100k-line log does
 * not freeze the tab; Copy and Download still take every line.
 */
import { Widget } from '@lumino/widgets';

import type { LogFollow, LogLine, OsmoClient } from './api';
import { h } from './dom';
import { logTime, matchesIn, splitMatches, windowAround } from './logtext';

/** A log line and the attempt (retry_id) it belongs to. */
interface Shown {
  line: LogLine;
  attempt: number;
}

/** Lines drawn at most: the newest; older ones stay in memory for Copy and Download. */
export const MAX_ROWS = 5000;

export class LogViewer extends Widget {
  private follow: LogFollow | null = null;
  private lines: Shown[] = [];
  private needle = '';
  /** The match Enter/Shift+Enter moved to (an index into all matches), -1 for none. */
  private current = -1;
  /** The rows drawn, [start, end) of the lines shown; null: the newest MAX_ROWS (the tail).
   * Moving to a match in an older line draws the rows around it instead. */
  private window: [number, number] | null = null;
  private countPending = false;
  /** The attempt the stream is on (its `attempt` messages move it). */
  private attempt = 0;
  readonly attemptSelect = h('select', {
    class: 'osmo-log-attempt jp-mod-styled',
    'aria-label': 'Attempt'
  });
  readonly times = h('input', { type: 'checkbox', class: 'osmo-log-times' });
  readonly wrap = h('input', { type: 'checkbox', class: 'osmo-log-wrap', checked: true });
  readonly search = h('input', {
    type: 'search',
    class: 'osmo-log-search jp-mod-styled',
    placeholder: 'Search the log',
    'aria-label': 'Search the log'
  });
  private readonly matchCount = h('span', { class: 'osmo-log-count', 'aria-live': 'polite' });
  private readonly capped = h('div', { class: 'osmo-log-capped', hidden: true });
  readonly autoScroll = h('input', {
    type: 'checkbox',
    class: 'osmo-log-autoscroll',
    checked: true
  });
  private readonly stateEl = h(
    'span',
    { class: 'osmo-log-state', 'aria-live': 'polite' },
    'connecting'
  );
  private readonly body = h('div', {
    class: 'osmo-log-lines',
    role: 'log',
    tabindex: 0,
    'aria-label': 'log lines'
  });

  constructor(
    private client: OsmoClient,
    readonly workflowId: string,
    readonly task: string,
    private onError: (title: string, e: unknown) => void,
    showTask: () => void
  ) {
    super();
    this.addClass('osmo-log-viewer');
    this.id = `osmo-log-${workflowId}-${task}`.replace(/[^\w-]/g, '_');
    this.title.label = `${task} · ${workflowId}`;
    this.title.caption = `log of task ${task} in ${workflowId}`;
    this.title.closable = true;
    this.search.addEventListener('input', () => {
      this.needle = this.search.value.toLowerCase();
      this.redraw();
    });
    this.search.addEventListener('keydown', ev => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        this.step(ev.shiftKey ? -1 : 1);
      }
    });
    this.autoScroll.addEventListener('change', () => {
      if (this.autoScroll.checked && this.window) {
        this.window = null; // back to the newest lines
        this.redraw();
      }
      this.scroll();
    });
    this.attemptSelect.append(h('option', { value: '' }, 'all attempts'));
    this.attemptSelect.addEventListener('change', () => {
      this.window = null; // other lines: the newest of them
      this.redraw();
    });
    this.times.addEventListener('change', () => this.redraw());
    this.wrap.addEventListener('change', () =>
      this.body.classList.toggle('osmo-log-nowrap', !this.wrap.checked)
    );
    const download = h(
      'button',
      { class: 'jp-Button jp-mod-styled osmo-log-download', type: 'button' },
      'Download'
    );
    download.addEventListener('click', () => this.download());
    const copy = h(
      'button',
      { class: 'jp-Button jp-mod-styled osmo-log-copy', type: 'button' },
      'Copy'
    );
    copy.addEventListener('click', () => void this.copy(copy));
    const show = h(
      'button',
      {
        class: 'jp-Button jp-mod-styled osmo-log-show-task',
        type: 'button',
        title: 'Select this task in the OSMO panel (and in its workflow tab)'
      },
      'Show task'
    );
    show.addEventListener('click', showTask);
    this.body.addEventListener('scroll', () => {
      const atEnd = this.body.scrollHeight - this.body.scrollTop - this.body.clientHeight < 4;
      if (!atEnd && this.autoScroll.checked && this.lines.length) {
        this.autoScroll.checked = false; // the user scrolled up to read
      }
    });
    this.node.append(
      h(
        'div',
        { class: 'osmo-log-bar' },
        this.search,
        this.matchCount,
        this.attemptSelect,
        h('label', {}, this.times, ' Times'),
        h('label', {}, this.wrap, ' Wrap'),
        h('label', { class: 'osmo-log-autoscroll-label' }, this.autoScroll, ' Auto-scroll'),
        copy,
        download,
        show,
        this.stateEl
      ),
      this.capped,
      this.body
    );
    this.start();
  }

  private start(): void {
    this.follow = this.client.followLogs(this.workflowId, this.task, {
      onLine: line => this.add(line),
      onAttempt: retry => {
        this.attempt = retry;
        this.addAttempt(retry);
        this.marker(`— attempt ${retry + 1} —`);
        this.setState(`attempt ${retry + 1}, live`);
      },
      onEnd: status => {
        this.marker(`— ${this.task} ${status} —`);
        this.setState(status);
      },
      onError: e => {
        this.setState('disconnected');
        this.onError(`Log of ${this.task}`, e);
      }
    });
    this.addAttempt(0);
    this.setState('live');
  }

  private addAttempt(retry: number): void {
    const value = String(retry);
    if (![...this.attemptSelect.options].some(o => o.value === value)) {
      this.attemptSelect.append(h('option', { value }, `attempt ${retry + 1}`));
    }
  }

  private setState(text: string): void {
    this.stateEl.textContent = text;
    this.node.dataset.state = text;
  }

  private row({ line }: Shown): HTMLElement {
    const parts = splitMatches(line.text, this.needle).map((part, i) =>
      i % 2 ? h('mark', { class: 'osmo-log-match' }, part) : part
    );
    return h(
      'div',
      {
        class: `osmo-log-line osmo-log-${line.stream}`,
        'data-n': line.n,
        // the gutter shows it through CSS, so a copied selection does not include it
        ...(line.n >= 0 ? { 'data-ln': line.n } : {}) // 1-based within its attempt
      },
      this.times.checked && line.ts
        ? h('span', { class: 'osmo-log-ts' }, `${logTime(line.ts)} `)
        : '',
      ...parts
    );
  }

  /** Whether a line is shown: of the attempt picked, or of any. */
  private matches({ attempt }: Shown): boolean {
    const picked = this.attemptSelect.value;
    return !picked || Number(picked) === attempt;
  }

  private add(line: LogLine): void {
    const shown = { line, attempt: this.attempt };
    this.lines.push(shown);
    if (this.matches(shown) && !this.window) {
      this.append(this.row(shown));
    } else {
      this.counted(); // not drawn (another attempt, or older rows are): counted still
    }
  }

  /** The lines of the attempt picked (or all), in order. */
  private shownLines(): Shown[] {
    return this.lines.filter(l => this.matches(l));
  }

  /** [start, end) of the rows drawn out of `total` shown lines. */
  private drawn(total: number): [number, number] {
    return this.window ?? [Math.max(0, total - MAX_ROWS), total];
  }

  /** A drawn row at the end, the oldest dropped beyond MAX_ROWS. */
  private append(row: HTMLElement): void {
    this.body.append(row);
    while (this.body.childElementCount > MAX_ROWS) {
      this.body.firstElementChild?.remove();
    }
    this.counted(); // scrolls too, once a frame: a scroll per line is a layout per line
  }

  private marker(text: string): void {
    const shown: Shown = {
      line: { n: -1, ts: 0, stream: 'system', text },
      attempt: this.attempt
    };
    this.lines.push(shown);
    if (!this.window) {
      this.append(this.row(shown));
    }
  }

  /** Draw the rows again (a new search, attempt or time setting); `keep`: the current match
   * stays current (a move to an older match). */
  private redraw(keep = false): void {
    const shown = this.shownLines();
    const [start, end] = this.drawn(shown.length);
    this.body.replaceChildren(...shown.slice(start, end).map(l => this.row(l)));
    if (!keep) {
      this.current = -1;
    }
    this.counted();
    this.scroll();
  }

  /** The cap notice, the match count ("3 of 17") and auto-scroll, once a frame however many
   * lines came. */
  private counted(): void {
    if (!this.countPending) {
      this.countPending = true;
      requestAnimationFrame(() => {
        this.countPending = false;
        this.count();
        this.scroll();
      });
    }
  }

  private count(): void {
    const shown = this.shownLines();
    const [start, end] = this.drawn(shown.length);
    this.capped.hidden = end - start >= shown.length;
    this.capped.textContent = this.capped.hidden
      ? ''
      : this.window
        ? `Lines ${start + 1}–${end} of ${shown.length} are drawn, around the match (at most ${MAX_ROWS}); Auto-scroll goes back to the end. Copy and Download take all.`
        : `The first ${start} lines are not drawn (at most ${MAX_ROWS}); search finds them, Copy and Download take all.`;
    const total = this.allMatches(shown).length;
    this.matchCount.textContent = !this.needle
      ? ''
      : total
        ? `${this.current + 1 || '–'} of ${total}`
        : 'no matches';
  }

  /** Every match in the lines shown, drawn or not: [line index, match index in the line]. */
  private allMatches(shown: Shown[]): [number, number][] {
    return matchesIn(
      shown.map(l => l.line.text),
      this.needle
    );
  }

  /** Move to the next (`by` 1) or previous (-1) match, wrapping around; one in a line that is
   * not drawn draws the rows around it. */
  private step(by: 1 | -1): void {
    const shown = this.shownLines();
    const all = this.allMatches(shown);
    if (!all.length) {
      return;
    }
    this.body.querySelector('.osmo-log-match-current')?.classList.remove('osmo-log-match-current');
    this.current =
      this.current < 0 && by < 0 ? all.length - 1 : (this.current + by + all.length) % all.length;
    const [line, occ] = all[this.current];
    this.autoScroll.checked = false; // the user is reading a match, not the tail
    let [start, end] = this.drawn(shown.length);
    if (line < start || line >= end) {
      [start, end] = windowAround(line, shown.length, MAX_ROWS);
      this.window = end < shown.length ? [start, end] : null;
      this.redraw(true);
    }
    const mark = this.body.children[line - start]?.querySelectorAll('.osmo-log-match')[occ];
    mark?.classList.add('osmo-log-match-current');
    mark?.scrollIntoView({ block: 'center' });
    this.count();
  }

  /** The lines shown (with their times when shown), one per line. */
  private shownText(): string {
    return this.lines
      .filter(l => this.matches(l) && l.line.n >= 0)
      .map(({ line }) => (this.times.checked ? `${logTime(line.ts)} ${line.text}` : line.text))
      .join('\n');
  }

  private async copy(button: HTMLElement): Promise<void> {
    try {
      await navigator.clipboard.writeText(this.shownText());
      button.textContent = 'Copied';
      setTimeout(() => (button.textContent = 'Copy'), 1500);
    } catch (e) {
      this.onError(`Could not copy the log of ${this.task}`, e);
    }
  }

  /** The lines shown, as a file `WF-TASK.log`. */
  private download(): void {
    const text = this.shownText();
    const url = URL.createObjectURL(new Blob([`${text}\n`], { type: 'text/plain' }));
    const a = h('a', { href: url, download: `${this.workflowId}-${this.task}.log` });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000); // after the browser took it
  }

  private scroll(): void {
    if (this.autoScroll.checked) {
      this.body.scrollTop = this.body.scrollHeight;
    }
  }

  dispose(): void {
    this.follow?.close();
    this.follow = null;
    super.dispose();
  }
}

/**
 * A task's log in a main-area tab: the stored lines, then live ones as the task writes them,
 * across its attempts, until it ends (a finished task's log is shown whole). Search filters
 * the lines, the attempt picker shows one attempt's; times and wrapping can be turned on and
 * off; Download saves what is shown; auto-scroll keeps the newest in view until the user
 * scrolls up.
 */
import { Widget } from '@lumino/widgets';

import type { LogFollow, LogLine, OsmoClient } from './api';
import { h } from './dom';

/** A log line and the attempt (retry_id) it belongs to. */
interface Shown {
  line: LogLine;
  attempt: number;
}

/** A line's time as the log shows it: `14:02:03.250`. */
export function logTime(ts: number): string {
  const d = new Date(ts * 1000);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export class LogViewer extends Widget {
  private follow: LogFollow | null = null;
  private lines: Shown[] = [];
  private needle = '';
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
    private onError: (title: string, e: unknown) => void
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
    this.autoScroll.addEventListener('change', () => this.scroll());
    this.attemptSelect.append(h('option', { value: '' }, 'all attempts'));
    this.attemptSelect.addEventListener('change', () => this.redraw());
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
        this.attemptSelect,
        h('label', {}, this.times, ' Times'),
        h('label', {}, this.wrap, ' Wrap'),
        h('label', { class: 'osmo-log-autoscroll-label' }, this.autoScroll, ' Auto-scroll'),
        download,
        this.stateEl
      ),
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
    return h(
      'div',
      { class: `osmo-log-line osmo-log-${line.stream}`, 'data-n': line.n },
      this.times.checked && line.ts
        ? h('span', { class: 'osmo-log-ts' }, `${logTime(line.ts)} `)
        : '',
      line.text
    );
  }

  private matches({ line, attempt }: Shown): boolean {
    const picked = this.attemptSelect.value;
    return (
      (!picked || Number(picked) === attempt) &&
      (!this.needle || line.text.toLowerCase().includes(this.needle))
    );
  }

  private add(line: LogLine): void {
    const shown = { line, attempt: this.attempt };
    this.lines.push(shown);
    if (this.matches(shown)) {
      this.body.append(this.row(shown));
      this.scroll();
    }
  }

  private marker(text: string): void {
    const shown: Shown = {
      line: { n: -1, ts: 0, stream: 'system', text },
      attempt: this.attempt
    };
    this.lines.push(shown);
    this.body.append(this.row(shown));
    this.scroll();
  }

  private redraw(): void {
    this.body.replaceChildren(...this.lines.filter(l => this.matches(l)).map(l => this.row(l)));
    this.scroll();
  }

  /** The lines shown (with their times when shown), as a file `WF-TASK.log`. */
  private download(): void {
    const text = this.lines
      .filter(l => this.matches(l) && l.line.n >= 0)
      .map(({ line }) => (this.times.checked ? `${logTime(line.ts)} ${line.text}` : line.text))
      .join('\n');
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

/**
 * A task's log in a main-area tab: the stored lines, then live ones as the task writes them,
 * across its attempts, until it ends (a finished task's log is shown whole). Search filters
 * the lines; auto-scroll keeps the newest in view until the user scrolls up.
 */
import { Widget } from '@lumino/widgets';

import type { LogFollow, LogLine, OsmoClient } from './api';
import { h } from './dom';

export class LogViewer extends Widget {
  private follow: LogFollow | null = null;
  private lines: LogLine[] = [];
  private needle = '';
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
        h('label', { class: 'osmo-log-autoscroll-label' }, this.autoScroll, ' Auto-scroll'),
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
    this.setState('live');
  }

  private setState(text: string): void {
    this.stateEl.textContent = text;
    this.node.dataset.state = text;
  }

  private row(line: LogLine): HTMLElement {
    return h(
      'div',
      { class: `osmo-log-line osmo-log-${line.stream}`, 'data-n': line.n },
      line.text
    );
  }

  private matches(line: LogLine): boolean {
    return !this.needle || line.text.toLowerCase().includes(this.needle);
  }

  private add(line: LogLine): void {
    this.lines.push(line);
    if (this.matches(line)) {
      this.body.append(this.row(line));
      this.scroll();
    }
  }

  private marker(text: string): void {
    const line: LogLine = { n: -1, ts: 0, stream: 'system', text };
    this.lines.push(line);
    this.body.append(this.row(line));
    this.scroll();
  }

  private redraw(): void {
    this.body.replaceChildren(...this.lines.filter(l => this.matches(l)).map(l => this.row(l)));
    this.scroll();
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

/** The panel's toolbar: submit a YAML file, reload the list, and the events stream's state
 * (while the server is away, a banner says so and what needs the server is disabled). */
import { h } from './dom';

export interface ToolbarHandlers {
  submit(): void;
  refresh(): void;
}

export class Toolbar {
  readonly node: HTMLElement;
  private readonly connEl = h('span', { class: 'osmo-conn', 'aria-live': 'polite' }, 'connecting');
  private readonly away = h(
    'div',
    { class: 'osmo-away', role: 'alert', hidden: true },
    h('strong', {}, 'Reconnecting to the server…'),
    ' Actions are disabled until it answers again; the list shows what was last known.'
  );
  private readonly buttons: HTMLButtonElement[];

  constructor(on: ToolbarHandlers) {
    const submit = h(
      'button',
      {
        class: 'jp-Button jp-mod-styled jp-mod-accept osmo-submit',
        type: 'button',
        'data-server': true
      },
      'Submit YAML…'
    );
    submit.addEventListener('click', () => on.submit());
    const refresh = h(
      'button',
      {
        class: 'jp-Button jp-mod-styled osmo-refresh',
        type: 'button',
        title: 'Reload the list',
        'data-server': true
      },
      'Refresh'
    );
    refresh.addEventListener('click', () => on.refresh());
    this.buttons = [submit, refresh];
    this.node = h(
      'div',
      { class: 'osmo-toolbar-box' },
      h('div', { class: 'osmo-toolbar' }, submit, refresh, this.connEl),
      this.away
    );
  }

  /** The events stream is up (live), or lost and reconnecting. */
  setConnected(up: boolean): void {
    this.connEl.textContent = up ? 'live' : 'reconnecting…';
    this.connEl.dataset.state = up ? 'live' : 'down';
    this.away.hidden = up;
    for (const b of this.buttons) {
      b.disabled = !up;
    }
  }
}

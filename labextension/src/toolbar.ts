/** The panel's toolbar: submit a YAML file, reload the list, and the events stream's state. */
import { h } from './dom';

export interface ToolbarHandlers {
  submit(): void;
  refresh(): void;
}

export class Toolbar {
  readonly node: HTMLElement;
  private readonly connEl = h('span', { class: 'osmo-conn', 'aria-live': 'polite' }, 'connecting');

  constructor(on: ToolbarHandlers) {
    const submit = h(
      'button',
      { class: 'jp-Button jp-mod-styled jp-mod-accept osmo-submit', type: 'button' },
      'Submit YAML…'
    );
    submit.addEventListener('click', () => on.submit());
    const refresh = h(
      'button',
      { class: 'jp-Button jp-mod-styled osmo-refresh', type: 'button', title: 'Reload the list' },
      'Refresh'
    );
    refresh.addEventListener('click', () => on.refresh());
    this.node = h('div', { class: 'osmo-toolbar' }, submit, refresh, this.connEl);
  }

  /** The events stream is up (live), or lost and reconnecting. */
  setConnected(up: boolean): void {
    this.connEl.textContent = up ? 'live' : 'reconnecting…';
    this.connEl.dataset.state = up ? 'live' : 'down';
  }
}

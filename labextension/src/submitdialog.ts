/** The submit dialog's options (what they are and mean: submitchoices.ts). */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import type { PoolInfo } from './api';
import { h } from './dom';
import { parseSetValues, PRIORITIES, Priority, SubmitChoices } from './submitchoices';

/** The dialog's body: a pool, a priority, the values, and what was wrong with the last try. */
export class SubmitOptionsBody extends Widget implements Dialog.IBodyWidget<SubmitChoices> {
  private readonly pool: HTMLSelectElement;
  private readonly priority: HTMLSelectElement;
  private readonly values: HTMLTextAreaElement;

  constructor(pools: PoolInfo[], initial: SubmitChoices, problems: string[] = []) {
    super();
    this.addClass('osmo-submit-options');
    const names = pools.map(p => p.name);
    if (initial.pool && !names.includes(initial.pool)) {
      names.push(initial.pool); // remembered, not listed now: keep it, the server will say
    }
    this.pool = h(
      'select',
      { class: 'jp-mod-styled', name: 'pool', 'aria-label': 'Pool' },
      h('option', { value: '' }, "Default (the spec's, else the server's)"),
      ...names.map(n => h('option', { value: n }, n))
    );
    this.pool.value = initial.pool;
    this.priority = h(
      'select',
      { class: 'jp-mod-styled', name: 'priority', 'aria-label': 'Priority' },
      ...PRIORITIES.map(p => h('option', { value: p }, p))
    );
    this.priority.value = initial.priority;
    this.values = h('textarea', {
      class: 'jp-mod-styled',
      name: 'values',
      rows: 4,
      spellcheck: false,
      placeholder: 'lr=0.001\nepochs=10',
      'aria-label': 'Values (--set KEY=VALUE, one per line)'
    });
    this.values.value = initial.values;
    const field = (label: string, input: HTMLElement) =>
      h('label', { class: 'osmo-submit-field' }, h('span', {}, label), input);
    this.node.append(
      field('Pool', this.pool),
      field('Priority', this.priority),
      field('Values (--set KEY=VALUE, one per line)', this.values),
      ...problems.map(p => h('div', { class: 'osmo-submit-problem', role: 'alert' }, p))
    );
  }

  getValue(): SubmitChoices {
    return {
      pool: this.pool.value,
      priority: this.priority.value as Priority,
      values: this.values.value
    };
  }
}

/** Ask for the options until they parse or the user cancels (null). */
export async function askSubmitOptions(
  title: string,
  pools: PoolInfo[],
  initial: SubmitChoices
): Promise<SubmitChoices | null> {
  let choices = initial;
  let problems: string[] = [];
  for (let tries = 0; tries < 100; tries++) {
    const result = await showDialog({
      title,
      body: new SubmitOptionsBody(pools, choices, problems),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Submit' })],
      focusNodeSelector: 'select[name="pool"]'
    });
    if (!result.button.accept || !result.value) {
      return null;
    }
    choices = result.value;
    problems = parseSetValues(choices.values).problems;
    if (!problems.length) {
      return choices;
    }
  }
  return null;
}

import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Clipboard, MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import type { OsmoClient } from './api';
import { CommandIDs, osmoIcon } from './commands';
import { h } from './dom';
import type { MainArea } from './mainarea';
import { isTerminal } from './model';
import type { OsmoPanel } from './panel';

/** The workflow list's context menu: open (in the panel or a tab), copy its id, cancel (it, or
 * the selection it is in), restart, view its spec. Returns the row right-clicked last. */
export function addWorkflowMenu(
  app: JupyterFrontEnd,
  panel: OsmoPanel,
  client: OsmoClient,
  notifyError: (title: string, e: unknown) => void,
  main: MainArea
): () => string {
  // The row is read when the menu opens, not when an item runs: the list re-renders every
  // second while a workflow runs, and JupyterLab's hit test cannot walk up from a detached row.
  let menuRow = '';
  panel.listView.node.addEventListener('contextmenu', ev => {
    const row = (ev.target as Element | null)?.closest<HTMLElement>('.osmo-wf[data-id]');
    menuRow = row?.dataset.id ?? '';
  });
  const target = (): string => menuRow;
  const status = (id: string) => panel.list.rows.get(id)?.status ?? '';
  const targets = (): string[] => {
    const id = target();
    const checked = panel.listView.checked;
    return checked.has(id) ? [...checked] : id ? [id] : [];
  };
  app.commands.addCommand(CommandIDs.openWorkflow, {
    label: 'Open',
    execute: () => panel.select(target())
  });
  app.commands.addCommand(CommandIDs.copyId, {
    label: 'Copy ID',
    execute: () => {
      Clipboard.copyToSystem(target());
    }
  });
  app.commands.addCommand(CommandIDs.cancelWorkflows, {
    label: () => {
      const n = targets().filter(id => !isTerminal(status(id))).length;
      return n > 1 ? `Cancel ${n} Workflows…` : 'Cancel…';
    },
    isEnabled: () => targets().some(id => !isTerminal(status(id))),
    execute: () => panel.cancel(targets())
  });
  app.commands.addCommand(CommandIDs.restartWorkflow, {
    label: 'Restart',
    isEnabled: () => isTerminal(status(target())),
    execute: () => panel.restart(target())
  });
  app.commands.addCommand(CommandIDs.viewSpec, {
    label: 'View Spec',
    execute: async () => {
      const id = target();
      try {
        const { original } = await client.spec(id);
        const content = new Widget({ node: h('pre', { class: 'osmo-spec-view' }, original) });
        content.id = `osmo-spec-${id}`.replace(/[^\w-]/g, '_');
        content.title.label = `${id} spec`;
        const widget = new MainAreaWidget({ content });
        widget.title.icon = osmoIcon;
        widget.title.caption = `The spec ${id} was submitted with`;
        main.show(widget, { workflowId: id });
      } catch (e) {
        notifyError(`Could not read the spec of ${id}`, e);
      }
    }
  });
  [
    CommandIDs.openWorkflow,
    CommandIDs.openWorkflowView,
    CommandIDs.copyId,
    CommandIDs.cancelWorkflows,
    CommandIDs.restartWorkflow,
    CommandIDs.viewSpec
  ].forEach((command, rank) => app.contextMenu.addItem({ command, selector: '.osmo-wf', rank }));
  return target;
}

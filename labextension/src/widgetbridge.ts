/**
 * The notebook monitor's Terminal and Notebook buttons (osmo_jupyter/widgets/monitor.js): the
 * widget runs in a kernel's output and cannot reach JupyterLab's commands, so it dispatches an
 * `osmo-open` DOM event; this answers it with the same commands as the panel's buttons and
 * cancels it, which tells the widget it was handled. Only those two commands, for a task named
 * by workflow and task: what a user could click in the panel.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';

import { CommandIDs } from './commands';

export const OPEN_EVENT = 'osmo-open';

const COMMANDS = new Map<unknown, string>([
  ['terminal', CommandIDs.openTerminal],
  ['notebook', CommandIDs.openNotebook]
]);

export function answerWidgets(app: JupyterFrontEnd): void {
  document.addEventListener(OPEN_EVENT, ev => {
    const detail = (ev as CustomEvent).detail as Record<string, unknown> | null;
    const command = COMMANDS.get(detail?.what);
    const { workflowId, task } = detail ?? {};
    if (!command || typeof workflowId !== 'string' || typeof task !== 'string') {
      return; // not ours to answer
    }
    ev.preventDefault();
    void app.commands.execute(command, { workflowId, task });
  });
}

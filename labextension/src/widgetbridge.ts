/**
 * The notebook monitor's Terminal and Notebook buttons (osmo_jupyter/widgets/monitor.js): the
 * widget runs in a kernel's output and cannot reach JupyterLab's commands, so it dispatches an
 * `osmo-open` DOM event; this answers it with the same commands as the panel's buttons and
 * cancels it, which tells the widget it was handled. Only those two commands, for a task named
 * by workflow and task: what a user could click in the panel.
 *
 * In Notebook 7 a page holds one document: a notebook opens in a new browser tab as any new
 * document does there, but a terminal tab has nowhere to go, so that request is left
 * unanswered and the widget names the CLI command instead.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';

import { CommandIDs } from './commands';

export const OPEN_EVENT = 'osmo-open';

const COMMANDS = new Map<unknown, string>([
  ['terminal', CommandIDs.openTerminal],
  ['notebook', CommandIDs.openNotebook]
]);

export interface BridgeOptions {
  /** Whether a task terminal can open as a tab here (JupyterLab's shell; not Notebook 7's). */
  terminals: boolean;
}

export function answerWidgets(app: JupyterFrontEnd, options: BridgeOptions): void {
  document.addEventListener(OPEN_EVENT, ev => {
    const detail = (ev as CustomEvent).detail as Record<string, unknown> | null;
    const command = COMMANDS.get(detail?.what);
    const { workflowId, task } = detail ?? {};
    if (!command || typeof workflowId !== 'string' || typeof task !== 'string') {
      return; // not ours to answer
    }
    if (command === CommandIDs.openTerminal && !options.terminals) {
      return; // nowhere to show it: the widget says how to get one
    }
    ev.preventDefault();
    void app.commands.execute(command, { workflowId, task });
  });
}
